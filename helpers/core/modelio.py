"""Safe model files: skops with an explicit allow-list of types kept in code.

``pickle``/``joblib`` files run arbitrary code when loaded, so the playbook never
reads them. ``skops.io`` stores a model as data and refuses to build any type it
does not trust; ``TRUSTED_TYPES`` lists the few extra types that the registry's
deployable families and step 2's preprocessing need (found once with
``skops.io.get_untrusted_types`` on dumped models, then reviewed by hand). The
output of ``get_untrusted_types`` is never passed straight back to ``load``: that
would trust whatever the file asks for.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import skops.io as sio

from helpers.core.artifacts import atomic_path
from helpers.core.errors import PlaybookError

# Types skops does not trust by default but our models need, and why each is safe (scikit-learn's
# estimators themselves, FixedThresholdClassifier holding step 4's threshold included, skops trusts):
TRUSTED_TYPES: list[str] = [
    "numpy.dtype",  # SimpleImputer remembers the dtype it was fitted on
    "sklearn.tree._tree.Tree",  # the fitted trees of random forests and the depth-1 heuristic
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # HistGradientBoosting trees
    "sklearn.neighbors._kd_tree.KDTree",  # k-nearest neighbours' search index
    "sklearn.metrics._dist_metrics.EuclideanDistance64",  # the KD tree's distance
]

_PICKLE_MAGIC = (b"\x80",)  # protocol 2+ pickles (what pickle/joblib write) start with PROTO 0x80


def untrusted_types(model: Any) -> list[str]:
    """Types of ``model`` that skops would refuse and that are not in ``TRUSTED_TYPES``."""
    needed = sio.get_untrusted_types(data=sio.dumps(model))
    return sorted(set(needed) - set(TRUSTED_TYPES))


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` as a skops file (atomically); refuse a model we could not load back."""
    unexpected = untrusted_types(model)
    if unexpected:
        raise PlaybookError(f"The model needs types that are not on the trusted list: {', '.join(unexpected)}.",
                            "use a deployable family from helpers.core.families, or review these types and "
                            "add them to helpers.core.modelio.TRUSTED_TYPES.")
    with atomic_path(path) as tmp:
        sio.dump(model, tmp)


def _check_container(path: Path) -> None:
    """Refuse missing, pickle, truncated and corrupt files with a clear message."""
    if not path.is_file():
        raise PlaybookError(f"Model file {path} does not exist.",
                            "run step 4 (model development) to train and save the model.")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(_PICKLE_MAGIC):
        raise PlaybookError(f"{path} is a pickle/joblib file; loading it could run arbitrary code, so it is refused.",
                            "save the model with helpers.core.modelio.save_model (skops format) and load that file.")
    if not zipfile.is_zipfile(path):
        raise PlaybookError(f"{path} is not a skops model file (truncated or corrupt: no valid archive).",
                            "re-save the model with helpers.core.modelio.save_model, or re-run step 4.")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise PlaybookError(f"{path} is a damaged skops model file ({exc}).",
                            "re-save the model with helpers.core.modelio.save_model, or re-run step 4.") from None
    if bad is not None or not isinstance(schema, dict) or "__class__" not in schema:
        raise PlaybookError(f"{path} is a damaged skops model file (corrupt member {bad or 'schema.json'}).",
                            "re-save the model with helpers.core.modelio.save_model, or re-run step 4.")


def load_model(path: str | os.PathLike) -> Any:
    """Load a skops model file, trusting only ``TRUSTED_TYPES`` beyond skops' defaults."""
    path = Path(path)
    _check_container(path)
    try:
        needed = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises assorted errors on a malformed schema
        raise PlaybookError(f"{path} is a damaged skops model file ({type(exc).__name__}: {exc}).",
                            "re-save the model with helpers.core.modelio.save_model, or re-run step 4.") from None
    unexpected = sorted(set(needed) - set(TRUSTED_TYPES))
    if unexpected:
        raise PlaybookError(f"{path} asks to load types that are not trusted: {', '.join(unexpected)}.",
                            "only load models written by this playbook; if the types are safe, review them "
                            "and add them to helpers.core.modelio.TRUSTED_TYPES.")
    try:
        model = sio.load(path, trusted=TRUSTED_TYPES)
    except Exception as exc:  # a schema that lists trusted types but cannot be rebuilt
        raise PlaybookError(f"{path} could not be rebuilt as a model ({type(exc).__name__}: {exc}).",
                            "re-save the model with helpers.core.modelio.save_model, or re-run step 4.") from None
    if not hasattr(model, "predict"):
        raise PlaybookError(f"{path} holds a {type(model).__name__}, not a model with predict().",
                            "save the fitted pipeline of step 4 with helpers.core.modelio.save_model.")
    return model
