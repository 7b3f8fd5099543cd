"""Helpers of the real-browser tests: the system Chromium, a JupyterLab server on loopback, page actions.

See /work/shared/NOTES-jupyter.md "Real-browser test of JupyterLab": never download a browser;
launch the Debian ``chromium`` with ``executable_path``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("PLAYBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def require_chromium() -> str:
    """The Chromium executable; skip with the reason when it is absent (fail under CI=true)."""
    if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = (f"Chromium not found at {CHROMIUM}: install it with `apt-get install chromium` "
              "(or set PLAYBOOK_CHROMIUM to its path).")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} CI=true: the browser tests must run in CI.", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token and the folder it serves."""

    url: str
    token: str
    root: Path
    log: Path

    def notebook_url(self, name: str) -> str:
        # reset: a fresh workspace, so notebooks of earlier tests are not reopened (nor their kernels restarted)
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"


@contextlib.contextmanager
def jupyterlab(root: Path, env: dict[str, str], workdir: Path, timeout: float = 60) -> Iterator[Lab]:
    """Start JupyterLab on 127.0.0.1 with a token and temporary Jupyter dirs; stop it afterwards."""
    token = secrets.token_hex(16)
    port = free_port()
    dirs = {name: workdir / name.lower() for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    # no "official Jupyter news?" toast over the page (user settings live in the temporary config dir)
    news = dirs["JUPYTER_CONFIG_DIR"] / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True, exist_ok=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    bin_dir = str(Path(sys.executable).parent)  # the kernel is this very Python (helpers importable)
    full_env = {**os.environ, **{k: str(v) for k, v in dirs.items()}, **env,
                "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]), "OMP_NUM_THREADS": "1"}
    full_env.pop("MPLBACKEND", None)  # the kernel's inline backend draws the figures in the page
    log = workdir / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
           "--ServerApp.port_retries=0",
           # if the test process is killed, the orphaned server and its kernels end themselves
           "--ServerApp.shutdown_no_activity_timeout=900", "--MappingKernelManager.cull_idle_timeout=900",
           "--MappingKernelManager.cull_interval=60", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--allow-root"]
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log_file, stderr=subprocess.STDOUT, cwd=root,
                                stdin=subprocess.DEVNULL)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log)
    try:
        _wait_until_up(lab, proc, timeout)
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_up(lab: Lab, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{lab.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={lab.token}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"JupyterLab did not answer within {timeout} s:\n{lab.log.read_text()[-3000:]}")


def copy_notebooks(source: Path, names: list[str], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(source / f"{name}.ipynb", target / f"{name}.ipynb")


# --- page actions (JupyterLab 4, exposed as window.jupyterapp) -----------------------------------

KERNEL_IDLE = """(path) => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!w || !w.context || w.context.path !== path) return false;
  const k = w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && !!w.content;
}"""

# Remember every kernel status from now on (a dead kernel never finishes the run: fail fast instead).
WATCH_KERNEL = """() => {
  window.playbookKernelStates = [];
  window.jupyterapp.shell.currentWidget.sessionContext.statusChanged.connect(
    (_, status) => window.playbookKernelStates.push(status));
}"""

KERNEL_LOST = ["dead", "restarting", "autorestarting", "terminating"]

# Done when the kernel is idle and every code cell ran, or an error stopped the run, or the kernel died.
RUN_FINISHED = """(lost) => {
  if ((window.playbookKernelStates || []).some(s => lost.includes(s))) return true;
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  if (!k || k.status !== 'idle') return false;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const errored = cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
  return errored || cells.every(c => c.model.executionCount !== null);
}"""

ERROR_OUTPUTS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const out = [];
  w.content.widgets.forEach((c, i) => {
    if (c.model.type !== 'code') return;
    c.model.outputs.toJSON().forEach(o => {
      if (o.output_type === 'error') out.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
    });
  });
  return out;
}"""


def open_notebook(page, lab: Lab, name: str, timeout_ms: int = 60_000) -> None:
    """Open a notebook and wait until its kernel is idle."""
    page.goto(lab.notebook_url(f"{name}.ipynb"))
    page.wait_for_function(KERNEL_IDLE, arg=f"{name}.ipynb", timeout=timeout_ms)


def run_all(page, timeout_ms: int) -> list[str]:
    """Run all cells (as Run > Run All Cells), wait until done; return the error outputs."""
    page.evaluate(WATCH_KERNEL)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_timeout(500)
    page.wait_for_function(RUN_FINISHED, arg=KERNEL_LOST, timeout=timeout_ms, polling=500)
    states = page.evaluate("() => window.playbookKernelStates")
    lost = [s for s in states if s in KERNEL_LOST]
    died = [f"the kernel was lost during the run (statuses: {', '.join(lost)})"] if lost else []
    return died + page.evaluate(ERROR_OUTPUTS)


def traceback_elements(page) -> int:
    """Rendered error outputs in the page (tracebacks), as the person would see them."""
    return page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def record(line: str) -> None:
    """Append a measured figure to test-artifacts/browser-timings.txt (printed figures, not timed asserts)."""
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "browser-timings.txt", "a", encoding="utf-8") as f:
        f.write(line + "\n")
