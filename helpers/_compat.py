"""Old import paths (``helpers.vision``, ``helpers.config``, ...) for notebooks copied by an
earlier ``playbook init``: each old name is an alias of the module that now holds that code.

One import hook instead of a file per old name keeps the tree showing only the layers.
"""

from __future__ import annotations

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


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module name to the module at its new path (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in OLD_PATHS:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module):
        # the import system returns whatever sys.modules holds under the name after this call
        target = importlib.import_module(OLD_PATHS[module.__name__])
        sys.modules[module.__name__] = target
        parent, _, child = module.__name__.rpartition(".")
        setattr(sys.modules[parent], child, target)


def install_old_paths() -> None:
    """Put the alias finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
