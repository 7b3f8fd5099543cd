"""`playbook serve`: the real service on loopback (subprocess, free port), its answers, limits, token,
reloads under load, the request log and step 5 reading it back, and the container recipe."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from serving import ROOT, free_port, running_service, serve_command
from test_deployment import CATEGORICAL, NUMERIC, SCHEMA, make_frame, make_run

from helpers.core import artifacts
from helpers.core.hashing import file_sha256
from helpers.core.kpis import KpiContract
from helpers.core.prepared import Prepared
from helpers.core.system import SERVE_LOCK_FILE, extra_distributions, serve_lock_text
from helpers.run import serve, tracking
from helpers.steps.operations import deployment, requestlog
from helpers.steps.operations import monitoring as mon

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json", **AUTH}
CSV = {"content-type": "text/csv", **AUTH}
MAX_BYTES, MAX_ROWS = 60_000, 400


# --- a small package (fast): limits, token, bad input, reload, log ------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A package of the small churn model, and a copy of it that says it is version 7 (the reload target)."""
    root = tmp_path_factory.mktemp("serve")
    run = make_run(root / "run")
    folder = deployment.write_package(run, schema=SCHEMA, cleaning={})
    other = root / "v7"
    shutil.copytree(folder, other)
    meta = artifacts.read_json(other / "model_meta.json")
    artifacts.write_json(other / "model_meta.json", {**meta, "version": 7})
    return folder, other, root


@pytest.fixture(scope="module")
def service(small):
    folder, _, root = small
    port = free_port()
    log_dir = root / "log"
    args = ["--log-dir", str(log_dir), "--log-batch-rows", "25", "--log-interval", "0.5",
            "--max-bytes", str(MAX_BYTES), "--max-rows", str(MAX_ROWS)]
    with running_service(serve_command(folder, port, *args), port, env={serve.TOKEN_ENV: TOKEN}) as process:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            client.process, client.log_dir = process, log_dir
            yield client


def post(client, frame: pd.DataFrame, *, kind: str = "json") -> httpx.Response:
    if kind == "json":
        return client.post("/predict", content=frame.to_json(orient="records"), headers=JSON)
    return client.post("/predict", content=frame.to_csv(index=False), headers=CSV)


def test_predictions_equal_predict_batch_through_json_and_csv(service, small):
    frame = make_frame(120, seed=5).drop(columns="churn")
    expected, v = deployment.predict_batch(deployment.load_package(small[0]), frame)
    for kind in ("json", "csv"):
        r = post(service, frame, kind=kind)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == 1 and body["threshold"] == 0.3 and body["rows"] == 120
        got = pd.DataFrame(body["predictions"])
        assert list(got.columns) == ["customer_id", "prediction", "proba_yes"]
        assert deployment.compare_predictions(expected, got, atol=1e-9)["differing_rows"] == 0
        assert body["warnings"] == v.warning_lines()
        stages = [part.split(";")[0].strip() for part in r.headers["server-timing"].split(",")]
        assert stages == ["parse", "validate", "convert", "predict", "respond"]  # 120 rows: not batched


def test_concurrent_single_rows_each_get_their_own_answer(service, small):
    """Requests answered together in a batch get what each would get alone: predictions, warnings, errors."""
    package = deployment.load_package(small[0])
    rows = make_frame(48, seed=11).drop(columns="churn").astype({"charges": object})
    rows.loc[5, "contract"], rows.loc[17, "charges"] = "lifetime", "lots"  # a counted warning, an error
    answers, batched = {}, []

    def client(k: int) -> None:
        with httpx.Client(base_url=str(service.base_url), timeout=30) as c:
            for i in range(k, len(rows), 8):
                r = c.post("/predict", content=rows.iloc[[i]].to_json(orient="records"), headers=JSON)
                answers[i] = r
                batched.append("batch;desc=" in r.headers.get("server-timing", "batch;desc=1")
                               and "batch;desc=1" not in r.headers.get("server-timing", ""))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in answers.items():
        fixed, v = deployment.validate(rows.iloc[[i]], package)
        if v.errors:
            assert i == 17 and r.status_code == 422 and "column charges expects numbers" in r.json()["error"]
            continue
        expected = deployment.predict_frame(package, fixed)
        assert r.status_code == 200 and r.json()["warnings"] == v.warning_lines(), i
        assert deployment.compare_predictions(expected, pd.DataFrame(r.json()["predictions"]))["differing_rows"] == 0
    assert len(answers) == 48 and any(batched)
    assert "1 value(s): contract has categories unseen in training" in answers[5].json()["warnings"]


def test_warnings_are_those_of_playbook_predict(service, small):
    frame = make_frame(4, seed=1).drop(columns="churn")
    frame.loc[0, "contract"], frame.loc[1, "tenure"], frame["note"] = "lifetime", 500.0, "x"
    r = post(service, frame)
    assert r.status_code == 200
    _, v = deployment.validate(frame, deployment.load_package(small[0]))
    assert r.json()["warnings"] == v.warning_lines()
    assert "extra column(s) ignored: note" in r.json()["warnings"]
    assert "1 value(s): contract has categories unseen in training" in r.json()["warnings"]


def bad_requests() -> dict[str, tuple[bytes, dict, int, str]]:
    good = make_frame(3, seed=2).drop(columns="churn")
    text = good.astype(object)
    text.loc[1, "charges"] = "about sixty"
    return {
        "missing column": (good.drop(columns="tenure").to_json(orient="records").encode(), JSON, 422,
                           "missing column(s) tenure"),
        "ill-typed column": (text.to_json(orient="records").encode(), JSON, 422,
                             "column charges expects numbers but has 1 non-numeric value(s), e.g. 'about sixty'"),
        "ill-typed column in CSV": (text.to_csv(index=False).encode(), CSV, 422, "column charges expects numbers"),
        "empty body": (b"", JSON, 400, "the request body is empty"),
        "blank body": (b"  \n", CSV, 400, "the request body is empty"),
        "malformed JSON": (b'[{"tenure": 3,', JSON, 400, "the body is not valid JSON"),
        "not a list of records": (b"[1, 2]", JSON, 400, "not a list of records"),
        "nested value": (b'[{"tenure": [1, 2], "charges": 3, "contract": "monthly"}]', JSON, 422,
                         "column tenure of record 0 holds a list"),
        "no records": (b"[]", JSON, 400, "no data rows"),
        "header-only CSV": (b"tenure,charges,contract\n", CSV, 400, "no data rows"),
        "CSV that is not text": (b"\xff\xfe\x00\x81,\x00\n\x9c", CSV, 400, "cannot be read"),
        "wrong content type": (b"tenure=3", {"content-type": "application/x-www-form-urlencoded", **AUTH}, 415,
                               "content type 'application/x-www-form-urlencoded' is not accepted"),
        "no content type": (b"[]", AUTH, 415, "content type '(none)' is not accepted"),
        "too many bytes": (b"[" + b" " * MAX_BYTES + b"]", JSON, 413, f"more than the limit of {MAX_BYTES:,}"),
        "too many rows": (make_frame(MAX_ROWS + 1).to_json(orient="records").encode(), JSON, 413,
                          f"rows, more than the limit of {MAX_ROWS:,}"),
        "too many CSV rows": (make_frame(MAX_ROWS + 1)[NUMERIC + CATEGORICAL].to_csv(index=False).encode(), CSV, 413,
                              f"rows, more than the limit of {MAX_ROWS:,}"),
    }


@pytest.mark.parametrize("case", list(bad_requests()))
def test_bad_input_is_one_clear_4xx_and_the_next_request_is_served(service, case):
    body, headers, status, message = bad_requests()[case]
    r = service.post("/predict", content=body, headers=headers)
    assert r.status_code == status, r.text
    answer = r.json()
    assert message in answer["error"] and answer["fix"], answer
    assert "Traceback" not in r.text
    again = post(service, make_frame(2, seed=3).drop(columns="churn"))
    assert again.status_code == 200 and again.json()["rows"] == 2


def test_schema_errors_name_every_column_and_the_fix(service):
    frame = make_frame(3).drop(columns=["churn", "tenure"]).astype(object)
    frame.loc[0, "charges"] = "n/a (typed)"
    answer = post(service, frame).json()
    assert answer["error"].startswith("The input does not match the model's schema: missing column(s) tenure")
    assert answer["errors"] == ["missing column(s) tenure",
                                "column charges expects numbers but has 1 non-numeric value(s), e.g. 'n/a (typed)'"]
    assert "schema.json" in answer["fix"]


def test_a_streamed_body_over_the_limit_is_refused(service):
    def chunks():
        for _ in range(MAX_BYTES // 1000 + 2):
            yield b" " * 1000

    r = service.post("/predict", content=chunks(), headers=JSON)  # no Content-Length: counted as it arrives
    assert r.status_code == 413 and "more than the limit" in r.json()["error"]


def test_every_endpoint_but_health_needs_the_token(service):
    health = httpx.get(f"{service.base_url}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    for method, path in [("GET", "/metadata"), ("GET", "/openapi.json"), ("POST", "/predict"), ("POST", "/reload"),
                         ("GET", "/docs")]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = httpx.request(method, f"{service.base_url}{path}", headers=headers)
            assert r.status_code == 401, (method, path, headers)
            assert r.json()["error"] == "missing or wrong API token" and "Authorization: Bearer" in r.json()["fix"]
    assert service.get("/metadata", headers=AUTH).status_code == 200
    assert service.get("/docs", headers=AUTH).status_code == 404  # no CDN assets: interactive docs are off


def test_metadata_and_openapi_come_from_the_package(service, small):
    meta = service.get("/metadata", headers=AUTH).json()
    assert meta["features"] == NUMERIC + CATEGORICAL and meta["threshold"] == 0.3 and meta["model_version"] == 1
    assert meta["schema"] == SCHEMA and meta["id_column"] == "customer_id" and "kpis" in meta
    assert "training_data_sha256" in meta
    doc = service.get("/openapi.json", headers=AUTH).json()
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]
    record = body["application/json"]["schema"]["items"]
    assert set(record["properties"]) == {"customer_id", "tenure", "charges", "contract"}
    assert record["required"] == NUMERIC + CATEGORICAL
    assert record["properties"]["contract"]["examples"] == ["monthly", "yearly"]
    assert "training range [1, 71]" in record["properties"]["tenure"]["description"]
    assert "text/csv" in body


def test_a_public_bind_without_a_token_is_refused(small, tmp_path, monkeypatch, capsys):
    """`playbook serve` in this process (no interpreter start per case): exit 2 and the message, before any load.
    The port is held here, so that a refusal that went missing fails to bind instead of serving on."""
    from helpers.run import cli

    for name in (serve.TOKEN_ENV, serve.TOKEN_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        args = ["serve", "--package", str(small[0]), "--host", "0.0.0.0", "--port", str(held.getsockname()[1])]
        assert cli.main(args) == 2
        assert "--host 0.0.0.0 would serve the model beyond this machine without an API token" in capsys.readouterr().err
        (tmp_path / "empty").write_text("\n")
        assert cli.main([*args, "--token-file", str(tmp_path / "empty")]) == 2
        err = capsys.readouterr().err
        assert "is empty" in err and "Traceback" not in err


def test_bind_rules():
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("::1") and serve.is_loopback("localhost")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("example.org")
    serve.check_bind("0.0.0.0", "a token")  # allowed with a token
    with pytest.raises(serve.PlaybookError, match="without an API token"):
        serve.check_bind("192.168.1.4", None)


def test_reload_under_load_fails_no_request(service, small):
    folder, other, _ = small
    frame = make_frame(5, seed=4).drop(columns="churn")
    body = frame.to_json(orient="records")
    stop, statuses, versions = threading.Event(), [], set()

    def client():
        with httpx.Client(base_url=str(service.base_url), timeout=30) as c:
            while not stop.is_set():
                r = c.post("/predict", content=body, headers=JSON)
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.add(r.json()["model_version"])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for target in (other, folder, other):
            time.sleep(0.3)
            r = service.post("/reload", json={"target": str(target)}, headers=AUTH)
            assert r.status_code == 200, r.text
        assert r.json() == {"previous_version": 1, "model_version": 7, "package": str(other), "threshold": 0.3}
        time.sleep(0.3)
        service.process.send_signal(signal.SIGHUP)  # re-reads the package given at start
        deadline = time.monotonic() + 20
        while service.get("/health").json()["model_version"] != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert service.get("/health").json()["model_version"] == 1
    assert len(statuses) > 20 and set(statuses) == {200}
    assert versions == {1, 7}
    for entry in artifacts.read_json(folder / "package.json")["files"]:  # the served package stays as written
        assert file_sha256(folder / entry["file"]) == entry["sha256"], entry["file"]


def test_a_failed_reload_keeps_the_model_in_service(service, tmp_path):
    r = service.post("/reload", json={"target": str(tmp_path)}, headers=AUTH)
    assert r.status_code == 422 and "neither a model package" in r.json()["error"] and r.json()["serving"] == 1
    r = service.post("/reload", content=b"[1]", headers=AUTH)
    assert r.status_code == 400 and "'target'" in r.json()["error"]
    assert post(service, make_frame(1).drop(columns="churn")).json()["model_version"] == 1


@pytest.fixture(scope="module")
def logging_service(small, tmp_path_factory):
    """A service of its own, so that its log holds only the requests of the test using it."""
    log_dir = tmp_path_factory.mktemp("served") / "log"
    port = free_port()
    args = ["--log-dir", str(log_dir), "--log-batch-rows", "25", "--log-interval", "0.5"]
    with running_service(serve_command(small[0], port, *args), port):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            client.log_dir = log_dir
            yield client


def test_the_request_log_is_read_back_by_step_5(logging_service, small):
    folder, _, _ = small
    served = make_frame(60, seed=8)
    for i in range(0, 60, 10):  # six requests of ten rows; the model input and the identifier are logged
        r = logging_service.post("/predict", content=served.iloc[i:i + 10].drop(columns="churn").to_json(
            orient="records"), headers={"content-type": "application/json"})
        assert r.status_code == 200
    log_dir = logging_service.log_dir
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # 25-row files, then the 0.5 s interval writes the rest
        frame = requestlog.read_log(log_dir, id_column="customer_id", target="churn") if requestlog.log_files(
            log_dir) else pd.DataFrame()
        if "customer_id" in frame and set(served["customer_id"]) <= set(frame["customer_id"]):
            break
        time.sleep(0.2)
    files = requestlog.log_files(log_dir)
    assert len(files) >= 2 and not list(log_dir.glob(".*.tmp"))
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    raw = pd.concat([pd.read_parquet(f) for f in files])
    assert {"served_at", "served_request", "served_model_version", "served_prediction", "served_proba_yes"} <= set(raw)
    # labels arrive later, joined by the identifier column
    served[["customer_id", "churn"]].to_csv(log_dir / "labels.csv", index=False)
    package = deployment.load_package(folder)
    prepared = Prepared(train=make_frame(400), test=make_frame(200, seed=9), target="churn",
                        problem_type="classification", numeric=NUMERIC, categorical=CATEGORICAL,
                        id_column="customer_id")
    params = {"monitor_data": str(log_dir), "n_batches": 2, "seed": 0}
    batches, schedule, source = mon.production_batches(params, prepared, feature="tenure")
    assert source == "monitor_data" and len(batches) == 2 and "served_at" not in batches[0]
    ours = pd.concat(batches).set_index("customer_id").loc[served["customer_id"]]
    assert (ours["churn"].to_numpy() == served["churn"].to_numpy()).all()
    np.testing.assert_allclose(ours["tenure"].to_numpy(), served["tenure"].to_numpy())
    detector = mon.DriftDetector(NUMERIC, CATEGORICAL).fit(prepared.train)
    ref = mon.prediction_shares(*deployment.predict_arrays(package, prepared.test))
    contract = KpiContract("classification", {"recall": 0.5}, "yes", classes=["no", "yes"])
    results = mon.track_all(package, batches, detector, contract, reference_pred=ref, n_boot=20)
    assert list(schedule["labelled"]) == [True, True] and list(schedule["rows"]) == [30, 30]
    assert all(r["kpis"] is not None and not r["validation"].errors for r in results)


# --- the request log and the lock, without a service ------------------------------------------------


def test_request_log_keeps_the_newest_files_and_leaves_sensitive_columns_out(tmp_path):
    log = requestlog.RequestLog(tmp_path / "log", batch_rows=2, interval_s=3600, max_files=2,
                                exclude=["gender"], id_column="customer_id")
    try:
        for i in range(7):
            inputs = pd.DataFrame({"customer_id": [i, f"C{i}"], "tenure": [1.0, 2.0], "gender": ["f", "m"]})
            log.append(inputs, pd.DataFrame({"row": [0, 1], "prediction": ["no", "yes"]}), request_id=f"r{i}",
                       model_version=1)
    finally:
        log.close()
    files = requestlog.log_files(tmp_path / "log")
    assert len(files) == 2
    frame = requestlog.read_log(tmp_path / "log", id_column="customer_id", target="churn")
    assert list(frame.columns) == ["customer_id", "tenure", "served_at"]
    assert list(frame["customer_id"]) == ["5", "C5", "6", "C6"]  # the newest two files; ids as text


def test_a_log_folder_without_files_is_a_clear_error(tmp_path):
    with pytest.raises(requestlog.PlaybookError, match="without request-log files"):
        requestlog.read_log(tmp_path, id_column="customer_id", target="churn")
    frame = pd.DataFrame({"tenure": [1.0]})
    with pytest.raises(requestlog.PlaybookError, match="no identifier column"):
        requestlog.join_labels(frame, pd.DataFrame({"customer_id": ["a"], "churn": ["no"]}), "customer_id", "churn")


def test_the_serve_lock_pins_the_serve_extra_and_nothing_of_jupyter():
    dists, missing = extra_distributions("serve")
    names = {d.metadata["Name"].lower() for d in dists}
    assert {"fastapi", "uvicorn", "scikit-learn", "pandas", "skops", "starlette"} <= names and not missing
    assert not names & {"jupyterlab", "papermill", "nbconvert", "ipykernel", "pytest", "matplotlib"}
    text = serve_lock_text()
    assert f"fastapi=={next(d.version for d in dists if d.metadata['Name'].lower() == 'fastapi')}" in text
    assert "# and the playbook itself, ml-project-playbook==" in text
    assert serve_lock_text("no-such-distribution").startswith("# no-such-distribution is not installed here")


def test_serve_does_not_import_the_notebook_machinery():
    code = ("import sys, helpers.run.cli, helpers.run.serve; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'papermill', 'nbconvert', 'nbformat', "
            "'jupyterlab', 'jupyter_client', 'ipykernel', 'ipywidgets', 'matplotlib', 'IPython'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


# --- the demo run's package (slow): parity with `playbook predict` and the container recipe ------------------


@pytest.fixture(scope="module")
def demo_service(demo_run):
    port = free_port()
    package = deployment.champion_dir(demo_run)
    with running_service(serve_command(package, port), port):  # loopback, no token: open
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client


def test_served_predictions_equal_playbook_predict_on_the_whole_test_side(demo_run, demo_service, tmp_path):
    test = pd.read_parquet(demo_run.artifacts / "02_data_foundation" / "test.parquet").drop(columns="churn")
    test.to_parquet(tmp_path / "test.parquet")
    test.to_csv(tmp_path / "test.csv", index=False)
    answers = {}
    for name in ("test.parquet", "test.csv"):
        done = subprocess.run([sys.executable, "-m", "helpers.run.cli", "predict", "--run", str(demo_run.path),
                               "--input", str(tmp_path / name), "--output", str(tmp_path / f"{name}.out.csv")],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        answers[name] = (pd.read_csv(tmp_path / f"{name}.out.csv", dtype={"customer_id": object}),
                         [line.removeprefix("warning: ") for line in done.stdout.splitlines()
                          if line.startswith("warning: ")])
    # JSON keeps every value as sent (like the Parquet file); CSV is read as `playbook predict` reads CSV
    for name, r in (("test.parquet", demo_service.post("/predict", content=test.to_json(orient="records"),
                                                       headers={"content-type": "application/json"})),
                    ("test.csv", demo_service.post("/predict", content=(tmp_path / "test.csv").read_bytes(),
                                                   headers={"content-type": "text/csv"}))):
        assert r.status_code == 200, r.text
        expected, warnings = answers[name]
        got = pd.DataFrame(r.json()["predictions"])
        assert len(got) == len(test) == len(expected)
        assert deployment.compare_predictions(expected, got, atol=1e-6)["differing_rows"] == 0  # predict rounds to 6
        assert r.json()["warnings"] == warnings
    meta = demo_service.get("/metadata").json()
    package_meta = artifacts.read_json(deployment.champion_dir(demo_run) / "model_meta.json")
    assert meta["kpis"] == package_meta["kpis"] and meta["training_data_sha256"] == package_meta["training_data_sha256"]


@pytest.mark.slow
def test_the_registry_alias_is_served_and_followed_on_reload(demo_run):
    """The demo run is in runs/mlflow.db (tracking local), step 5 moved the alias to its champion."""
    uri, port = demo_run.read_manifest()["tracking"]["uri"], free_port()
    model = f"models:/{tracking.model_name(demo_run.read_manifest())}@champion"
    command = [sys.executable, "-m", "helpers.run.cli", "serve", "--model", model, "--tracking", uri, "--port", str(port)]
    package = deployment.champion_dir(demo_run)
    row = pd.read_parquet(demo_run.artifacts / "02_data_foundation" / "test.parquet").head(3).drop(columns="churn")
    with running_service(command, port), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        meta = client.get("/metadata").json()
        assert meta["model_version"] == artifacts.read_json(package / "model_meta.json")["version"]
        served = client.post("/predict", content=row.to_json(orient="records"),
                             headers={"content-type": "application/json"})
        assert served.status_code == 200 and len(served.json()["predictions"]) == 3
        reloaded = client.post("/reload", json={"target": model})
        assert reloaded.status_code == 200, reloaded.text
        missing = client.post("/reload", json={"target": "models:/nobody@champion"})
        assert missing.status_code in (400, 404, 422) and "is not in the registry" in missing.json()["error"]
        assert client.post("/predict", content=row.to_json(orient="records"),
                           headers={"content-type": "application/json"}).json() == served.json()


def test_tracking_without_a_registered_model_is_refused(capsys):
    from helpers.run import cli

    assert cli.main(["serve", "--package", "x", "--tracking", "sqlite:///runs/mlflow.db"]) == 2
    assert "--tracking names the store of a registered model" in capsys.readouterr().err


@pytest.mark.slow
def test_the_container_recipe_serves_from_a_fresh_environment(demo_run, tmp_path):
    """The package's lock installs into a new venv (from PyPI), the playbook beside it with --no-deps, and the
    Dockerfile's start command serves the package there."""
    package = deployment.champion_dir(demo_run)
    venv = tmp_path / "venv"
    # A venv without a pip of its own, filled by this interpreter's pip (--python), without byte-compiling each
    # installed module (what imports is compiled when the service starts): the same packages, from the same
    # lock, in ~30 s instead of ~2 min (bootstrapping pip into the venv and compiling scipy, scikit-learn, pandas)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
           "--disable-pip-version-check", "-q", "--no-compile"]
    subprocess.run([*pip, "-r", str(package / SERVE_LOCK_FILE)], check=True, timeout=900)
    source = tmp_path / "source"  # the project's files, so that the wheel build writes nothing into the clone
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, source / name)
    for name in ("helpers", "playbook", "templates"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_*"))
    subprocess.run([*pip, "--no-deps", str(source)], check=True, timeout=300, cwd=tmp_path)
    cmd_line = next(line for line in (package / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    command = json.loads(cmd_line[4:])
    port = free_port()
    replace = {deployment.CONTAINER_MODEL_DIR: str(package), "0.0.0.0": "127.0.0.1",
               str(deployment.CONTAINER_PORT): str(port)}
    command = [str(venv / "bin" / command[0]), *[replace.get(a, a) for a in command[1:]]]
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    with running_service(command, port, env=env, cwd=tmp_path, timeout=180) as process:  # compiles what it imports
        seconds = time.perf_counter() - started
        row = pd.read_parquet(demo_run.artifacts / "02_data_foundation" / "test.parquet").head(1).drop(columns="churn")
        r = httpx.post(f"http://127.0.0.1:{port}/predict", content=row.to_json(orient="records"),
                       headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["rows"] == 1, r.text
        listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "list",
                                 "--format=freeze"], capture_output=True, text=True, check=True).stdout.lower()
        assert "jupyterlab" not in listed and "papermill" not in listed
        assert process.poll() is None
    print(f"the container recipe's service answered /health {seconds:.1f} s after its start")



PREDICT_IN_A_THREAD = """
import json, sys, threading
import pandas as pd
from threadpoolctl import threadpool_info
from helpers.run import serve
served = serve.load_served(sys.argv[1])
frame = pd.read_json(sys.stdin)
seen = {}
def predict_here():
    seen["before"] = sorted({lib["num_threads"] for lib in threadpool_info()})
    serve.answer(served.package, frame)
    seen["after"] = sorted({lib["num_threads"] for lib in threadpool_info()})
worker = threading.Thread(target=predict_here)
worker.start()
worker.join()
print(json.dumps(seen))
"""


def test_a_prediction_thread_runs_one_native_thread(small):
    """Requests are answered on several threads: each predicts with one OpenMP/BLAS thread (no oversubscription).

    In a process without the tests' OMP_NUM_THREADS=1, on a machine with more than one core."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    frame = make_frame(5, seed=3).drop(columns=["churn"])
    done = subprocess.run([sys.executable, "-c", PREDICT_IN_A_THREAD, str(small[0])], input=frame.to_json(orient="records"),
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    if os.cpu_count() > 1:
        assert max(seen["before"]) > 1, seen  # the default: a thread per core
    assert seen["after"] == [1], seen
