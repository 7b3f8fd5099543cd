"""Resuming a run: content hashes of each step's inputs, reuse decisions, leftovers of a killed run.

A step is reused when the hashes of everything it reads are unchanged: its parameters,
its notebook, the ``helpers`` source (and templates), the raw snapshot and the summaries
of the steps before it (each upstream summary stands for that step's artifacts).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from helpers.core import artifacts, config, paths
from helpers.core.errors import PlaybookError
from helpers.core.hashing import file_sha256
from helpers.run.kernels import KERNEL_ENV

REUSABLE = ("succeeded", "reused")
DATA_PARAMETERS = ("dataset", "encoding", "sep", "query", "teaching_faults")
_TEMP_NAME = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")  # artifacts.atomic_path's temporary files
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
ORCHESTRATION = "run"  # the helpers.run layer: it decides which notebooks run, not what they compute


@functools.cache
def source_hash() -> str:
    """One hash of the ``helpers`` package source and the document templates.

    The orchestration layer (``helpers.run``: runner, CLI, report, this module) is left out: they decide which notebooks
    run, not what a notebook computes, so upgrading them does not make a run's steps stale.
    """
    digest = hashlib.sha256()
    roots = [_PACKAGE_ROOT, _PACKAGE_ROOT.parent / "templates"]
    for root in roots:
        files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                       and not (root == _PACKAGE_ROOT and p.relative_to(root).parts[0] == ORCHESTRATION))
        for p in files:
            digest.update(str(p.relative_to(root.parent)).encode())
            digest.update(p.read_bytes())
    return digest.hexdigest()


def parameters_hash(step: str, values: Mapping[str, Any]) -> str:
    """Hash of the parameters one step declares (the run folder and batch flag excluded)."""
    chosen = {p.name: values.get(p.name) for p in config.params_for_step(step)
              if p.name not in ("run_dir", "interactive")}
    text = json.dumps(artifacts.to_jsonable(chosen), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def step_inputs(run: artifacts.Run, step: str, values: Mapping[str, Any], notebook: Path) -> dict[str, str | None]:
    """The content hashes of everything ``step`` reads, by name (recorded in the manifest)."""
    inputs: dict[str, str | None] = {
        "parameters": parameters_hash(step, values),
        "notebook": file_sha256(notebook),
        "helpers": source_hash(),
        "data": file_sha256(run.raw_snapshot_path),
    }
    for earlier in paths.STEP_NOTEBOOKS[:paths.STEP_NOTEBOOKS.index(step)]:
        if run.has_summary(earlier):
            inputs[f"upstream {earlier}"] = file_sha256(run.summary_path(earlier))
    return inputs


def reuse_decision(run: artifacts.Run, entry: Mapping[str, Any] | None,
                   inputs: Mapping[str, str | None]) -> tuple[bool, str]:
    """Whether a step of a resumed run can be reused, and why (or why not)."""
    if entry is None or entry.get("status") == "not_run":
        return False, "it has not run yet"
    status = entry.get("status")
    if status not in REUSABLE:
        return False, f"it was {status}"
    recorded = entry.get("inputs")
    if not recorded:
        return False, "no input hashes were recorded for it"
    step = entry["step"]
    if not run.has_summary(step) or not (run.path / f"{step}.ipynb").exists():
        return False, "its outputs are missing"
    changed = sorted(k for k in set(recorded) | set(inputs) if recorded.get(k) != inputs.get(k))
    if changed:
        return False, f"changed since it ran: {', '.join(changed)}"
    return True, "inputs unchanged"


def check_same_data(saved: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """A resumed run keeps its data source: its raw snapshot is what every step read."""
    changed = [k for k in DATA_PARAMETERS if (saved.get(k) or None) != (values.get(k) or None)]  # [] = unset
    if changed:
        raise PlaybookError(f"--resume cannot change the data source ({', '.join(changed)}): the run's raw snapshot "
                            "is what its steps read.", "start a new run for different data.")


def next_attempt_path(run: artifacts.Run, step: str) -> Path:
    """``<step>.attempt-N.ipynb`` with the first free N (replaced notebooks are kept)."""
    n = 1
    while (run.path / f"{step}.attempt-{n}.ipynb").exists():
        n += 1
    return run.path / f"{step}.attempt-{n}.ipynb"


def keep_previous_attempt(run: artifacts.Run, step: str) -> Path | None:
    """Rename a step's executed notebook out of the way before the step runs again."""
    current = run.path / f"{step}.ipynb"
    if not current.exists():
        return None
    target = next_attempt_path(run, step)
    os.replace(current, target)
    return target


def remove_temp_files(run: artifacts.Run) -> list[Path]:
    """Delete temporary files an atomic write left behind when its process was killed."""
    found = [p for p in run.path.rglob(".*") if p.is_file() and _TEMP_NAME.match(p.name)]
    for p in found:
        p.unlink(missing_ok=True)
    return found


def kernel_processes(run_path: str | os.PathLike) -> list[int]:
    """Process ids whose environment marks them as kernels (or their children) of this run (Linux /proc)."""
    marker = f"{KERNEL_ENV}={Path(run_path).resolve()}".encode()
    pids = []
    proc = Path("/proc")
    if not proc.is_dir():
        return pids
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def stop_kernels(run_path: str | os.PathLike, grace_s: float = 3.0) -> list[int]:
    """Terminate every kernel process of this run still alive (SIGTERM, then SIGKILL)."""
    pids = kernel_processes(run_path)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _alive(pids):
            time.sleep(0.1)
        if not _alive(pids):
            break
    return pids


def _alive(pids: Sequence[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[0] != "Z":  # zombies are dead, only not yet reaped
            alive.append(pid)
    return alive


def runner_alive(info: Mapping[str, Any] | None) -> bool:
    """Whether the ``playbook run`` process recorded in the manifest is still running here."""
    if not info or info.get("host") != os.uname().nodename or not info.get("pid"):
        return False
    try:
        cmdline = Path(f"/proc/{info['pid']}/cmdline").read_bytes()
    except OSError:
        return False
    return bool(_alive([info["pid"]])) and (b"helpers.run.cli" in cmdline or b"playbook" in cmdline)


def runner_info() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": os.uname().nodename}
