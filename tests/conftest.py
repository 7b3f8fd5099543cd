"""Shared fixtures: one demo run for the whole session, a fast configuration, CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# One OpenMP thread per process: pytest, kernels and subprocesses share 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Notebooks executed by nbval (defaults, interactive) write their scratch run here, not into the clone.
os.environ.setdefault("PLAYBOOK_RUN_DIR", tempfile.mkdtemp(prefix="playbook-nbval-"))
# The empty MLflow store that new local stores are copied from (helpers.run.tracking): made once per session.
os.environ.setdefault("PLAYBOOK_CACHE_DIR", tempfile.mkdtemp(prefix="playbook-cache-"))

ROOT = Path(__file__).resolve().parent.parent

# Small settings where the demo defaults are not the point (names absent from the registry are skipped).
FAST = {"tuning_iterations": "2", "cv_folds": "3", "scaling_budget_s": "2", "n_batches": "3"}


def fast_args(**overrides: str) -> list[str]:
    from helpers.core.config import REGISTRY

    values = {**FAST, **overrides}
    args: list[str] = []
    for name, value in values.items():
        if name in REGISTRY:
            args += ["-p", name, value]
    return args


def run_cli(*args: str, cwd: str | os.PathLike | None = None, timeout: float = 900,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``playbook ARGS`` in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "helpers.run.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One `playbook run` of every available step on the demo, shared by all tests."""
    from helpers.core.artifacts import Run

    out = tmp_path_factory.mktemp("demo") / "run"
    result = run_cli("run", "--out", str(out), *fast_args())
    assert result.returncode == 0, f"demo run failed:\n{result.stdout}\n{result.stderr}"
    return Run(out)


def pytest_collection_modifyitems(config, items):
    """Everything that executes notebooks counts as slow: nbval cells and tests using the demo run.

    So `-m "not slow and not browser"` is the fast inner loop (unit tests only).
    """
    for item in items:
        if item.path.suffix == ".ipynb" or "demo_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
