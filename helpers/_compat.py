"""Old import paths (``helpers.vision``, ``helpers.config``, ...) for notebooks copied by an
earlier ``playbook init``.

Each old module name gives a module holding the names of the module that now holds that code,
plus the names that moved down into the core. A name that no longer exists is an error that says
how to refresh the copies, never a bare ``ModuleNotFoundError`` or ``AttributeError``. One import
hook instead of a file per old name keeps the tree showing only the layers.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import sys

# the flat layout before the layers -> where that code lives now
OLD_PATHS = {
    "helpers.artifacts": "helpers.core.artifacts",
    "helpers.config": "helpers.core.config",
    "helpers.datasets": "helpers.core.datasets",
    "helpers.documents": "helpers.core.documents",
    "helpers.errors": "helpers.core.errors",
    "helpers.families": "helpers.core.families",
    "helpers.features": "helpers.core.features",
    "helpers.kpis": "helpers.core.kpis",
    "helpers.modelio": "helpers.core.modelio",
    "helpers.paths": "helpers.core.paths",
    "helpers.prepared": "helpers.core.prepared",
    "helpers.split": "helpers.core.split",
    "helpers.vision": "helpers.steps.vision",
    "helpers.data": "helpers.steps.foundation.data",
    "helpers.quality": "helpers.steps.foundation.quality",
    "helpers.stack": "helpers.steps.stack",
    "helpers.modeling": "helpers.steps.modeling",
    "helpers.deployment": "helpers.steps.operations.deployment",
    "helpers.monitoring": "helpers.steps.operations.monitoring",
    "helpers.readiness": "helpers.steps.operations.readiness",
    "helpers.panel": "helpers.ui.panel",
    "helpers.widgets": "helpers.ui.widgets",
    "helpers.engine": "helpers.run.engine",
    "helpers.runner": "helpers.run.runner",
    "helpers.resume": "helpers.run.resume",
    "helpers.report": "helpers.run.report",
    "helpers.cli": "helpers.run.cli",
}

# names that moved from a step module into the core when the steps became independent
MOVED = {
    **dict.fromkeys(("infer_problem_type", "frame_problem", "check_target", "identifier_columns"),
                    "helpers.core.problem"),
    **dict.fromkeys(("LEAK_THRESHOLD", "encode_frame", "encoded_column", "leakage_suspects"), "helpers.core.leakage"),
    **dict.fromkeys(("make_folds", "class_codes", "class_predictions", "rule_text", "heuristic_pipeline"),
                    "helpers.core.baselines"),
    **dict.fromkeys(("apply_cleaning", "to_number", "infinite_columns", "normalise_text", "is_number"),
                    "helpers.core.cleaning"),
    **dict.fromkeys(("load_schema", "make_schema"), "helpers.core.schema"),
    "batch_kpis": "helpers.core.kpis",
    "playbook_kernel": "helpers.run.engine",
}
REFRESH = "copy the current notebooks with `playbook init NEW_DIR` (this copy was made by an earlier version)"


def _moved_name(old: str, name: str):
    if name in MOVED:
        return getattr(importlib.import_module(MOVED[name]), name)
    raise AttributeError(f"{old}.{name} no longer exists in the playbook package: {REFRESH}.")


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module name to the module at its new path (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in OLD_PATHS:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module):
        target = importlib.import_module(OLD_PATHS[module.__name__])
        module.__dict__.update({k: v for k, v in vars(target).items() if not k.startswith("__")})
        module.__getattr__ = functools.partial(_moved_name, module.__name__)  # PEP 562: names not found above


def install_old_paths() -> None:
    """Put the alias finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
