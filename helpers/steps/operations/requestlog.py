"""The request log of ``playbook serve --log-dir``: what the service saw, as Parquet batches step 5 reads back.

One file per batch (``requests-<UTC time>-<n>.parquet``), written atomically (a hidden temporary
file, then ``os.replace``: a crash loses at most the rows still buffered), mode 0600, the oldest
files removed beyond a retention cap. A row holds the model's input as served (the features after
the one conversion, ``features.as_model_input``; sensitive columns are never features, so they are
never logged), the identifier column when the request had one, and the ``served_*`` columns: time,
request id, model version and the predictions. ``read_log`` turns a folder back into production
rows for ``monitor_data``, joining labels that arrived later (``labels.csv``/``labels.parquet`` in
the folder) by the identifier column.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from helpers.core.datasets import load_source
from helpers.core.errors import PlaybookError

PREFIX = "requests-"
SERVED = "served_"  # the log's own columns; the rest are the model's inputs and the identifier
TIME_COLUMN = "served_at"
LABEL_FILES = ("labels.parquet", "labels.csv")
logger = logging.getLogger(__name__)


class RequestLog:
    """Buffers served rows and writes them as Parquet files of ``batch_rows`` rows or every ``interval_s``."""

    def __init__(self, folder: str | os.PathLike, *, batch_rows: int = 10_000, interval_s: float = 60.0,
                 max_files: int = 1_000, exclude: Sequence[str] = (), id_column: str | None = None):
        self.folder, self.batch_rows, self.interval_s, self.max_files = Path(folder), batch_rows, interval_s, max_files
        self.exclude, self.id_column = set(exclude), id_column
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._buffer: list[pd.DataFrame] = []
        self._rows, self._seq, self._last_flush = 0, 0, time.monotonic()
        self._lock, self._write_lock = threading.Lock(), threading.Lock()
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, name="request-log", daemon=True)
        self._timer.start()

    def append(self, inputs: pd.DataFrame, predictions: pd.DataFrame, *, request_id: str, model_version) -> None:
        """Buffer one request's rows (``inputs``: the model input plus identifier; ``predictions``: its answer)."""
        rows = inputs[[c for c in inputs.columns if c not in self.exclude]].reset_index(drop=True)
        if self.id_column in rows.columns:  # one type in every file, whatever JSON sent (numbers or text)
            ids = rows[self.id_column]
            rows[self.id_column] = ids.astype(str).where(ids.notna(), None)
        rows[TIME_COLUMN] = pd.Timestamp.now(tz="UTC")
        rows[f"{SERVED}request"] = request_id
        rows[f"{SERVED}model_version"] = str(model_version)
        for c in predictions.columns:
            if c != "row" and c not in inputs.columns:
                rows[f"{SERVED}{c}"] = predictions[c].to_numpy()
        with self._lock:
            self._buffer.append(rows)
            self._rows += len(rows)
            full = self._rows >= self.batch_rows
        if full:
            self.flush()

    def flush(self) -> Path | None:
        """Write the buffered rows as one file now (None when nothing is buffered)."""
        with self._write_lock:
            with self._lock:
                frames, self._buffer, self._rows = self._buffer, [], 0
                self._last_flush = time.monotonic()
                self._seq += 1
                seq = self._seq
            if not frames:
                return None
            try:
                path = self._write(pd.concat(frames, ignore_index=True), seq)
                self._prune()
            except (OSError, ValueError, TypeError) as exc:  # a full disk must not fail the predictions served
                logger.error("request log: %d rows could not be written to %s: %s", sum(map(len, frames)),
                             self.folder, exc)
                return None
            return path

    def close(self) -> None:
        self._stop.set()
        self._timer.join(timeout=5)
        self.flush()

    def _tick(self) -> None:
        while not self._stop.wait(min(self.interval_s, 1.0)):
            if time.monotonic() - self._last_flush >= self.interval_s:
                self.flush()

    def _write(self, frame: pd.DataFrame, seq: int) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        final = self.folder / f"{PREFIX}{stamp}-{seq:06d}.parquet"
        tmp = self.folder / f".{final.name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # 0600 from the start, not chmod after
        try:
            with os.fdopen(fd, "wb") as fh:
                frame.to_parquet(fh, index=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def _prune(self) -> None:
        files = log_files(self.folder)
        for old in files[: max(len(files) - self.max_files, 0)]:
            old.unlink(missing_ok=True)


def log_files(folder: str | os.PathLike) -> list[Path]:
    """The log's Parquet files, oldest first (their names sort by time)."""
    return sorted(Path(folder).glob(f"{PREFIX}*.parquet"))


def is_log(source: str | os.PathLike) -> bool:
    """Whether ``monitor_data`` names a request-log folder (rather than a file or a data set)."""
    return Path(os.path.expanduser(str(source))).is_dir()


def read_log(folder: str | os.PathLike, *, id_column: str | None, target: str | None) -> pd.DataFrame:
    """The served rows of a log folder in time order, as production data: model inputs, identifier, ``served_at``
    and, where ``labels.*`` in the folder has them, the target joined by ``id_column``."""
    folder = Path(os.path.expanduser(str(folder)))
    files = log_files(folder)
    if not files:
        raise PlaybookError(f"monitor_data {str(folder)!r} is a folder without request-log files ({PREFIX}*.parquet).",
                            "point monitor_data at the --log-dir of `playbook serve`, or at a CSV/Parquet file.")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    frame = frame.sort_values(TIME_COLUMN, kind="stable", ignore_index=True)
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith(SERVED) and c != TIME_COLUMN])
    labels = next((folder / name for name in LABEL_FILES if (folder / name).exists()), None)
    return frame if labels is None or not target else join_labels(frame, load_source(str(labels)), id_column, target)


def join_labels(frame: pd.DataFrame, labels: pd.DataFrame, id_column: str | None, target: str) -> pd.DataFrame:
    """``frame`` with the ``target`` of ``labels`` joined by ``id_column`` (rows without a label keep a gap)."""
    where = "the labels file of the request log"
    if not id_column or id_column not in frame.columns:
        raise PlaybookError(f"The request log has no identifier column {id_column!r} to join labels on.",
                            "send the identifier column with each request, or remove the labels file.")
    missing = [c for c in (id_column, target) if c not in labels.columns]
    if missing:
        raise PlaybookError(f"{where} lacks the column(s) {', '.join(missing)}.",
                            f"give one row per request row with {id_column!r} and {target!r}.")
    labels = labels[[id_column, target]].drop_duplicates(id_column, keep="last")
    keys = labels[id_column].astype(str)  # identifiers are logged as text; a CSV may have read them as numbers
    joined = frame.drop(columns=[target], errors="ignore")
    joined[target] = joined[id_column].astype(str).map(pd.Series(labels[target].to_numpy(), index=keys.to_numpy()))
    return joined
