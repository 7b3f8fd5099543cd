"""Where the notebooks and templates live, from a clone or from an installed wheel."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

STEP_NOTEBOOKS = (
    "01_vision_and_goals",
    "02_data_foundation",
    "03_tools_and_stack",
    "04_model_development",
    "05_deployment_and_monitoring",
)
REPORT_NOTEBOOK = "report"


def _resource_dir(name: str) -> Path:
    """``<clone>/<name>`` in a checkout; ``helpers/<name>`` in an installed wheel (see pyproject)."""
    here = Path(__file__).resolve().parents[1]  # the helpers package
    clone = here.parent / name
    return clone if (here.parent / "pyproject.toml").exists() and clone.is_dir() else here / name


def notebooks_dir() -> Path:
    """The folder holding the step notebooks and ``report.ipynb``."""
    return _resource_dir("playbook")


def templates_dir() -> Path:
    """The folder holding ``project.yaml`` and the Jinja templates."""
    return _resource_dir("templates")


def data_dir() -> Path:
    """Data files shipped inside the package (rubrics, cloud service map)."""
    return Path(__file__).resolve().parents[1] / "reference"


def available_steps() -> list[str]:
    """Step notebooks that exist in this installation, in order."""
    folder = notebooks_dir()
    return [s for s in STEP_NOTEBOOKS if (folder / f"{s}.ipynb").exists()]


def step_number(step: str) -> int:
    return int(step.split("_", 1)[0])


def new_run_name(project: str) -> str:
    """A unique, sortable run name: ``<project>-<UTC timestamp>-<suffix>``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in project).strip("-") or "run"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{safe[:40]}-{stamp}-{secrets.token_hex(2)}"


def run_folder(out: str | Path | None, project: str) -> Path:
    """The folder a run writes to: ``out`` as given, else ``runs/<new_run_name(project)>`` (not created here)."""
    return Path(out) if out else Path("runs") / new_run_name(project)
