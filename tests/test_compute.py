"""Fits on a real Dask cluster: a scheduler and two single-threaded workers on 127.0.0.1.

The session's cluster is started here (``dask_cluster``) and ended after the tests, so the
README's test command needs nothing running. Step 4 of the shared demo run is executed again
with ``compute`` set to that scheduler: same leaderboard, tuning, champion and KPIs as the
local run, and tasks ran on both workers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers.core import compute
from helpers.core.errors import PlaybookError
from helpers.run import cli, resume

ROOT = Path(__file__).resolve().parent.parent
STEP4 = "04_model_development"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_dask_cluster(workers: int = 2):
    """``dask scheduler`` and ``workers`` ``dask worker`` processes (one thread, no nanny) on free loopback ports."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], **quiet)]
    try:
        for i in range(workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                           "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i + 1}",
                                           "--host", "127.0.0.1"], **quiet))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address, procs[1:]
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="session")
def dask_cluster():
    with local_dask_cluster(2) as (address, workers):
        yield address, workers
        compute.close_clients()  # this process's client, before its scheduler stops (no reconnect noise)


def executed_per_worker(address: str) -> dict[str, int]:
    from distributed import Client

    with Client(address, timeout=30) as client:
        return client.run(lambda dask_worker: dask_worker.state.executed_count)


def executed_by_name(address: str) -> dict[str, int]:
    """Fits executed so far by each live worker, by its --name."""
    from distributed import Client

    with Client(address, timeout=30) as client:
        return dict(client.run(lambda dask_worker: (dask_worker.name, dask_worker.state.executed_count)).values())


def papermill_step4(run_dir: Path, *extra: str, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "playbook" / f"{STEP4}.ipynb"), str(run_dir / f"{STEP4}.ipynb"),
           "-p", "run_dir", str(run_dir), "-p", "interactive", "False", "-p", "cv_folds", "3",
           "-p", "tuning_iterations", "2", "--no-progress-bar", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def copy_of(run, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run.path, out)
    shutil.rmtree(out / "artifacts" / STEP4)
    return out


def same_results(local: Path, cluster: Path) -> None:
    """Leaderboard, tuning table, champion and test KPIs equal (durations aside)."""
    def table(run_dir: Path, name: str) -> pd.DataFrame:
        frame = pd.read_csv(run_dir / "artifacts" / STEP4 / name)
        return frame.drop(columns=[c for c in frame.columns if "time" in c], errors="ignore")

    for name in ("leaderboard.csv", "tuning_results.csv", "test_kpis.csv"):
        pd.testing.assert_frame_equal(table(local, name), table(cluster, name), check_exact=False, rtol=1e-9)
    import json

    def champion(run_dir: Path) -> dict:
        summary = json.loads((run_dir / "artifacts" / STEP4 / "summary.json").read_text())
        return {k: summary[k] for k in ("champion", "kpis", "threshold", "all_kpis_passed")}

    assert champion(local) == champion(cluster)


# --- the parameter and the pre-flight check -------------------------------------------------------


@pytest.mark.parametrize("value", ["local", "dask", "tcp://10.0.0.5:8786", "tls://scheduler.example:8786"])
def test_compute_accepts_local_dask_and_scheduler_addresses(value):
    kind, address = compute.parse(value)
    assert kind == ("local" if value == "local" else "dask")
    assert address == (value if "://" in value else None)


@pytest.mark.parametrize("value", ["cluster", "tcp://nohost", "http://scheduler:8786", "tcp://:8786"])
def test_a_compute_value_that_names_nothing_is_one_clear_error(value):
    with pytest.raises(PlaybookError, match="neither 'local', 'dask' nor a Dask scheduler address") as err:
        compute.parse(value)
    assert "-p compute tcp://host:8786" in err.value.fix


def test_an_unreachable_scheduler_exits_2_before_any_kernel(tmp_path, capsys):
    address = f"tcp://127.0.0.1:{free_port()}"  # nobody listens there
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out), "-p", "compute", address]) == 2
    err = capsys.readouterr().err
    assert f"The Dask scheduler {address} cannot be reached" in err and "Traceback" not in err
    assert "dask scheduler" in err  # the fix: start it, or run locally
    assert not out.exists() and resume.kernel_processes(out) == []


def test_local_compute_describes_this_machine_and_the_embedded_cluster_without_starting_it():
    assert compute.engine("local", 3).record() == {"kind": "local", "address": None, "workers": 1, "threads": 3}
    embedded = compute.engine("dask")
    assert embedded.kind == "dask" and embedded.workers == embedded.threads >= 1
    assert "dask" not in compute._CLIENTS  # described, not started
    assert compute.command("tcp://10.0.0.5:8786") == "playbook run -f project.yaml -p compute tcp://10.0.0.5:8786"


# --- step 4 on the cluster --------------------------------------------------------------------------


@pytest.mark.slow
def test_step_4_on_a_dask_cluster_gives_the_local_results_and_uses_both_workers(demo_run, dask_cluster, tmp_path):
    address, _ = dask_cluster
    before = executed_per_worker(address)
    run_dir = copy_of(demo_run, tmp_path)
    proc = papermill_step4(run_dir, "-p", "compute", address)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-3000:]
    same_results(demo_run.path, run_dir)
    after = executed_per_worker(address)
    assert len(after) == 2 and all(after[w] > before.get(w, 0) for w in after)  # tasks ran on both workers
    import json

    summary = json.loads((run_dir / "artifacts" / STEP4 / "summary.json").read_text())
    assert summary["engine"] == {"kind": "dask", "address": address, "workers": 2, "threads": 2}



def test_step_3_measures_every_point_on_the_cluster_workers(dask_cluster):
    from helpers.core import families
    from helpers.steps import stack
    from tests.test_stack import make_prepared

    address, _ = dask_cluster
    before = executed_per_worker(address)
    fams = [families.get_family("classification", n) for n in ("logistic_regression", "k_nearest_neighbors")]
    m = stack.measure_scaling(make_prepared(400), fams, budget_s=60, sizes=[100, 200], compute=address)
    assert len(m) == 4 and m.attrs["failed"] == {} and (m["fit_s"] > 0).all()
    assert "this process" not in m.attrs["points_by_process"] and sum(m.attrs["points_by_process"].values()) == 4
    assert m.attrs["engine"] == {"kind": "dask", "address": address, "workers": 2, "threads": 2}
    after = executed_per_worker(address)
    assert sum(after.values()) - sum(before.get(w, 0) for w in after) >= 4  # the points ran there


@pytest.mark.slow
def test_a_worker_killed_during_step_4_has_its_tasks_retried_on_the_other(demo_run, tmp_path):
    """Kill one of two workers once it has run a few fits: step 4 completes with the local results."""
    run_dir = copy_of(demo_run, tmp_path)
    with local_dask_cluster(2) as (address, workers):
        proc = papermill_step4(run_dir, "-p", "compute", address)
        try:
            deadline = time.monotonic() + 600
            while (before := executed_by_name(address)).get("w2", 0) < 3:  # w2 is mid-run: fits done and queued
                assert proc.poll() is None and time.monotonic() < deadline, "step 4 ended before the kill"
                time.sleep(0.5)
            workers[1].kill()
            output, _ = proc.communicate(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, output[-3000:]
        after = executed_by_name(address)
        assert list(after) == ["w1"] and after["w1"] > before["w1"]  # the survivor took over
    same_results(demo_run.path, run_dir)
