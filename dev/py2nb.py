"""Developer tool: build a stripped notebook from a percent-format draft.

    python dev/py2nb.py draft.py playbook/NN_name.ipynb

Cells start with ``# %%`` (code), ``# %% [markdown]`` (markdown, lines prefixed by
``# ``) or ``# %% tags=["parameters"]`` (tagged code). The parameters cell of a step
notebook is replaced by ``helpers.core.config.parameters_cell_source`` so it always
matches the registry. Drafts are not committed: the notebook is the source.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat

HEADER = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def convert(draft: Path, step: str | None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    cells: list[tuple[bool, list[str], list[str]]] = []
    for line in draft.read_text().splitlines():
        m = HEADER.match(line)
        if m:
            cells.append((bool(m["md"]), json.loads(m["tags"]) if m["tags"] else [], []))
        elif cells:
            cells[-1][2].append(line)
    for is_md, tags, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if is_md:
            text = "\n".join(re.sub(r"^# ?", "", ln) for ln in lines)
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            source = "\n".join(lines)
            if "parameters" in tags and step:
                from helpers.core.config import parameters_cell_source
                source = parameters_cell_source(step)
            cell = nbformat.v4.new_code_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


def main() -> None:
    draft, out = Path(sys.argv[1]), Path(sys.argv[2])
    step = out.stem if out.stem[:2].isdigit() else None
    nb = convert(draft, step)
    nbformat.validator.normalize(nb)
    nbformat.write(nb, out)
    print(f"wrote {out} ({len(nb.cells)} cells)")


if __name__ == "__main__":
    main()
