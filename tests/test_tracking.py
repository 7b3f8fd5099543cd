"""MLflow tracking with the real client: a SQLite store in tmp_path, an `mlflow server` on loopback,
and a server that is down. Runs, params, metrics, artifacts and model versions are read back."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from helpers.core import artifacts, config, modelio
from helpers.core.errors import PlaybookError
from helpers.run import tracking
from helpers.steps.operations import deployment
from tests.browser_lab import free_port
from tests.synthetic_runs import labels, make_run, probabilities

S5 = tracking.S5


def client_for(uri: str):
    tracking.import_mlflow()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _run(folder: Path, name: str = "a", **kw) -> artifacts.Run:
    y = labels(200)
    return make_run(folder / name, y=y, proba=probabilities(y, 1.0), **kw)


def test_the_tracking_parameter_is_local_off_or_a_uri(tmp_path):
    assert config.REGISTRY["tracking"].default == "local" and config.REGISTRY["tracking"].steps == ()
    assert tracking.store_uri("local", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.store_uri(None, tmp_path) == tracking.local_uri(tmp_path)
    assert tracking.store_uri("off", tmp_path) is None
    assert tracking.store_uri("http://mlflow.example:5000", tmp_path) == "http://mlflow.example:5000"
    for bad in ("nonsense", "ftp://x", "localhost:5000"):
        with pytest.raises(PlaybookError, match="neither 'local', 'off' nor an MLflow tracking URI"):
            config.tracking_setting(bad)
    with pytest.raises(PlaybookError, match="tracking"):
        config.merge({"tracking": "nonsense"})
    assert tracking._shown_uri("https://me:secret@host/x") == "https://me:***@host/x"


def test_model_uris_and_names():
    assert tracking.parse_model_uri("models:/churn-demo@champion") == ("churn-demo", "champion", None)
    assert tracking.parse_model_uri("models:/churn-demo/3") == ("churn-demo", None, "3")
    with pytest.raises(PlaybookError, match="not a registered model URI"):
        tracking.parse_model_uri("runs:/abc/model")
    assert tracking.model_name({"project": "my project/ü"}) == "my-project"


def test_a_run_is_logged_to_the_local_store_and_read_back(tmp_path):
    run = _run(tmp_path / "runs")
    lines: list[str] = []
    record = tracking.track_run(run, echo=lines.append)
    assert record["uri"] == tracking.local_uri(tmp_path / "runs") and (tmp_path / "runs" / "mlflow.db").is_file()
    assert run.read_manifest()["tracking"] == record and "error" not in record
    assert lines[0].startswith(f"MLflow: run {record['run_id']} in experiment 'demo-project'")
    assert record["log_s"] < 30 and record["import_s"] > 0  # seconds, measured apart

    client = client_for(record["uri"])
    logged = client.get_run(record["run_id"])
    manifest = run.read_manifest()
    assert logged.info.run_name == "a" and logged.info.status == "FINISHED"
    assert logged.data.params["target"] == "churn" and logged.data.params["seed"] == "42"
    for k in manifest["kpis"]:
        assert logged.data.metrics[f"kpi/{k['metric']}"] == pytest.approx(k["achieved"])
        assert logged.data.metrics[f"kpi/{k['metric']}/ci_low"] == pytest.approx(k["ci_low"])
        assert logged.data.metrics[f"kpi/{k['metric']}/target"] == pytest.approx(k["target"])
        assert logged.data.tags[f"verdict/{k['metric']}"] == k["verdict"]
    assert logged.data.metrics["duration_s/01_vision_and_goals"] == 1.5
    assert logged.data.tags["status/05_deployment_and_monitoring"] == "succeeded"
    assert logged.data.tags["data/sha256"] == "a" * 64 and logged.data.tags["verdict/gate"] == "passed"
    files = {f.path for f in client.list_artifacts(record["run_id"])}
    assert {"report.html", "manifest.json", "project.yaml", "documents", "model"} - files <= {"project.yaml"}
    assert {f.path for f in client.list_artifacts(record["run_id"], "documents")} == {"documents/charter.md",
                                                                                      "documents/model_card.md"}
    # the artifacts live in the runs folder, next to the store
    assert (tmp_path / "runs" / tracking.ARTIFACT_FOLDER).is_dir() and not (Path.cwd() / "mlruns").exists()

    version = client.get_model_version_by_alias("demo-project", "champion")
    assert record["model"] == {"name": "demo-project", "version": 1, "alias": "champion",
                               "promotion": "step 5's KPI gate passed"}
    assert int(version.version) == 1 and version.run_id == record["run_id"]
    assert version.tags["playbook.model_sha256"] == artifacts_sha(run)
    assert {f.path for f in client.list_artifacts(record["run_id"], "model")} == {"model/model.skops",
                                                                                  "model/model_meta.json"}


def artifacts_sha(run: artifacts.Run) -> str:
    from helpers.core.hashing import file_sha256

    return file_sha256(run.models_dir(1) / "model.skops")


def test_the_alias_moves_only_when_step5_promotes(tmp_path):
    first = _run(tmp_path / "runs", "first")
    failed = _run(tmp_path / "runs", "failed", gate_code=1)
    no_step5 = _run(tmp_path / "runs", "no-step5")
    no_step5.summary_path(S5).unlink()
    records = [tracking.track_run(r, echo=lambda _: None) for r in (first, failed, no_step5)]
    assert [r["model"]["version"] for r in records] == [1, 2, 3]
    assert [r["model"]["alias"] for r in records] == ["champion", None, None]
    assert "did not pass (failed)" in records[1]["model"]["promotion"]
    assert records[2]["model"]["promotion"].startswith("step 5 did not run")
    client = client_for(records[0]["uri"])
    assert int(client.get_model_version_by_alias("demo-project", "champion").version) == 1
    # a later promoted run moves it
    later = tracking.track_run(_run(tmp_path / "runs", "later"), echo=lambda _: None)
    assert later["model"] == {"name": "demo-project", "version": 4, "alias": "champion",
                              "promotion": "step 5's KPI gate passed"}
    assert int(client.get_model_version_by_alias("demo-project", "champion").version) == 4


def test_champion_resolves_to_the_local_package_or_its_registered_copy(tmp_path):
    run = _run(tmp_path / "runs")
    record = tracking.track_run(run, echo=lambda _: None)
    uri = "models:/demo-project@champion"
    assert tracking.champion_package(uri, record["uri"]) == run.models_dir(1)
    shutil.rmtree(run.path / "models")  # the run folder's package is gone: the registry's copy is downloaded
    folder = tracking.champion_package(uri, record["uri"], dst=tmp_path / "download")
    assert folder.is_relative_to(tmp_path / "download") and (folder / "model_meta.json").is_file()
    model = modelio.load_model(folder / "model.skops")  # skops, trusted types only
    assert model.predict(np.array([[0.9, 1.0], [0.1, 0.0]])).tolist() == ["yes", "no"]
    with pytest.raises(PlaybookError, match="is not in the registry"):
        tracking.champion_package("models:/nobody@champion", record["uri"])


def test_off_logs_nothing_and_a_run_without_champion_registers_nothing(tmp_path):
    run = _run(tmp_path / "runs")
    assert tracking.track_run(run, "off") is None and not (tmp_path / "runs" / "mlflow.db").exists()
    shutil.rmtree(run.path / "models")
    record = tracking.track_run(run, echo=lambda _: None)
    assert record["model"] is None and record["run_id"]


def test_a_tracking_server_that_is_down_is_a_warning_in_bounded_time(tmp_path):
    run = _run(tmp_path / "runs")
    before = {p.name: p.read_bytes() for p in (run.path / "models" / "v1").iterdir()}
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    lines: list[str] = []
    started = time.perf_counter()
    record = tracking.track_run(run, url, echo=lines.append)
    assert time.perf_counter() - started - record.get("import_s", 0) < 6
    assert record["uri"] == url and "error" in record
    assert lines[0].startswith(f"warning: the run was not logged to MLflow at {url}")
    assert f"playbook track {run.path}" in lines[0]
    manifest = run.read_manifest()  # the run is intact, its manifest says what happened
    assert manifest["tracking"]["error"] == record["error"] and len(manifest["kpis"]) == 2
    assert {p.name: p.read_bytes() for p in (run.path / "models" / "v1").iterdir()} == before


def test_a_tracking_server_that_hangs_costs_one_retry_of_a_short_timeout(tmp_path):
    """A server that accepts the connection and never answers: 2 tries of a 2 s read timeout, then a warning."""
    run = _run(tmp_path / "runs")
    tracking.import_mlflow()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the connections; nobody reads or answers
        started = time.perf_counter()
        record = tracking.track_run(run, f"http://127.0.0.1:{silent.getsockname()[1]}", echo=lambda _: None)
        seconds = time.perf_counter() - started
    assert "ReadTimeout" in record["error"] and 3.5 < seconds < 7


def test_a_damaged_manifest_is_a_warning_and_stays_as_it_is(tmp_path):
    run = _run(tmp_path / "runs")
    run.manifest_path.write_text('{"steps": [', encoding="utf-8")
    lines: list[str] = []
    record = tracking.track_run(run, echo=lines.append)
    assert "is not valid JSON" in record["error"] and lines[0].startswith("warning: the run was not logged to MLflow")
    assert run.manifest_path.read_text(encoding="utf-8") == '{"steps": ['


def test_playbook_track_cli(tmp_path, capsys):
    from helpers.run import cli

    run = _run(tmp_path / "runs")
    assert cli.main(["track", str(run.path), "--tracking", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "warning: the run was not logged" in capsys.readouterr().out
    assert cli.main(["track", str(run.path)]) == 0
    assert "MLflow: run" in capsys.readouterr().out
    assert cli.main(["track", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


# --- a real tracking server on loopback ------------------------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """`mlflow server` (the full package, a test dependency) on a free 127.0.0.1 port; stopped after."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    tracking.import_mlflow()
    tracking.seed_local_store(folder / "mlflow.db")  # no 60 migrations at the server's start
    port = free_port()
    env = {**os.environ, **tracking.TELEMETRY_OFF, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(folder / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn worker: the group we started
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.mark.slow
def test_a_run_is_logged_to_a_tracking_server_and_read_back(tmp_path, mlflow_server):
    run = _run(tmp_path / "runs", "served")
    record = tracking.track_run(run, mlflow_server, echo=lambda _: None)
    assert "error" not in record and record["uri"] == mlflow_server
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # the server's store, not a local one
    client = client_for(mlflow_server)
    logged = client.get_run(record["run_id"])
    k = run.read_manifest()["kpis"][0]
    assert logged.data.metrics[f"kpi/{k['metric']}"] == pytest.approx(k["achieved"])
    assert logged.data.params["project_name"] == "demo-project"
    assert "report.html" in {f.path for f in client.list_artifacts(record["run_id"])}
    version = client.get_model_version_by_alias("demo-project", "champion")
    assert int(version.version) == record["model"]["version"]
    # resolved through the server's artifact proxy once the run folder is gone
    shutil.move(run.path, tmp_path / "moved")
    folder = tracking.champion_package("models:/demo-project@champion", mlflow_server, dst=tmp_path / "download")
    assert modelio.load_model(folder / "model.skops").predict(np.array([[0.9, 1.0]])).tolist() == ["yes"]


@pytest.mark.slow
def test_playbook_run_logs_to_the_runs_folder_store_by_default(demo_run):
    """The demo run (default tracking: local) is in runs/mlflow.db, its champion registered and aliased."""
    record = demo_run.read_manifest()["tracking"]
    assert "error" not in record and record["uri"] == tracking.local_uri(demo_run.path.parent)
    assert record["log_s"] < 30
    assert record["import_wait_s"] < record["import_s"]  # mlflow was imported while the steps ran
    client = client_for(record["uri"])
    logged = client.get_run(record["run_id"])
    assert logged.info.run_name == demo_run.path.name
    assert logged.data.tags["playbook.target"] == "churn"
    names = {f.path for f in client.list_artifacts(record["run_id"], "documents")}
    assert names == {f"documents/{n}" for n in ("charter.md", "datasheet.md", "stack_decision.md", "model_card.md")}
    package = tracking.champion_package("models:/churn-demo@champion", record["uri"])
    assert package == deployment.champion_dir(demo_run)
    assert deployment.load_package(package).features
