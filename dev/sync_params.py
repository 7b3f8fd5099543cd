"""Developer tool: rewrite every step notebook's ``parameters`` cell and ``templates/project.yaml``
from the parameter registry (after a parameter is added or changed in ``helpers.core.config``).

    python dev/sync_params.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from helpers.core import config, paths

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    for step in paths.STEP_NOTEBOOKS:
        path = ROOT / "playbook" / f"{step}.ipynb"
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        source = config.parameters_cell_source(step)
        if cell.source != source:
            cell.source = source
            nbformat.write(nb, path)
            print(f"updated {path.relative_to(ROOT)}")
    template = ROOT / "templates" / "project.yaml"
    text = config.project_yaml_text()
    if template.read_text(encoding="utf-8") != text:
        template.write_text(text, encoding="utf-8")
        print(f"updated {template.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
