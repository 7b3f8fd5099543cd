"""Where the notebooks and templates live, from a clone or from an installed wheel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

STEP_NOTEBOOKS = (
    "01_vision_and_goals",
    "02_data_foundation",
    "03_tools_and_stack",
    "04_model_development",
    "05_deployment_and_monitoring",
)
REPORT_NOTEBOOK = "report"


def _resource_dir(clone_name: str, package: str) -> Path:
    clone = Path(__file__).resolve().parent.parent / clone_name
    if clone.is_dir():
        return clone
    return Path(str(resources.files(package)))


def notebooks_dir() -> Path:
    """The folder holding the step notebooks and ``report.ipynb``."""
    return _resource_dir("playbook", "helpers.playbook")


def templates_dir() -> Path:
    """The folder holding ``project.yaml`` and the Jinja templates."""
    return _resource_dir("templates", "helpers.templates")


def data_dir() -> Path:
    """Data files shipped inside the package (rubrics, cloud service map)."""
    return Path(__file__).resolve().parent / "data"


def available_steps() -> list[str]:
    """Step notebooks that exist in this installation, in order."""
    folder = notebooks_dir()
    return [s for s in STEP_NOTEBOOKS if (folder / f"{s}.ipynb").exists()]


def step_number(step: str) -> int:
    return int(step.split("_", 1)[0])
