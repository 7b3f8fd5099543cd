"""ML Project Playbook: the tested package behind the step notebooks.

Four layers, each a subpackage (the rule is an import-linter contract in ``pyproject.toml``):

- ``helpers.core``: the contracts every step shares (parameter registry, run folder, datasets,
  the one split, KPI contract, model families, features and the one input conversion, model
  files, documents, errors). Imports nothing above it.
- ``helpers.steps``: one module or small package per lifecycle step (``vision``, ``foundation``,
  ``stack``, ``modeling``, ``operations``). Each imports the core, never another step.
- ``helpers.ui``: the parameter panel, explorers and figure display. Imports the core.
- ``helpers.run``: engine, runner, resume, report and the ``playbook`` command. May import all.

See ``docs/architecture.md``. Importing the package does no work.
"""

from helpers._compat import install_old_paths
from helpers.core.errors import PlaybookError

install_old_paths()

__all__ = ["PlaybookError"]
__version__ = "0.1.0"
