"""Every finished ``playbook run`` in one MLflow history, its champion in MLflow's model registry.

The CLI process logs the run once its steps and report are done (never the kernels): parameters,
per-step status and duration, KPI targets and achieved values with intervals, the verdicts, the
data hash, the report and the key documents. Every value is read from the run folder (manifest
and step summaries), nothing is recomputed. The champion's package folder (skops file and its
metadata) is logged as plain files and registered as a new version of the project's model through
the client API: no MLflow model flavour, nothing pickled; loading stays ``modelio``'s (skops with
the explicit trusted types). Step 5's decision moves the ``champion`` alias.

``tracking``: ``local`` (a SQLite store ``mlflow.db`` in the runs folder, the run folder's parent),
``off``, or a tracking-server URI. Tracking never fails or loses a run: any error is one warning,
and ``playbook track RUN_DIR`` logs the run later.

mlflow is imported inside the functions that need it: ``import mlflow`` and its SQL store cost
2-4 s, which commands that do not log (``playbook params``, ``gate``, ...) must not pay.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from helpers.core import artifacts, config, paths
from helpers.core.errors import PlaybookError
from helpers.core.hashing import file_sha256

STORE_FILE = "mlflow.db"  # the local store, in the runs folder
ARTIFACT_FOLDER = "mlartifacts"  # the local store's artifacts, next to it
ALIAS = "champion"  # the registry alias step 5's decision moves
MODEL_ARTIFACTS = "model"  # the champion's package folder inside the MLflow run's artifacts
S1, S2, S3, S4, S5 = paths.STEP_NOTEBOOKS
# the key documents, as the steps write them (step 3 and step 5 also name theirs in their summaries)
DOCUMENTS = {"charter": (S1, "charter.md"), "datasheet": (S2, "datasheet.md"),
             "stack_decision": (S3, "stack_decision.md"), "model_card": (S5, "model_card.md")}
RUN_FILES = ("report.html", artifacts.MANIFEST, artifacts.PROJECT_FILE)

# Telemetry off; a tracking server that is down costs one retry of a 2 s request, not MLflow's
# default of 7 retries of 120 s (`MLFLOW_HTTP_REQUEST_*` set by the user win over these).
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
                 "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
MLFLOW_MODULES = ("mlflow", "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store")


def configure_environment() -> None:
    """MLflow's telemetry off and short HTTP timeouts, before mlflow is imported."""
    os.environ.update(TELEMETRY_OFF)
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def store_uri(setting: str | None, runs_folder: str | os.PathLike) -> str | None:
    """The tracking URI for a ``tracking`` value: None when off, the runs folder's SQLite store when local."""
    kind, uri = config.tracking_setting(setting)
    if kind == config.TRACKING_OFF:
        return None
    if kind == config.TRACKING_LOCAL:
        return local_uri(runs_folder)
    return uri


def local_uri(runs_folder: str | os.PathLike) -> str:
    """``sqlite:///<runs folder>/mlflow.db`` (absolute): what ``mlflow ui --backend-store-uri`` takes."""
    return f"sqlite:///{(Path(runs_folder).resolve() / STORE_FILE).as_posix()}"


# --- importing mlflow ahead ----------------------------------------------------------------------

_IMPORT: dict[str, Any] = {}  # "thread", "seconds": the import started ahead (prefetch)


def prefetch(before: Callable[[], Any] | None = None) -> None:
    """Import mlflow and its SQL store in a background thread while the steps run.

    ``before`` runs first in the same thread (the runner's nbconvert import): two threads importing
    modules that share dependencies at the same time could deadlock on the import locks.
    """
    def work():
        if before is not None:
            before()
        _IMPORT["seconds"] = import_mlflow()

    if "thread" not in _IMPORT:
        _IMPORT["thread"] = threading.Thread(target=work, daemon=True, name="mlflow-import")
        _IMPORT["thread"].start()


def import_mlflow() -> float:
    """Import mlflow and the SQL stores (telemetry off first); the seconds it took."""
    import importlib

    configure_environment()
    started = time.perf_counter()
    for name in MLFLOW_MODULES:
        importlib.import_module(name)
    for name in ("mlflow", "alembic"):  # the store's "Creating initial MLflow database tables" lines
        logging.getLogger(name).setLevel(logging.WARNING)
    return time.perf_counter() - started


def _imported() -> tuple[float, float]:
    """(seconds the import took, seconds this call waited for it): the prefetch's, or a fresh import."""
    started = time.perf_counter()
    thread = _IMPORT.get("thread")
    if thread is not None:
        thread.join()
    seconds = _IMPORT.get("seconds")
    if seconds is None:
        seconds = _IMPORT["seconds"] = import_mlflow()
    return seconds, time.perf_counter() - started


# --- what a run holds --------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(artifacts.to_jsonable(value), ensure_ascii=False)


def run_params(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The run's merged parameters as MLflow params (lists and mappings as JSON)."""
    values = manifest.get("parameters") or {}
    return {k: _text(v)[:6000] for k, v in values.items() if k not in ("run_dir", "interactive")}


def run_metrics(run: artifacts.Run, manifest: Mapping[str, Any]) -> dict[str, float]:
    """Step durations, data rows, KPI targets and achieved values with their intervals, readiness."""
    out: dict[str, float] = {}
    for entry in manifest.get("steps") or []:
        if entry.get("duration_s") is not None:
            out[f"duration_s/{entry['step']}"] = float(entry["duration_s"])
    rows = (manifest.get("dataset") or {}).get("rows")
    if rows is not None:
        out["data/rows"] = float(rows)
    for k in manifest.get("kpis") or []:
        for field in ("target", "achieved", "ci_low", "ci_high"):
            if k.get(field) is not None:
                out[f"kpi/{k['metric']}" + ("" if field == "achieved" else f"/{field}")] = float(k[field])
    s5 = run.optional_summary(S5) or {}
    final = (s5.get("readiness") or {}).get("final")
    if final is not None:
        out["readiness"] = float(final)
    return out


def run_tags(run: artifacts.Run, manifest: Mapping[str, Any]) -> dict[str, str]:
    """Status of each step, the verdicts (go/no-go, each KPI, the gate), data hash, champion."""
    tags = {"playbook.run": run.path.name, "playbook.run_dir": str(run.path),
            "playbook.command": manifest.get("command") or "", "playbook.status": run_status(manifest)}
    for entry in manifest.get("steps") or []:
        tags[f"status/{entry['step']}"] = entry.get("status") or "not_run"
    dataset = manifest.get("dataset") or {}
    if dataset.get("sha256"):
        tags["data/sha256"] = dataset["sha256"]
        tags["data/source"] = str(dataset.get("source"))
    s1 = run.optional_summary(S1) or {}
    if (s1.get("verdict") or {}).get("code"):
        tags["verdict/go_no_go"] = s1["verdict"]["code"]
    for key in ("target", "problem_type"):
        if s1.get(key) is not None:
            tags[f"playbook.{key}"] = str(s1[key])
    for k in manifest.get("kpis") or []:
        if k.get("verdict"):
            tags[f"verdict/{k['metric']}"] = k["verdict"]
    s5 = run.optional_summary(S5) or {}
    if s5.get("gate"):
        tags["verdict/gate"] = str(s5["gate"].get("result"))
    champion = manifest.get("champion") or {}
    if champion.get("family"):
        tags["champion/family"] = champion["family"]
        tags["champion/version"] = str(champion.get("version"))
    return {k: v[:5000] for k, v in tags.items()}


def run_status(manifest: Mapping[str, Any]) -> str:
    """``succeeded`` when every step succeeded or was reused, else the first other status."""
    for entry in manifest.get("steps") or []:
        if entry.get("status") not in ("succeeded", "reused"):
            return entry.get("status") or "not_run"
    return "succeeded"


def document_paths(run: artifacts.Run) -> dict[str, Path]:
    """The key documents the run wrote (charter, datasheet, stack decision, model card)."""
    found = {name: run.artifacts / step / file for name, (step, file) in DOCUMENTS.items()}
    return {name: path for name, path in found.items() if path.is_file()}


def champion_folder(run: artifacts.Run, manifest: Mapping[str, Any]) -> Path | None:
    """The champion's package folder named by the manifest (None without a champion)."""
    champion = manifest.get("champion") or {}
    if not champion.get("path"):
        return None
    path = run.path / champion["path"]
    folder = path if path.is_dir() else path.parent
    return folder if (folder / "model.skops").is_file() else None


def promotion(run: artifacts.Run) -> tuple[bool, str]:
    """Whether step 5's decision promotes the run's champion (moves the alias), and why.

    Step 5 promotes when its KPI quality gate passed (``gate.exit_code`` 0) or when it replaced the
    champion with a better challenger on real monitoring data (``retraining.champion_changed``).
    """
    s5 = run.optional_summary(S5)
    if s5 is None:
        return False, "step 5 did not run: no gate decision, the alias stays where it was"
    if (s5.get("retraining") or {}).get("champion_changed"):
        return True, "step 5 promoted a challenger on monitoring data"
    code = (s5.get("gate") or {}).get("exit_code")
    if code == 0:
        return True, "step 5's KPI gate passed"
    return False, f"step 5's KPI gate did not pass ({(s5.get('gate') or {}).get('result')}): the alias stays where it was"


def model_name(manifest: Mapping[str, Any]) -> str:
    """The registered model's name: the project name (registry names allow letters, digits, ``-_.``)."""
    project = manifest.get("project") or (manifest.get("parameters") or {}).get("project_name") or "playbook"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(project)).strip("-") or "playbook"


# --- logging ---------------------------------------------------------------------------------------------


def track_run(run: artifacts.Run, setting: str | None = None, *, echo=print) -> dict[str, Any] | None:
    """Log a finished run (``setting``: the ``tracking`` value, default the run's own); never raises.

    The outcome goes to the manifest (``tracking``) and one line to ``echo``; a failure is a
    warning there, the run folder stays complete.
    """
    uri = None
    try:
        if setting is None:
            parameters = run.read_manifest().get("parameters") or {}
            setting = parameters.get("tracking", config.REGISTRY["tracking"].default)
        uri = store_uri(setting, run.path.parent)
        if uri is None:
            return None
        record = log_run(run, uri)
        run.update_manifest(tracking=record)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a store, server or manifest problem must never cost the run
        where = f" at {_shown_uri(uri)}" if uri else ""
        record = {"uri": _shown_uri(uri) if uri else None, "error": f"{type(exc).__name__}: {_first_line(exc)}",
                  "at": _now()}
        echo(f"warning: the run was not logged to MLflow{where} ({record['error']}); "
             f"the run folder is complete: log it later with `playbook track {run.path}`")
        with contextlib.suppress(Exception):  # a damaged manifest stays as it is
            run.update_manifest(tracking=record)
        return record
    alias = f", alias {ALIAS!r} moved" if record["model"] and record["model"]["alias"] else ""
    model = f"; model {record['model']['name']} v{record['model']['version']}{alias}" if record["model"] else ""
    echo(f"MLflow: run {record['run_id']} in experiment {record['experiment']!r} at {record['uri']}{model} "
         f"(import {record['import_s']:.1f} s, store {record['connect_s']:.1f} s, logging {record['log_s']:.2f} s)")
    return record


def log_run(run: artifacts.Run, uri: str) -> dict[str, Any]:
    """Log the run to the store at ``uri``; register and (on promotion) alias its champion. Raises on failure."""
    import_s, waited_s = _imported()
    from mlflow.entities import Metric, Param, RunTag  # local: see the module docstring
    from mlflow.tracking import MlflowClient

    manifest = run.read_manifest()
    started = time.perf_counter()
    if uri == local_uri(run.path.parent):
        seed_local_store(run.path.parent / STORE_FILE)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = experiment_for(client, model_name(manifest), uri, run.path.parent)
    connect_s = time.perf_counter() - started

    started = time.perf_counter()
    millis = int(time.time() * 1000)
    mlrun = client.create_run(experiment_id, run_name=run.path.name, start_time=_start_millis(manifest, millis))
    run_id = mlrun.info.run_id
    client.log_batch(run_id, metrics=[Metric(k, v, millis, 0) for k, v in run_metrics(run, manifest).items()],
                     params=[Param(k, v) for k, v in run_params(manifest).items()],
                     tags=[RunTag(k, v) for k, v in run_tags(run, manifest).items()])
    for name in RUN_FILES:
        if (run.path / name).is_file():
            client.log_artifact(run_id, str(run.path / name))
    for path in document_paths(run).values():
        client.log_artifact(run_id, str(path), "documents")
    model = register_champion(client, run, manifest, mlrun)
    client.set_terminated(run_id, "FINISHED" if run_status(manifest) == "succeeded" else "FAILED")
    log_s = time.perf_counter() - started
    return {"uri": _shown_uri(uri), "experiment": model_name(manifest), "run_id": run_id, "model": model,
            "import_s": round(import_s, 3), "import_wait_s": round(waited_s, 3), "connect_s": round(connect_s, 3),
            "log_s": round(log_s, 3), "at": _now()}


def seed_local_store(path: Path) -> None:
    """Start a new local store as a copy of an empty one made once per machine and MLflow version.

    MLflow builds a SQLite store by running its ~60 schema migrations (alembic): 2-8 s here, paid by
    every new runs folder (and every test). The migrated empty store is kept in the user's cache
    (``PLAYBOOK_CACHE_DIR``, else ``~/.cache/ml-project-playbook``) and copied.
    """
    import shutil

    import mlflow  # local: see the module docstring
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    if path.exists():
        return
    cache = Path(os.environ.get("PLAYBOOK_CACHE_DIR") or Path.home() / ".cache" / "ml-project-playbook")
    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    if not template.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with artifacts.atomic_path(template) as tmp:
            tmp.unlink()
            store = SqlAlchemyStore(f"sqlite:///{tmp.as_posix()}", (cache / ARTIFACT_FOLDER).as_uri())
            store.engine.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    with artifacts.atomic_path(path) as tmp:
        shutil.copyfile(template, tmp)


def experiment_for(client, name: str, uri: str, runs_folder: Path) -> str:
    """The project's experiment (created on first use; the local store keeps its artifacts in the runs folder)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri == local_uri(runs_folder):
        location = (runs_folder.resolve() / ARTIFACT_FOLDER).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another run created it meanwhile
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def register_champion(client, run: artifacts.Run, manifest: Mapping[str, Any], mlrun) -> dict[str, Any] | None:
    """The champion's package as the run's ``model/`` artifacts and a new version of the project's model.

    The version's source is those plain files (no MLflow flavour); its tags name the local package
    and the skops file's SHA-256, which ``champion_package`` checks. On promotion, alias ``champion``.
    """
    from mlflow.exceptions import MlflowException  # local: see the module docstring

    folder = champion_folder(run, manifest)
    if folder is None:
        return None
    run_id = mlrun.info.run_id
    client.log_artifacts(run_id, str(folder), MODEL_ARTIFACTS)
    name = model_name(manifest)
    try:
        client.create_registered_model(name, description=f"Champion models of the playbook project {name}.")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    promote, why = promotion(run)
    champion = manifest.get("champion") or {}
    tags = {"playbook.run": run.path.name, "playbook.package_path": str(folder),
            "playbook.model_sha256": file_sha256(folder / "model.skops") or "",
            "playbook.family": str(champion.get("family")), "playbook.promotion": why}
    version = client.create_model_version(name, f"{mlrun.info.artifact_uri}/{MODEL_ARTIFACTS}", run_id=run_id,
                                          tags=tags, description=f"{champion.get('family')} from run {run.path.name}")
    if promote:
        client.set_registered_model_alias(name, ALIAS, version.version)
    return {"name": name, "version": int(version.version), "alias": ALIAS if promote else None, "promotion": why}


# --- resolving the champion -----------------------------------------------------------------------------


def parse_model_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` -> (name, alias, version)."""
    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", model_uri or "")
    if not match:
        raise PlaybookError(f"{model_uri!r} is not a registered model URI.",
                            f"write models:/<name>@{ALIAS} or models:/<name>/<version>.")
    return match.group(1), match.group(2), match.group(3)


def champion_package(model_uri: str, tracking_uri: str, dst: str | os.PathLike | None = None) -> Path:
    """The local model package folder of a registered version (``models:/<name>@champion``).

    The run folder's own package when it is still there with the registered skops file (SHA-256
    checked), else the version's artifacts downloaded into ``dst`` (or a temporary folder). Load it
    with ``deployment.load_package`` / ``modelio.load_model`` (skops, trusted types only).
    """
    name, alias, number = parse_model_uri(model_uri)
    _imported()
    from mlflow.artifacts import download_artifacts  # local: see the module docstring
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = (client.get_model_version_by_alias(name, alias) if alias
                   else client.get_model_version(name, number))
    except MlflowException as exc:
        raise PlaybookError(f"{model_uri} is not in the registry at {_shown_uri(tracking_uri)} ({_first_line(exc)}).",
                            "check the model name and alias, or run `playbook run` so step 5 promotes a champion.") from None
    expected = version.tags.get("playbook.model_sha256")
    local = Path(version.tags.get("playbook.package_path", ""))
    if local.parts and (local / "model.skops").is_file() and file_sha256(local / "model.skops") == expected:
        return local
    folder = Path(download_artifacts(artifact_uri=version.source, dst_path=None if dst is None else str(dst),
                                     tracking_uri=tracking_uri))
    if expected and file_sha256(folder / "model.skops") != expected:
        raise PlaybookError(f"The model file of {model_uri} (version {version.version}) does not match its "
                            "registered SHA-256.", "register the model again: `playbook track RUN_DIR`.")
    return folder


# --- small helpers -----------------------------------------------------------------------------------------


def _start_millis(manifest: Mapping[str, Any], default: int) -> int:
    try:
        return int(datetime.fromisoformat(manifest["created_at"]).timestamp() * 1000)
    except (KeyError, TypeError, ValueError):
        return default


def _shown_uri(uri: str) -> str:
    """The URI without a password (``https://user:secret@host`` -> ``https://user:***@host``)."""
    parts = urlsplit(uri)
    if parts.password:
        return uri.replace(f":{parts.password}@", ":***@")
    return unquote(uri) if uri.startswith("sqlite:") else uri


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
