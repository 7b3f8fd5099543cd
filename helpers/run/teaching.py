"""Teaching copies of the step notebooks, their exercises, the facilitator guide and the grader's reading.

One source, two copies (the exercise contract: ``helpers.core.exercises``):

- ``student_copy(nb)``: in cells tagged ``solution`` the lines between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION`` become one ``# your code here`` (at the marker's indentation); no output is kept;
- ``facilitator_copy(nb)``: the marker lines are dropped, the solution stays.

``exercises(nb)`` lists a notebook's exercises (question, solution and check cells), ``grade_notebook``
reads back what each check cell displayed in an executed notebook (its ``Feedback`` JSON), and
``grade_folder`` does it for a folder of executed notebooks (a run folder): what ``playbook check``
prints. Pure functions of nbformat notebooks; no kernel here.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml

from helpers.core import documents, exercises, paths
from helpers.core.errors import PlaybookError

GUIDE_TEMPLATE = "facilitator_guide.md.j2"
GUIDE_FILE = "FACILITATOR_GUIDE.md"
TEACHING_FILE = "teaching.yaml"
QUESTION = re.compile(r"^\*\*Exercise (?P<id>\d+\.\d+)\.\*\*\s*", re.MULTILINE)
OBJECTIVES_HEAD = "In this notebook you will"

PASSED, NOT_YET, NOT_RUN = "passed", "not yet", "not run"


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _where(name: str, index: int) -> str:
    return f"{name or 'the notebook'}, cell {index}"


# --- the two copies ---------------------------------------------------------------------------------


def _solution_blocks(lines: Sequence[str], name: str, index: int) -> list[tuple[int, int]]:
    """(begin, end) line numbers of each marker pair; a malformed pair is one clear error."""
    blocks, begin = [], None
    for n, line in enumerate(lines):
        marker = line.strip()
        if marker == exercises.BEGIN_SOLUTION:
            if begin is not None:
                raise PlaybookError(f"{_where(name, index)}: {exercises.BEGIN_SOLUTION} on line {n + 1} inside the "
                                    f"solution opened on line {begin + 1} (solutions do not nest).",
                                    f"close the first with {exercises.END_SOLUTION} before opening another.")
            begin = n
        elif marker == exercises.END_SOLUTION:
            if begin is None:
                raise PlaybookError(f"{_where(name, index)}: {exercises.END_SOLUTION} on line {n + 1} without a "
                                    f"{exercises.BEGIN_SOLUTION} before it.", "add the opening marker or remove this one.")
            blocks.append((begin, n))
            begin = None
    if begin is not None:
        raise PlaybookError(f"{_where(name, index)}: {exercises.BEGIN_SOLUTION} on line {begin + 1} is never closed.",
                            f"end the solution with a {exercises.END_SOLUTION} line.")
    return blocks


def _solution_cells(nb, name: str) -> Iterable[tuple[int, Any, list[str], list[tuple[int, int]]]]:
    """Each code cell with solution markers: its index, the cell, its lines and marker pairs (checked)."""
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        lines = _source(cell).split("\n")
        blocks = _solution_blocks(lines, name, index)
        tagged = exercises.SOLUTION_TAG in _tags(cell)
        if blocks and not tagged:
            raise PlaybookError(f"{_where(name, index)} has solution markers but is not tagged "
                                f"{exercises.SOLUTION_TAG!r}: its solution would reach the student copy.",
                                f"add the tag {exercises.SOLUTION_TAG!r} to the cell.")
        if tagged and not blocks:
            raise PlaybookError(f"{_where(name, index)} is tagged {exercises.SOLUTION_TAG!r} but has no "
                                f"{exercises.BEGIN_SOLUTION} / {exercises.END_SOLUTION} lines: the student copy "
                                "would show the whole cell.", "mark the solution lines, or remove the tag.")
        if tagged:
            yield index, cell, lines, blocks


def student_copy(nb, name: str = ""):
    """The learner's copy: each solution replaced by ``# your code here``, no output anywhere."""
    out = copy.deepcopy(nb)
    for _, cell, lines, blocks in _solution_cells(out, name):
        kept, last = [], 0
        for begin, end in blocks:
            indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
            kept += lines[last:begin] + [indent + exercises.SCAFFOLD]
            last = end + 1
        cell.source = "\n".join(kept + lines[last:])
    for cell in out.cells:
        if cell.get("cell_type") == "code":
            cell.outputs, cell.execution_count = [], None
    return out


def facilitator_copy(nb, name: str = ""):
    """The facilitator's copy: the source with the marker lines dropped (the solutions stay)."""
    out = copy.deepcopy(nb)
    for _, cell, lines, blocks in _solution_cells(out, name):
        markers = {n for pair in blocks for n in pair}
        cell.source = "\n".join(line for n, line in enumerate(lines) if n not in markers)
    return out


def solution_lines(nb, name: str = "") -> list[str]:
    """Every non-blank line between solution markers (what a student copy must not contain)."""
    found = []
    for _, _, lines, blocks in _solution_cells(nb, name):
        found += [line for begin, end in blocks for line in lines[begin + 1:end] if line.strip()]
    return found


def for_grading(nb):
    """The learner's notebook as ``playbook check`` runs it: an exception in a solution or check cell
    is shown in that cell and the run goes on (nbclient's ``raises-exception`` tag)."""
    # local: the engine imports papermill (1.4 s), which init needs none of
    from helpers.run.engine import RAISES_TAG

    out = copy.deepcopy(nb)
    for cell in out.cells:
        tags = _tags(cell)
        if (exercises.SOLUTION_TAG in tags or exercises.CHECK_TAG in tags) and RAISES_TAG not in tags:
            cell.setdefault("metadata", {})["tags"] = tags + [RAISES_TAG]
    return out


# --- exercises --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook: its id (``"1.2"``), question text and the indices of its three cells."""

    id: str
    notebook: str
    question: str
    question_cell: int
    solution_cell: int
    check_cell: int


def exercises_of(nb, name: str = "") -> list[Exercise]:
    """The notebook's exercises in order: each check cell with its solution cell and question cell above."""
    found: list[Exercise] = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code" or exercises.CHECK_TAG not in _tags(cell):
            continue
        ex_id = str(cell.get("metadata", {}).get("exercise") or "")
        if not ex_id:
            raise PlaybookError(f"{_where(name, index)} is tagged {exercises.CHECK_TAG!r} but its metadata names no "
                                "exercise.", 'add "exercise": "<step>.<k>" to the cell metadata.')
        if any(e.id == ex_id for e in found):
            raise PlaybookError(f"{_where(name, index)}: exercise {ex_id} is checked twice.",
                                "give each check cell its own exercise id.")
        start = found[-1].check_cell + 1 if found else 0
        solution = next((i for i in range(index - 1, start - 1, -1) if nb.cells[i].get("cell_type") == "code"
                         and exercises.SOLUTION_TAG in _tags(nb.cells[i])), None)
        if solution is None:
            raise PlaybookError(f"{_where(name, index)}: the check of exercise {ex_id} has no cell tagged "
                                f"{exercises.SOLUTION_TAG!r} above it.", "put the learner's answer cell above the check.")
        question = next((i for i in range(solution - 1, start - 1, -1) if nb.cells[i].get("cell_type") == "markdown"
                         and _question_text(_source(nb.cells[i]), ex_id) is not None), None)
        if question is None:
            raise PlaybookError(f"{_where(name, index)}: exercise {ex_id} has no question above its solution cell.",
                                f"start its Markdown cell with **Exercise {ex_id}.**")
        found.append(Exercise(ex_id, name, _question_text(_source(nb.cells[question]), ex_id), question, solution, index))
    return found


def _question_text(markdown: str, ex_id: str) -> str | None:
    """The question of exercise ``ex_id`` in a Markdown cell (from its ``**Exercise id.**`` to the next one)."""
    marks = list(QUESTION.finditer(markdown))
    for n, mark in enumerate(marks):
        if mark.group("id") == ex_id:
            end = marks[n + 1].start() if n + 1 < len(marks) else len(markdown)
            return markdown[mark.end():end].strip()
    return None


def read_notebook(path: str | os.PathLike):
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # not JSON, not a notebook: name the file
        raise PlaybookError(f"{path} is not a readable notebook ({type(exc).__name__}: {exc}).",
                            "give a folder of .ipynb files made by `playbook init`.") from None


def write_notebook(nb, path: str | os.PathLike) -> Path:
    nbformat.write(nb, str(path))
    return Path(path)


def step_notebooks(folder: str | os.PathLike) -> dict[str, Path]:
    """The step notebooks in a folder, in step order (the report and ``*.attempt-N`` copies are not steps)."""
    folder = Path(folder)
    return {s: folder / f"{s}.ipynb" for s in paths.STEP_NOTEBOOKS if (folder / f"{s}.ipynb").is_file()}


# --- the facilitator guide --------------------------------------------------------------------------


def objectives(nb) -> list[str]:
    """The learning objectives, read from the notebook's "In this notebook you will" list."""
    for cell in nb.cells:
        text = _source(cell)
        if cell.get("cell_type") != "markdown" or OBJECTIVES_HEAD not in text:
            continue
        items, current = [], None
        for line in text.split(OBJECTIVES_HEAD, 1)[1].splitlines()[1:]:
            if line.lstrip().startswith(("- ", "* ")):
                current = line.lstrip()[2:].strip()
                items.append(current)
            elif current is not None and line.startswith("  ") and line.strip():
                items[-1] += " " + line.strip()  # a continued bullet
            elif items and not line.strip():
                break
        return items
    return []


def title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.get("cell_type") == "markdown":
            for line in _source(cell).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def load_teaching_notes(path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """``helpers/reference/teaching.yaml``: per notebook, minutes, discussion questions and common mistakes."""
    path = Path(path) if path else paths.data_dir() / TEACHING_FILE
    notes = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for step, entry in notes.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("minutes"), int) or entry["minutes"] <= 0:
            raise PlaybookError(f"{path}: {step} needs a positive whole number of minutes.", "set minutes: <n>.")
        for key in ("discussion", "mistakes"):
            if not isinstance(entry.get(key), list) or not entry[key]:
                raise PlaybookError(f"{path}: {step} needs a non-empty list {key!r}.", f"add {key}: [...] to it.")
    return notes


def guide_context(notebooks: Mapping[str, Any], notes: Mapping[str, Mapping[str, Any]],
                  faults: Sequence[Mapping[str, str]] = ()) -> dict[str, Any]:
    """What the guide template renders: per notebook its slot in the session plan, objectives and exercises."""
    rows, start = [], 0
    for step, nb in notebooks.items():
        if step not in notes:
            raise PlaybookError(f"{TEACHING_FILE} has no entry for {step}.",
                                f"add {step}: with minutes, discussion and mistakes.")
        entry = notes[step]
        rows.append({"step": step, "title": title(nb, step), "start": start, "minutes": entry["minutes"],
                     "objectives": objectives(nb), "exercises": exercises_of(nb, step),
                     "discussion": entry["discussion"], "mistakes": entry["mistakes"]})
        start += entry["minutes"]
    return {"notebooks": rows, "total_minutes": start, "faults": [dict(f) for f in faults]}


def facilitator_guide(notebooks: Mapping[str, Any], faults: Sequence[Mapping[str, str]] = (),
                      notes: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """``FACILITATOR_GUIDE.md``: session plan, objectives, exercises, discussion, mistakes, injected faults.

    ``faults``: one dict per injectable fault with ``name``, ``what``, ``finds`` and ``teaches``.
    """
    context = guide_context(notebooks, notes if notes is not None else load_teaching_notes(), faults)
    # not HTML-escaped: the text is the playbook's own (its notebooks and teaching.yaml), and escaping
    # would show `"robust"` as `&#34;robust&#34;` inside the questions' code spans
    return documents.environment(markup=False).get_template(GUIDE_TEMPLATE).render(**context)


# --- grading ----------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one exercise's check cell showed in an executed notebook."""

    id: str
    notebook: str
    status: str  # passed | not yet | not run
    answered: bool = False
    message: str = ""
    hint: str = ""
    error: str = ""
    giveaways: list[str] = field(default_factory=list, repr=False)  # only when PLAYBOOK_EXERCISE_KEY=1 was set

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "notebook": self.notebook, "passed": self.passed, "answered": self.answered,
                "message": self.message, "hint": self.hint, "error": self.error or None}

    @property
    def text(self) -> str:
        status = "not yet (not answered)" if self.status == NOT_YET and not self.answered else self.status
        head = f"Exercise {self.id} ({self.notebook}): {status}."
        body = " ".join(filter(None, [self.message, f"Hint: {self.hint}" if self.hint else "",
                                      f"Error: {self.error}" if self.error else ""]))
        return f"{head} {body}".strip()


def _error_of(cell) -> str:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename')}: {out.get('evalue')}"
    return ""


def _feedback_of(cell) -> dict[str, Any] | None:
    for out in cell.get("outputs", []):
        data = out.get("data", {}) if out.get("output_type") in ("display_data", "execute_result") else {}
        if exercises.MIME_TYPE in data:
            return dict(data[exercises.MIME_TYPE])
    return None


def grade_notebook(nb, name: str, expected: Sequence[Exercise] | None = None) -> list[Result]:
    """Per exercise of an executed notebook: passed, not yet (with the feedback) or not run (with why)."""
    found = exercises_of(nb, name)
    ids = {e.id for e in found}
    results = []
    for ex in found:
        feedback = _feedback_of(nb.cells[ex.check_cell])
        if feedback is not None:
            results.append(Result(ex.id, name, PASSED if feedback.get("passed") else NOT_YET,
                                  bool(feedback.get("answered")), str(feedback.get("message", "")),
                                  str(feedback.get("hint", "")), _error_of(nb.cells[ex.solution_cell]),
                                  list(feedback.get("giveaways", []))))
            continue
        error = _error_of(nb.cells[ex.solution_cell]) or _error_of(nb.cells[ex.check_cell]) or _stopped_before(nb, ex)
        results.append(Result(ex.id, name, NOT_RUN, error=error or "its check cell did not run"))
    # exercises of the learner's notebook the executed one lacks (its step never ran)
    results += [Result(e.id, name, NOT_RUN, error="the notebook was not executed") for e in expected or ()
                if e.id not in ids]
    return results


def _stopped_before(nb, ex: Exercise) -> str:
    for index, cell in enumerate(nb.cells[:ex.check_cell]):
        error = _error_of(cell) if cell.get("cell_type") == "code" else ""
        if error:
            return f"the notebook stopped at cell {index}: {error}"
    return ""


def grade_folder(folder: str | os.PathLike, expected: Mapping[str, Sequence[Exercise]] | None = None) -> list[Result]:
    """Every exercise of the executed step notebooks in ``folder`` (e.g. a run folder), in step order.

    ``expected``: the learner's exercises per notebook, so the exercises of a notebook that never
    ran are reported as not run.
    """
    expected = dict(expected or {})
    found = step_notebooks(folder)
    results = []
    for name in [s for s in paths.STEP_NOTEBOOKS if s in found or s in expected]:
        if name in found:
            results += grade_notebook(read_notebook(found[name]), name, expected.get(name))
        else:
            results += [Result(e.id, name, NOT_RUN, error="the notebook was not executed") for e in expected[name]]
    return results


def results_text(results: Sequence[Result]) -> str:
    passed = sum(r.passed for r in results)
    lines = [r.text for r in results]
    return "\n".join(lines + ["", f"{passed} of {len(results)} exercise(s) passed."])
