"""``playbook serve``: a model package behind HTTP (FastAPI on uvicorn, one worker).

The service loads only the model package (``deployment.load_package``: skops with the trusted
types) and answers through the code of ``playbook predict``: ``deployment.validate`` decides what
is valid, with the same data fixes, warnings and messages; the request schema in the OpenAPI
document is generated from ``schema.json`` for documentation only (the body is read raw). Bad
input is a 4xx JSON body ``{"error", "fix", ...}``, never a 500. Reloads build the new package
completely, then swap one reference: a request holds the package it started with to its end.

Interactive docs (Swagger UI, ReDoc) are off: FastAPI loads their assets from a CDN, and no
installed package ships them; ``/openapi.json`` is served.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import io
import ipaddress
import json
import logging
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import threadpoolctl
import uvicorn
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

try:  # the [serve] extra installs it; without it the standard library parses the bodies alone
    import orjson
except ImportError:  # pragma: no cover - a bare install
    orjson = None

from helpers.core.artifacts import MANIFEST, Run
from helpers.core.errors import PlaybookError
from helpers.core.features import decision_threshold
from helpers.run import tracking
from helpers.steps.operations import deployment
from helpers.steps.operations.requestlog import RequestLog

TOKEN_ENV = "PLAYBOOK_SERVE_TOKEN"
TOKEN_FILE_ENV = "PLAYBOOK_SERVE_TOKEN_FILE"
MAX_BYTES = 8 * 1024 * 1024  # bodies above this are refused (413) before they are read whole
MAX_ROWS = 100_000  # rows per request
OPEN_PATHS = ("/health",)  # the only path answered without the token
JSON_TYPES = ("application/json",)
CSV_TYPES = ("text/csv", "application/csv")
_SCALARS = (str, int, float, bool, type(None))
logger = logging.getLogger("playbook.serve")


class RequestError(Exception):
    """Bad input of one request: its HTTP status, the problem and the fix."""

    def __init__(self, status: int, problem: str, fix: str, **extra: Any):
        super().__init__(problem)
        self.status, self.problem, self.fix, self.extra = status, problem, fix, extra

    def body(self) -> dict[str, Any]:
        return {"error": self.problem, "fix": self.fix, **self.extra}


# --- what is served, and how a reload target becomes a package ---------------------------------------


def resolve_target(target: str, tracking_uri: str | None = None) -> Path:
    """The package folder a target names: a package folder, a run folder (its champion), or a registered
    model (``models:/<project>@champion`` in the MLflow store ``tracking_uri``, default ``runs/mlflow.db``).

    The one place a target is interpreted, at start, by ``POST /reload`` and on SIGHUP: a service
    started on the alias follows it when step 5 of a later run moves it.
    """
    if target.startswith("models:/"):
        return tracking.champion_package(target, tracking_uri or tracking.local_uri("runs"))
    path = Path(os.path.expanduser(target))
    if (path / "model_meta.json").exists():
        return path
    if (path / MANIFEST).exists():
        return deployment.champion_dir(Run(path))
    raise PlaybookError(f"{target!r} is neither a model package (no model_meta.json) nor a run folder "
                        f"(no {MANIFEST}).", "give RUN_DIR/models/vN with --package, or a finished run with --run.")


@dataclass(frozen=True)
class Served:
    """One loaded package and what the service says about it."""

    package: deployment.Package
    target: str
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def version(self) -> Any:
        return self.package.meta.get("version")

    @property
    def threshold(self) -> float | None:
        own = decision_threshold(self.package.model)
        return own if own is not None else self.package.meta.get("threshold")


def load_served(target: str, resolve: Callable[[str], Path] = resolve_target) -> Served:
    return Served(deployment.load_package(resolve(target)), target)


class ModelHolder:
    """The package in service; ``reload`` loads the next one fully, then swaps the reference (atomic in Python)."""

    def __init__(self, served: Served, resolve: Callable[[str], Path] = resolve_target):
        self.current, self.resolve = served, resolve
        self.start_target = served.target
        self._lock = threading.Lock()  # one reload at a time; requests never wait for it

    def reload(self, target: str | None = None) -> tuple[Served, Served]:
        """Load ``target`` (default: the target given at start, re-read) and serve it; (old, new)."""
        with self._lock:
            new = load_served(target or self.start_target, self.resolve)
            old, self.current = self.current, new
        logger.warning("reloaded: v%s -> v%s from %s", old.version, new.version, new.package.path)
        return old, new


# --- security and limits: plain ASGI wrappers outside the FastAPI app ----------------------------------


def read_token(token_file: str | None = None) -> str | None:
    """The API token: ``--token-file``, else ``$PLAYBOOK_SERVE_TOKEN_FILE``, else ``$PLAYBOOK_SERVE_TOKEN``."""
    path = token_file or os.environ.get(TOKEN_FILE_ENV)
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PlaybookError(f"The token file {path} cannot be read ({exc.strerror}).",
                                "give a readable file holding the API token.") from None
        if not token:
            raise PlaybookError(f"The token file {path} is empty.", "write the API token into it.")
        return token
    return os.environ.get(TOKEN_ENV) or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to a public address
        return False


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise PlaybookError(f"--host {host} would serve the model beyond this machine without an API token.",
                            f"set {TOKEN_ENV} (or {TOKEN_FILE_ENV}, or --token-file) to a secret, or bind to "
                            "127.0.0.1.")


ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


async def send_json(send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


class TokenGate:
    """401 for every path but ``OPEN_PATHS`` unless ``Authorization: Bearer <token>`` (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str | None):
        self.app, self.token = app, token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.token and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token):
                return await send_json(send, 401, {
                    "error": "missing or wrong API token",
                    "fix": f"send the header 'Authorization: Bearer <token>' with the token of {TOKEN_ENV} "
                           "(or of the token file)"}, [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


class BodyLimit:
    """413 for a body above ``max_bytes`` (by its Content-Length, or counted while it streams in)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, int(declared))
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await self._refuse(send, size)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, send, size: int) -> None:
        await send_json(send, 413, {"error": f"the request body has {size:,} bytes, more than the limit of "
                                             f"{self.max_bytes:,}", "fix": "send fewer rows per request, or start "
                                             "the service with a larger --max-bytes"})


# --- parsing: raw bytes to the table `playbook predict` would have read ---------------------------------


def parse_body(body: bytes, content_type: str, package: deployment.Package, max_rows: int) -> pd.DataFrame:
    """The rows of a JSON list of records or a CSV body (read as ``playbook predict`` reads CSV)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind not in JSON_TYPES + CSV_TYPES:
        raise RequestError(415, f"content type {kind or '(none)'!r} is not accepted",
                           "send a JSON list of records as application/json, or CSV with a header row as text/csv")
    if not body.strip():
        raise RequestError(400, "the request body is empty", "send at least one row")
    frame = _parse_json(body, max_rows) if kind in JSON_TYPES else _parse_csv(body, package)
    _check_rows(len(frame), max_rows)
    if frame.empty:
        raise RequestError(400, "the request has no data rows", "send at least one row")
    return frame


def _check_rows(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise RequestError(413, f"the request has {rows:,} rows, more than the limit of {max_rows:,}",
                           "split the rows over several requests, or start the service with a larger --max-rows")


def _loads(body: bytes) -> Any:
    """``json.loads(body)``: orjson's parse where it accepts the body (2-3x faster, the same values for what
    it accepts), else ``json``'s own, which decides, with its own message (it accepts NaN, big integers)."""
    if orjson is not None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body)


def _parse_json(body: bytes, max_rows: int) -> pd.DataFrame:
    try:
        records = _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the body is not valid JSON ({exc})",
                           'send a JSON list of records, e.g. [{"column": value, ...}]') from None
    if isinstance(records, dict):
        records = [records]  # one record alone is a batch of one
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise RequestError(400, "the JSON body is not a list of records (objects)",
                           'send [{"column": value, ...}, ...]: one object per row')
    _check_rows(len(records), max_rows)  # before a table is built of them
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    # only columns of dtype object (mixed values) can hold lists or objects, not those pandas read as str;
    # a loop over the array, not Series.map (~1 ms less per 1,000 rows and column)
    for name in [c for c, dtype in frame.dtypes.items() if isinstance(dtype, np.dtype) and dtype.kind == "O"]:
        nested = np.fromiter((not isinstance(value, _SCALARS) for value in frame[name].to_numpy()), bool, len(frame))
        if nested.any():
            i = int(nested.argmax())
            raise RequestError(422, f"column {name} of record {i} holds a {type(frame[name].iloc[i]).__name__}, "
                               "not a value", f"send {name} as a number, a string, true/false or null")
    return frame


def _parse_csv(body: bytes, package: deployment.Package) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(body), dtype=deployment.csv_dtypes(package), low_memory=False)
    except pd.errors.EmptyDataError:
        raise RequestError(400, "the CSV body has no header row", "send CSV with a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise RequestError(400, f"the CSV body cannot be read ({str(exc).strip()})",
                           "send comma-separated UTF-8 text with one header row") from None


# --- the app -----------------------------------------------------------------------------------------


@dataclass
class Answer:
    """One request's rows through the code of ``playbook predict``: fixed rows, findings, model input, predictions."""

    fixed: pd.DataFrame
    validation: deployment.Validation
    X: pd.DataFrame
    out: pd.DataFrame
    times: dict[str, float]


_prediction_thread = threading.local()


def _one_thread_per_request() -> None:
    """Native thread pools (OpenMP, BLAS) of the calling thread limited to one thread, once per thread.

    Requests are already answered on several threads of one process; an OpenMP team per request on top
    oversubscribes the cores, and its spinning threads took ~6 ms of each single-row request on 2 cores
    (p50 22 -> 15 ms, 8 clients 118 -> 136 requests/s; 1,000-row throughput not lower: benchmarks/bench_serve.py).
    OpenMP's thread count is a per-thread setting, hence once in every thread that predicts.
    """
    if not getattr(_prediction_thread, "limited", False):
        threadpoolctl.threadpool_limits(1)
        _prediction_thread.limited = True


def _predict_config():
    """scikit-learn's settings for the service's predictions: the per-call checks the pipeline would repeat on
    every request skipped (``assume_finite``: the input is ``features.as_model_input``'s, where inf is NaN and the
    pipeline's imputers fill every NaN; ``skip_parameter_validation``: the fitted model's parameters were checked
    at fit). The same predictions; ~1.5-2 ms less CPU per single-row request (of ~9 ms for predict_proba)."""
    _one_thread_per_request()
    return sklearn.config_context(assume_finite=True, skip_parameter_validation=True)


def answer(package: deployment.Package, frame: pd.DataFrame) -> Answer:
    """Validate (errors: a 422 naming the columns), convert and predict ``frame``, each stage timed."""
    times, start = {}, time.perf_counter()
    fixed, v = deployment.validate(frame, package)
    if v.errors:
        try:
            v.raise_errors()
        except PlaybookError as exc:
            raise RequestError(422, exc.problem, exc.fix, errors=v.errors, warnings=v.warning_lines()) from None
    times["validate"], start = time.perf_counter() - start, time.perf_counter()
    X = deployment.model_input(fixed, package)
    times["convert"], start = time.perf_counter() - start, time.perf_counter()
    with _predict_config():
        out = deployment.predict_frame(package, fixed, X)
    times["predict"] = time.perf_counter() - start
    return Answer(fixed, v, X, out, times)


class Batcher:
    """Small requests that arrive together share one pass through validation and the model.

    A call costs the pipeline a fixed few milliseconds of pandas and scikit-learn overhead whatever its
    rows, so single-row requests queued behind one another are answered as one batch (the adaptive
    batching of model servers such as BentoML). One worker thread takes what is queued, groups it by
    package and column list, answers each group at once and splits the answer by request. A group whose
    validation finds anything (errors, or counted warnings that belong to particular rows) is answered
    request by request instead, so every request gets exactly the answer it would get alone.
    """

    def __init__(self, max_rows: int = 64):
        self.max_rows = max_rows
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._work, name="batcher", daemon=True).start()

    def answer(self, package: deployment.Package, frame: pd.DataFrame) -> Answer:
        if len(frame) > self.max_rows:
            return answer(package, frame)
        job = (package, frame, Future(), time.perf_counter())
        self._queue.put(job)
        return job[2].result()

    def _work(self) -> None:
        while True:
            jobs = [self._queue.get()]
            while len(jobs) < 256:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            groups: dict[tuple, list] = {}
            for job in jobs:
                groups.setdefault((id(job[0]), tuple(job[1].columns)), []).append(job)
            for group in groups.values():
                self._answer_group(group)

    def _answer_group(self, group: list) -> None:
        if len(group) > 1:
            try:
                parts = self._together(group)
            except Exception:  # noqa: BLE001 - any trouble: each request alone, with its own error
                parts = None
            if parts is not None:
                for (_, _, future, _), part in zip(group, parts, strict=True):
                    future.set_result(part)
                return
        for package, frame, future, queued in group:
            try:
                result = answer(package, frame)
                result.times = {"queue": time.perf_counter() - queued - sum(result.times.values()), **result.times}
                future.set_result(result)
            except Exception as exc:  # noqa: BLE001 - the request's own error goes back to it
                future.set_exception(exc)

    @staticmethod
    def _together(group: list) -> list[Answer] | None:
        package, started = group[0][0], time.perf_counter()
        sizes = [len(job[1]) for job in group]
        whole = pd.concat([job[1] for job in group], ignore_index=True)
        fixed, v = deployment.validate(whole, package)
        if v.errors or v.counts:
            return None
        validated = time.perf_counter()
        X = deployment.model_input(fixed, package)
        converted = time.perf_counter()
        with _predict_config():
            out = deployment.predict_frame(package, fixed, X)
        done = time.perf_counter()
        times = {"validate": validated - started, "convert": converted - validated, "predict": done - converted}
        parts, at = [], 0
        for (_, _, _, queued), n in zip(group, sizes, strict=True):
            rows = slice(at, at + n)
            part = out.iloc[rows].reset_index(drop=True)
            if "row" in part.columns:
                part["row"] = np.arange(n)  # row numbers count within each request
            parts.append(Answer(fixed.iloc[rows].reset_index(drop=True), deployment.Validation(warnings=list(v.warnings)),
                                X.iloc[rows].reset_index(drop=True), part,
                                {"queue": started - queued, **times, "batch": float(len(group))}))
            at += n
        return parts


@dataclass
class Settings:
    max_bytes: int = MAX_BYTES
    max_rows: int = MAX_ROWS
    log: RequestLog | None = None
    batcher: Batcher | None = None


def predict_body(served: Served, body: bytes, content_type: str, settings: Settings) -> tuple[bytes, str]:
    """The JSON answer to one ``/predict`` body, and its ``Server-Timing`` header (stages in ms)."""
    package, start = served.package, time.perf_counter()
    frame = parse_body(body, content_type, package, settings.max_rows)
    parsed = time.perf_counter() - start
    result = settings.batcher.answer(package, frame) if settings.batcher else answer(package, frame)
    start = time.perf_counter()
    if settings.log is not None:
        id_col = package.meta.get("id_column")
        fixed = result.fixed
        logged = result.X.join(fixed[[id_col]]) if id_col and id_col in fixed.columns else result.X
        settings.log.append(logged, result.out, request_id=uuid.uuid4().hex, model_version=served.version)
    head = json.dumps({"model_version": served.version, "threshold": served.threshold, "rows": len(result.out),
                       "warnings": result.validation.warning_lines()})
    # pandas' own JSON writer: one C pass over the table instead of a Python dict per row
    answer_bytes = f'{head[:-1]}, "predictions": {result.out.to_json(orient="records")}}}'.encode()
    times = {"parse": parsed, **result.times, "respond": time.perf_counter() - start}
    timing = ", ".join(f"{stage};dur={seconds * 1000:.3f}" if stage != "batch" else f"batch;desc={seconds:.0f}"
                       for stage, seconds in times.items())
    return answer_bytes, timing


def request_schema(package: deployment.Package) -> dict[str, Any]:
    """The JSON schema of one record, from the package's ``schema.json`` (documentation: the validator decides)."""
    props: dict[str, Any] = {}
    for col in package.schema.get("columns", []):
        kind = col.get("kind")
        if kind == "numeric":
            rng = f"; training range [{col['min']:g}, {col['max']:g}]" if col.get("min") is not None else ""
            props[col["name"]] = {"type": ["number", "null"], "description": f"numeric feature{rng}"}
        else:
            spec: dict[str, Any] = {"type": ["string", "null"], "description": f"{kind}"}
            if col.get("categories"):
                spec["examples"] = col["categories"][:20]
                spec["description"] += f"; categories seen in training: {len(col['categories'])}"
            props[col["name"]] = spec
    return {"type": "object", "properties": props, "required": list(package.features)}


def metadata(served: Served) -> dict[str, Any]:
    meta = served.package.meta
    return {"model_version": served.version, "family": meta.get("family"), "problem_type": meta.get("problem_type"),
            "target": meta.get("target"), "classes": meta.get("classes"), "positive_label": meta.get("positive_label"),
            "threshold": served.threshold, "features": served.package.features, "numeric": meta.get("numeric"),
            "categorical": meta.get("categorical"), "id_column": meta.get("id_column"),
            "kpis": meta.get("kpis") or [], "training_data_sha256": meta.get("training_data_sha256"),
            "training_rows": meta.get("training_rows"), "created_at": meta.get("created_at"),
            "schema": served.package.schema, "package": str(served.package.path), "loaded_at": served.loaded_at}


def make_app(holder: ModelHolder, settings: Settings | None = None) -> FastAPI:
    """The FastAPI app over ``holder`` (wrap it with ``TokenGate`` and ``BodyLimit``: ``asgi_app``)."""
    settings = settings or Settings()
    package = holder.current.package
    record = request_schema(package)
    app = FastAPI(title=f"playbook serve: {package.meta.get('family')} v{holder.current.version}",
                  description="Predictions of a model package of the ML Project Playbook. The request schema "
                              "documents the model's inputs; the validator of `playbook predict` decides.",
                  docs_url=None, redoc_url=None, lifespan=_lifespan(holder, settings))

    @app.exception_handler(RequestError)
    async def _bad_request(request: Request, exc: RequestError):
        return Response(json.dumps(exc.body()), status_code=exc.status, media_type="application/json")

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception):  # a bug, not bad input: no traceback to the client
        logger.exception("unexpected error on %s", request.url.path)
        return Response(json.dumps({"error": f"internal error ({type(exc).__name__})",
                                    "fix": "report this with the request that caused it"}),
                        status_code=500, media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Process up and a model loaded."""
        return {"status": "ok", "model_version": holder.current.version}

    @app.get("/metadata")
    async def get_metadata() -> dict[str, Any]:
        """Features, schema, KPI contract with achieved values, threshold, version, training-data hash."""
        return metadata(holder.current)

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "array", "items": record}},
        "text/csv": {"schema": {"type": "string", "description": "CSV with a header row; columns: "
                                + ", ".join(record["properties"])}}}}})
    async def predict(request: Request) -> Response:
        """Predictions, probabilities where the model has them, the model version and the threshold in force."""
        served = holder.current  # this request's package to its end, whatever a reload swaps meanwhile
        body = await request.body()
        answer, timing = await run_in_threadpool(predict_body, served, body,
                                                 request.headers.get("content-type", ""), settings)
        return Response(answer, media_type="application/json", headers={"Server-Timing": timing})

    @app.post("/reload")
    async def reload(request: Request) -> dict[str, Any]:
        """Load another package (``{"target": path}``; none: the one given at start, re-read) and swap to it."""
        target = _reload_target(await request.body())
        try:
            old, new = await run_in_threadpool(holder.reload, target)
        except PlaybookError as exc:
            raise RequestError(422, exc.problem, exc.fix or "", serving=holder.current.version) from None
        return {"previous_version": old.version, "model_version": new.version, "package": str(new.package.path),
                "threshold": new.threshold}

    return app


def _reload_target(body: bytes) -> str | None:
    if not body.strip():
        return None
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("target", ""), str):
        raise RequestError(400, "the reload body is not a JSON object with a string 'target'",
                           'send {"target": "RUN_DIR/models/vN"} or an empty body (reload the start target)')
    return doc.get("target") or None


def _lifespan(holder: ModelHolder, settings: Settings):
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, _sighup_reload, holder))
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            if settings.log is not None:
                settings.log.close()

    return lifespan


def _sighup_reload(holder: ModelHolder) -> None:
    try:
        holder.reload()
    except PlaybookError as exc:  # the old model keeps serving
        logger.error("reload on SIGHUP failed, still serving v%s: %s", holder.current.version, exc)


def asgi_app(holder: ModelHolder, settings: Settings, token: str | None) -> ASGIApp:
    """The app behind the token gate (outermost: no body of an unknown client is read) and the body limit."""
    return TokenGate(BodyLimit(make_app(holder, settings), settings.max_bytes), token)


def serve(target: str, *, host: str = "127.0.0.1", port: int = 8000, token_file: str | None = None,
          log_dir: str | None = None, log_batch_rows: int = 10_000, log_interval_s: float = 60.0,
          log_max_files: int = 1_000, max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS,
          resolve: Callable[[str], Path] | None = None, tracking_uri: str | None = None) -> int:
    """``playbook serve``: check the bind, load the package, serve until interrupted.

    ``resolve`` turns the target (given here, to ``POST /reload``, re-read on SIGHUP) into a package folder
    (default ``resolve_target``, with ``tracking_uri`` for registered models).
    """
    resolve = resolve or functools.partial(resolve_target, tracking_uri=tracking_uri)
    token = read_token(token_file)
    check_bind(host, token)
    started = time.perf_counter()
    holder = ModelHolder(load_served(target, resolve), resolve)
    meta = holder.current.package.meta
    log = RequestLog(log_dir, batch_rows=log_batch_rows, interval_s=log_interval_s, max_files=log_max_files,
                     exclude=meta.get("sensitive_columns") or [], id_column=meta.get("id_column")) if log_dir else None
    app = asgi_app(holder, Settings(max_bytes, max_rows, log, Batcher()), token)
    print(f"Serving v{holder.current.version} of {holder.current.package.path} on http://{host}:{port} "
          f"(loaded in {time.perf_counter() - started:.2f} s; token {'required' if token else 'off'}; "
          f"SIGHUP or POST /reload swaps the model)", flush=True)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, workers=1, log_level="warning",
                                  access_log=False, lifespan="on")).run()
    return 0
