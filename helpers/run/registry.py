"""The one registry of lifecycle steps: the runner and the report iterate it.

Each step module exposes the step protocol: ``STEP`` (its id), ``summary(result) -> dict``
(what ``summary.json`` holds, from the step's result dataclass), ``headline(run) -> dict``
(first-screen facts for the report) and ``report_section(run) -> Section`` (its report section:
``helpers.core.sections``, tables through ``helpers.core.tables``). A step
that cannot be imported or lacks part of the protocol is an error naming the step, never a
silent gap in the report.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from helpers.core.errors import PlaybookError
from helpers.core.paths import STEP_NOTEBOOKS

PROTOCOL = ("STEP", "summary", "headline", "report_section")


@dataclass(frozen=True)
class Step:
    """One lifecycle step: its id (the notebook's name), report title and module."""

    id: str
    title: str
    module: str


STEPS = (
    Step(STEP_NOTEBOOKS[0], "1. Vision and measurable goals", "helpers.steps.vision"),
    Step(STEP_NOTEBOOKS[1], "2. Data foundation", "helpers.steps.foundation"),
    Step(STEP_NOTEBOOKS[2], "3. Tools and stack", "helpers.steps.stack"),
    Step(STEP_NOTEBOOKS[3], "4. Model development", "helpers.steps.modeling"),
    Step(STEP_NOTEBOOKS[4], "5. Deployment and monitoring", "helpers.steps.operations"),
)
TITLES = {s.id: s.title for s in STEPS}


def get(step_id: str) -> Step:
    """The registered step with this id."""
    for step in STEPS:
        if step.id == step_id:
            return step
    raise PlaybookError(f"Unknown step {step_id!r}.", f"use one of: {', '.join(s.id for s in STEPS)}.")


def load(step_id: str) -> ModuleType:
    """The step's module, checked against the protocol (an error naming the step otherwise)."""
    step = get(step_id)
    try:
        module = importlib.import_module(step.module)
    except Exception as exc:  # any import failure: the step would otherwise vanish from the report
        raise PlaybookError(f"Step {step.id}: its module {step.module} cannot be imported "
                            f"({type(exc).__name__}: {exc}).",
                            "fix that module (or reinstall the package) and run `playbook report` again.") from exc
    missing = [name for name in PROTOCOL if not hasattr(module, name)]
    if missing:
        raise PlaybookError(f"Step {step.id}: module {step.module} lacks {', '.join(missing)} of the step protocol.",
                            f"define {', '.join(missing)} in {step.module}.")
    if module.STEP != step.id:
        raise PlaybookError(f"Step {step.id}: module {step.module} says STEP = {module.STEP!r}.",
                            f"set STEP = {step.id!r} there.")
    return module


def load_all() -> dict[str, ModuleType]:
    """Every step's module, in order (the first broken one raises)."""
    return {step.id: load(step.id) for step in STEPS}
