"""Nothing read is executed; user strings are shown escaped; a run needs no network.

Covered elsewhere (referenced, not repeated): parameter-name validation of ``config.check_name``
(tests/test_config.py::test_check_name), skops loading with a fixed trusted-type list that refuses
pickle/joblib files and files needing unexpected types (tests/test_modelio.py), escaping of step 1's
strings in the report (tests/test_report.py::test_user_strings_are_escaped_everywhere).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from helpers.core.artifacts import Run
from helpers.run import cli
from tests.conftest import ROOT, fast_args, run_cli

HELPERS = sorted((ROOT / "helpers").glob("*.py"))


# --- nothing from the command line or a file is executed --------------------------------------------


@pytest.mark.parametrize("args", [
    ["-p", '__import__("pathlib").Path("{marker}").touch(); a', "5"],
    ["-y", '{{"__import__(\'pathlib\').Path(\'{marker}\').touch() #": 1}}'],
    ["-y", "seed: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]"],
], ids=["-p name", "-y key", "-y python tag"])
def test_code_in_parameters_is_rejected_not_run(args, tmp_path, capsys):
    marker = tmp_path / "pwned"
    argv = ["run", "--out", str(tmp_path / "run"), *(a.format(marker=marker) for a in args)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert ("not a valid parameter name" in err or "Malformed YAML" in err) and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "run").exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield node, owner, name


@pytest.mark.parametrize("path", HELPERS, ids=[p.name for p in HELPERS])
def test_helpers_never_evaluate_strings_or_unpickle(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node, owner, name in _calls(tree):
        if name in ("eval", "exec", "compile", "__import__") and not owner:
            found.append(f"{name}() at line {node.lineno}")
        if name in ("eval", "query") and owner not in ("", "self"):  # pandas eval/query parse strings as code
            found.append(f"{owner}.{name}() at line {node.lineno}")
        if owner == "yaml" and name not in ("safe_load", "safe_dump"):
            found.append(f"yaml.{name}() at line {node.lineno}")
        if name == "load" and owner in ("pickle", "joblib", "dill", "cloudpickle", "sio") and path.name != "modelio.py":
            found.append(f"{owner}.load() at line {node.lineno}: models load only through helpers.core.modelio")
        if any(k.arg == "shell" and getattr(k.value, "value", False) is True for k in node.keywords):
            found.append(f"shell=True at line {node.lineno}")
    imports = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
               for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])}
    found += [f"imports {m}" for m in ("pickle", "dill", "cloudpickle", "marshal") if m in imports]
    assert not found, f"{path.name}: {found}"


# --- a hostile data set, run end to end with the network blocked --------------------------------------

PAYLOAD = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
RAW_MARKERS = ("<script>alert", "<img src=x")

BLOCK_NETWORK = textwrap.dedent('''
    """Test-only: refuse (and log) every socket connection to a non-loopback address."""
    import ipaddress
    import os
    import runpy
    import socket
    import sys

    _LOG = os.environ["PLAYBOOK_TEST_NETWORK_LOG"]
    _here = os.path.dirname(os.path.abspath(__file__))


    def _local(address):
        if not isinstance(address, tuple):
            return True  # AF_UNIX
        host = address[0]
        if host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


    def _guard(original):
        def connect(self, address):
            if not _local(address):
                with open(_LOG, "a") as fh:
                    fh.write(f"{os.getpid()} {address!r}\\n")
                raise OSError("network access is blocked in this test")
            return original(self, address)
        return connect


    socket.socket.connect = _guard(socket.socket.connect)
    socket.socket.connect_ex = _guard(socket.socket.connect_ex)
    for _path in sys.path:  # run the sitecustomize this one shadows, if any
        _other = os.path.join(_path, "sitecustomize.py")
        if os.path.abspath(_path) != _here and os.path.exists(_other):
            runpy.run_path(_other)
            break
''')


def hostile_table(n: int = 300, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    plan = rng.choice([IMG, "basic", "pro"], size=n)
    y = np.where(x + (plan == "pro") + rng.normal(scale=0.7, size=n) > 0.3, "yes", "no")
    return pd.DataFrame({PAYLOAD: x.round(3), "<b>plan</b>": plan, "tenure": rng.integers(1, 60, n), "churn": y})


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "site").mkdir()
    (folder / "site" / "sitecustomize.py").write_text(BLOCK_NETWORK)
    log = folder / "network.log"
    log.write_text("")
    data = folder / "hostile.csv"
    hostile_table().to_csv(data, index=False)
    out = folder / "run"
    env = {"PYTHONPATH": str(folder / "site"), "PLAYBOOK_TEST_NETWORK_LOG": str(log)}
    result = run_cli("run", "--out", str(out), "-p", "dataset", str(data), "-p", "target", "churn",
                     "-p", "positive_label", "yes", "-p", "project_name", f"p{PAYLOAD}",
                     "-p", "problem_statement", f"Find churners {PAYLOAD}", "-p", "kpis", "{roc_auc: 0.6}",
                     *fast_args(), env=env, cwd=str(ROOT))
    return result, out, log


@pytest.mark.slow
def test_run_succeeds_with_the_network_blocked(hostile_run):
    result, out, log = hostile_run
    assert result.returncode == 0, result.stdout + result.stderr
    assert log.read_text() == ""  # no process of the run (CLI, kernels, report) tried to reach the network
    assert all(s["status"] == "succeeded" for s in Run(out).read_manifest()["steps"])


@pytest.mark.slow
def test_the_network_block_is_real(tmp_path, hostile_run):
    """The guard works in a child process (so the test above can fail)."""
    folder = hostile_run[1].parent
    code = "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\nexcept OSError as e:\n    print(e)"
    env = {"PYTHONPATH": str(folder / "site"), "PLAYBOOK_TEST_NETWORK_LOG": str(tmp_path / "log")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    assert "network access is blocked" in done.stdout and "192.0.2.1" in (tmp_path / "log").read_text()


def _documents(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.md") if ".ipynb_checkpoints" not in p.parts)


@pytest.mark.slow
def test_generated_documents_escape_user_strings(hostile_run):
    out = hostile_run[1]
    docs = _documents(out)
    names = {p.name for p in docs}
    assert {"charter.md", "datasheet.md", "model_card.md"} <= names and any("stack" in n or "decision" in n for n in names)
    shown = 0
    for doc in docs:
        text = doc.read_text()
        for marker in RAW_MARKERS:
            assert marker not in text, f"{doc.relative_to(out)} holds raw {marker!r}"
        shown += "&lt;script&gt;" in text or "&lt;img" in text
    assert shown >= 3  # the strings are there, escaped (charter, datasheet, model card at least)


def _html_outputs(nb) -> list[str]:
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            texts += [str(data[k]) for k in ("text/html", "text/markdown") if k in data]
    return texts


@pytest.mark.slow
def test_notebooks_show_user_strings_escaped(hostile_run):
    out = hostile_run[1]
    notebooks = sorted(out.glob("0*.ipynb")) + [out / "report.ipynb"]
    assert len(notebooks) == 6
    escaped = 0
    for path in notebooks:
        for html in _html_outputs(nbformat.read(path, as_version=4)):
            for marker in RAW_MARKERS:
                assert marker not in html, f"{path.name} shows raw {marker!r}"
            escaped += "&lt;script&gt;" in html or "&lt;img" in html
    assert escaped >= 5


@pytest.mark.slow
def test_report_html_escapes_and_loads_nothing_external(hostile_run, demo_run):
    report = (hostile_run[1] / "report.html").read_text()
    for marker in RAW_MARKERS:
        assert marker not in report
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report
    for html in (report, (demo_run.path / "report.html").read_text()):
        external = re.findall(r"<(?:script|link|img|iframe)\b[^>]*(?:src|href)\s*=\s*[\"']?(?:https?:)?//", html, re.I)
        assert not external
        assert not re.search(r"@import\s+url\(\s*[\"']?(?:https?:)?//", html)


@pytest.mark.slow
def test_manifest_and_summaries_keep_the_strings_verbatim(hostile_run):
    """Escaping happens at display time; the data itself is never altered."""
    out = hostile_run[1]
    summary = json.loads((out / "artifacts" / "02_data_foundation" / "summary.json").read_text())
    assert PAYLOAD in summary["features"]["numeric"] and "<b>plan</b>" in summary["features"]["categorical"]
