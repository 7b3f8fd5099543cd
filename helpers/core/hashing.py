"""Content hashes: of files (the model package, a resumed run's inputs) and of tables (data provenance, model metadata)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd


def file_sha256(path: str | os.PathLike) -> str | None:
    """SHA-256 hex digest of a file's bytes, or None when there is no such file."""
    # None rather than an error: a resumed run records "absent" as an input state (e.g. no snapshot yet)
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_sha256(frame: pd.DataFrame) -> str:
    """SHA-256 hex digest of a table's column names and values, in row order; the row index is left out."""
    # The index is a pandas artefact (a split keeps the raw row labels, a reset or a file round-trip renumbers
    # them): the same rows in the same order are the same data.
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
