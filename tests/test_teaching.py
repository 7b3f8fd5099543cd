"""Teaching copies, the facilitator guide and the grader (`playbook init --student/--facilitator`, `playbook check`).

Unit tests work on the source notebooks and small hand-built ones. The end-to-end tests share ONE
`playbook check` of a student copy and ONE of a facilitator copy (fast settings of conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import fast_args

from helpers.core import exercises, paths
from helpers.core.errors import PlaybookError
from helpers.run import cli, engine, teaching

SOURCES = {nb.stem: nb for nb in sorted(paths.notebooks_dir().glob("*.ipynb"))}
STEPS = [s for s in paths.STEP_NOTEBOOKS if s in SOURCES]
MARKERS = (exercises.BEGIN_SOLUTION, exercises.END_SOLUTION)


def source(step: str):
    return teaching.read_notebook(SOURCES[step])


def code_cell(text: str, tags=(), **metadata):
    cell = nbformat.v4.new_code_cell(text)
    if tags:
        cell.metadata["tags"] = list(tags)
    cell.metadata.update(metadata)
    return cell


def exercise_notebook(solution: str = "answer = ...\n### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION"):
    """One exercise on the contract: question, solution cell, check cell (a printout before them)."""
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 9. A step\n\nIn this notebook you will:\n\n- learn one thing;\n- and"
                                      "\n  another, on two lines.\n\n## Next"),
        code_cell("print('the answer is', 42)"),
        nbformat.v4.new_markdown_cell("**Exercise 9.1.** What is the answer?"),
        code_cell(solution, ["solution"]),
        code_cell("checker(answer)", ["check"], exercise="9.1")])


# --- the two copies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("step", list(SOURCES))
def test_student_copy_holds_no_solution_line_and_no_output(step):
    nb = source(step)
    student = teaching.student_copy(nb, step)
    outside, inside = set(), False  # lines written outside the markers, by position
    for cell in nb.cells:
        for line in cell.source.split("\n"):
            if line.strip() in MARKERS:
                inside = line.strip() == exercises.BEGIN_SOLUTION
            elif not inside:
                outside.add(line.strip())
    copied = [line.strip() for cell in student.cells for line in cell.source.split("\n")]
    for line in teaching.solution_lines(nb):
        if line.strip() not in outside:  # a line also written outside the markers may stay there
            assert line.strip() not in copied, f"{step}: the student copy still holds {line!r}"
    assert not any(m in "\n".join(copied) for m in MARKERS)
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")
    solutions = [c for c in student.cells if "solution" in c.metadata.get("tags", [])]
    assert all(exercises.SCAFFOLD in c.source for c in solutions)


def test_student_copy_keeps_indentation_and_every_line_outside_the_markers():
    nb = exercise_notebook("answer = ...\nfor i in range(3):\n    ### BEGIN SOLUTION\n    answer = i\n"
                           "    ### END SOLUTION\nprint(answer)\n### BEGIN SOLUTION\nanswer += 1\n### END SOLUTION")
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="the answer is 42\n")]
    student = teaching.student_copy(nb, "nine")
    assert student.cells[3].source == ("answer = ...\nfor i in range(3):\n    # your code here\nprint(answer)\n"
                                       "# your code here")
    assert student.cells[1].outputs == [] and nb.cells[1].outputs  # the source is not changed
    assert teaching.facilitator_copy(nb).cells[3].source == "answer = ...\nfor i in range(3):\n    answer = i\n" \
                                                            "print(answer)\nanswer += 1"


@pytest.mark.parametrize("step", list(SOURCES))
def test_facilitator_copy_is_the_source_without_the_marker_lines(step):
    nb = source(step)
    copy = teaching.facilitator_copy(nb, step)
    assert len(copy.cells) == len(nb.cells)
    for ours, theirs in zip(copy.cells, nb.cells, strict=True):
        kept = "\n".join(line for line in theirs.source.split("\n") if line.strip() not in MARKERS)
        assert ours.source == kept
        assert {k: v for k, v in ours.items() if k != "source"} == {k: v for k, v in theirs.items() if k != "source"}


@pytest.mark.parametrize(("solution", "says"), [
    ("### BEGIN SOLUTION\nanswer = 42", "never closed"),
    ("answer = 42\n### END SOLUTION", "without a ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION\n### END SOLUTION", "do not nest"),
    ("answer = 42", "has no ### BEGIN SOLUTION"),
])
def test_malformed_markers_are_one_clear_error_naming_notebook_and_cell(solution, says):
    nb = exercise_notebook(solution)
    for make in (teaching.student_copy, teaching.facilitator_copy):
        with pytest.raises(PlaybookError, match=says) as err:
            make(nb, "09_nine")
        assert "09_nine, cell 3" in str(err.value) and "Fix:" in str(err.value)


def test_markers_in_a_cell_not_tagged_solution_are_refused():
    nb = exercise_notebook()
    nb.cells[3].metadata["tags"] = []
    with pytest.raises(PlaybookError, match="cell 3 has solution markers but is not tagged 'solution'"):
        teaching.student_copy(nb, "09_nine")


# --- exercises and the facilitator guide ------------------------------------------------------------


def test_exercises_of_a_notebook_name_their_three_cells():
    [ex] = teaching.exercises_of(exercise_notebook(), "09_nine")
    assert (ex.id, ex.notebook, ex.question, ex.question_cell, ex.solution_cell, ex.check_cell) == \
        ("9.1", "09_nine", "What is the answer?", 2, 3, 4)


@pytest.mark.parametrize(("change", "says"), [
    (lambda nb: nb.cells[4].metadata.pop("exercise"), "names no exercise"),
    (lambda nb: nb.cells.__setitem__(2, nbformat.v4.new_markdown_cell("What is the answer?")), "has no question"),
    (lambda nb: nb.cells[3].metadata.update(tags=[]), "no cell tagged 'solution' above it"),
    (lambda nb: nb.cells.append(code_cell("checker(answer)", ["check"], exercise="9.1")), "checked twice"),
])
def test_a_broken_exercise_is_named(change, says):
    nb = exercise_notebook()
    change(nb)
    with pytest.raises(PlaybookError, match=says):
        teaching.exercises_of(nb, "09_nine")


@pytest.mark.parametrize("step", STEPS)
def test_every_exercise_of_the_sources_is_on_the_contract(step):
    nb = source(step)
    for ex in teaching.exercises_of(nb, step):
        assert ex.id.startswith(f"{paths.step_number(step)}.") and ex.question
        check = nb.cells[ex.check_cell].source.strip().splitlines()[-1]
        assert "check_exercise_" in check and not check.startswith("_"), f"{step} {ex.id}: {check}"


def test_the_guide_reads_objectives_and_exercises_from_the_notebooks():
    notebooks = {s: teaching.facilitator_copy(source(s), s) for s in STEPS}
    guide = teaching.facilitator_guide(notebooks)
    notes = teaching.load_teaching_notes()
    for step, nb in notebooks.items():
        assert teaching.objectives(nb), f"{step} states no learning objectives"
        for text in teaching.objectives(nb) + notes[step]["discussion"] + notes[step]["mistakes"]:
            assert f"- {text}" in guide
        for ex in teaching.exercises_of(nb, step):
            assert f"- **{ex.id}** {ex.question.replace(chr(10), ' ')}" in guide
    assert f"About {sum(notes[s]['minutes'] for s in STEPS)} minutes" in guide
    assert "## Injected faults\n\nNone" in guide
    # read, not copied: a changed notebook changes the guide
    changed = {**notebooks, STEPS[0]: exercise_notebook()}
    assert "- learn one thing;" in teaching.facilitator_guide(changed)
    assert "- and another, on two lines." in teaching.facilitator_guide(changed)


def test_the_guide_renders_the_faults_as_a_table():
    notebooks = {STEPS[0]: source(STEPS[0])}
    faults = [{"name": "leak", "what": "adds a copy of the target | noised", "finds": "step 1 leakage check",
               "teaches": "columns recorded after the outcome"}]
    guide = teaching.facilitator_guide(notebooks, faults)
    assert "| `leak` | adds a copy of the target \\| noised | step 1 leakage check | columns recorded after the " \
           "outcome |" in guide
    assert "None:" not in guide.split("## Injected faults")[1]


def test_teaching_notes_cover_every_step_and_a_missing_entry_is_named(tmp_path):
    assert set(teaching.load_teaching_notes()) == set(paths.STEP_NOTEBOOKS)
    with pytest.raises(PlaybookError, match="no entry for 09_nine"):
        teaching.guide_context({"09_nine": exercise_notebook()}, {})
    bad = tmp_path / "teaching.yaml"
    bad.write_text("01_vision_and_goals: {minutes: 10, discussion: [a]}\n")
    with pytest.raises(PlaybookError, match="non-empty list 'mistakes'"):
        teaching.load_teaching_notes(bad)


# --- grading an executed notebook -------------------------------------------------------------------


def executed(nb, check_outputs, solution_outputs=()):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb.cells[3].outputs = list(solution_outputs)
    nb.cells[4].outputs = list(check_outputs)
    return nb


def feedback_output(feedback: exercises.Feedback, with_key: bool = False):
    bundle = feedback._repr_mimebundle_()
    bundle[exercises.MIME_TYPE] = feedback.as_dict(with_key=with_key)
    return nbformat.v4.new_output("execute_result", data=bundle, execution_count=1)


def error_output(ename: str, evalue: str):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])


def test_grading_reads_back_passed_not_yet_and_not_run():
    nb = exercise_notebook()
    right = exercises.correct("9.1", "well done", expected=42)
    [passed] = teaching.grade_notebook(executed(nb, [feedback_output(right, with_key=True)]), "09_nine")
    assert (passed.status, passed.passed, passed.message, passed.giveaways) == ("passed", True, "well done", ["42"])
    wrong = exercises.wrong("9.1", "that is 41", "add one")
    [not_yet] = teaching.grade_notebook(executed(nb, [feedback_output(wrong)]), "09_nine")
    assert (not_yet.status, not_yet.answered, not_yet.hint, not_yet.giveaways) == ("not yet", True, "add one", [])
    assert not_yet.as_dict() == {"id": "9.1", "notebook": "09_nine", "passed": False, "answered": True,
                                 "message": "that is 41", "hint": "add one", "error": None}
    [raised] = teaching.grade_notebook(executed(nb, [], [error_output("ZeroDivisionError", "division by zero")]), "n")
    assert (raised.status, raised.error) == ("not run", "ZeroDivisionError: division by zero")
    stopped = executed(nb, [])
    stopped.cells[1].outputs = [error_output("KeyError", "'x'")]
    [never] = teaching.grade_notebook(stopped, "n")
    assert never.status == "not run" and never.error == "the notebook stopped at cell 1: KeyError: 'x'"
    assert "Exercise 9.1 (n): not run. Error: the notebook stopped at cell 1" in teaching.results_text([never])


def test_grading_a_folder_reports_the_exercises_of_a_notebook_that_never_ran(tmp_path):
    expected = {STEPS[0]: teaching.exercises_of(source(STEPS[0]), STEPS[0])}
    results = teaching.grade_folder(tmp_path, expected)
    assert [r.id for r in results] == [e.id for e in expected[STEPS[0]]]
    assert all(r.status == "not run" and r.error == "the notebook was not executed" for r in results)


def giveaways_shown_above(nb, name: str, giveaways: dict[str, list[str]]) -> list[str]:
    """Each giveaway of an exercise found in an output (text, HTML, stream) of a cell above its question."""
    found = []
    for ex in teaching.exercises_of(nb, name):
        for index, cell in enumerate(nb.cells[:ex.question_cell]):
            for out in cell.get("outputs", []):
                texts = [out.get("text", "")] + [out.get("data", {}).get(m, "") for m in ("text/plain", "text/html")]
                shown = "\n".join("".join(t) if isinstance(t, list) else str(t) for t in texts)
                found += [f"{name}, exercise {ex.id}: cell {index} shows {phrase!r}"
                          for phrase in giveaways.get(ex.id, []) if phrase and phrase in shown]
    return found


def test_the_giveaway_scan_finds_an_answer_printed_above_the_question():
    nb = executed(exercise_notebook(), [])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="the answer is 42\n")]
    assert giveaways_shown_above(nb, "09_nine", {"9.1": ["42"]}) == ["09_nine, exercise 9.1: cell 1 shows '42'"]
    assert giveaways_shown_above(nb, "09_nine", {"9.1": ["43"]}) == []


# --- the command line -------------------------------------------------------------------------------


def test_init_student_and_facilitator_write_their_copies(tmp_path, capsys):
    assert cli.main(["init", str(tmp_path / "s"), "--student"]) == 0
    assert cli.main(["init", str(tmp_path / "f"), "--facilitator"]) == 0
    assert cli.main(["init", str(tmp_path / "plain")]) == 0
    for step in SOURCES:
        nb = source(step)
        assert teaching.read_notebook(tmp_path / "s" / f"{step}.ipynb") == teaching.student_copy(nb, step)
        assert teaching.read_notebook(tmp_path / "f" / f"{step}.ipynb") == teaching.facilitator_copy(nb, step)
        assert (tmp_path / "plain" / f"{step}.ipynb").read_bytes() == SOURCES[step].read_bytes()
    guide = (tmp_path / "f" / "FACILITATOR_GUIDE.md").read_text()
    assert guide.startswith("# Facilitator guide") and "## Session plan" in guide
    from helpers.core.faults import FAULTS

    assert len(FAULTS) == 9 and all(f"| `{name}` |" in guide and FAULTS[name].teaches.split()[0] in guide
                                    for name in FAULTS)  # every injectable fault and what it teaches
    assert not (tmp_path / "s" / "FACILITATOR_GUIDE.md").exists()
    assert (tmp_path / "s" / "project.yaml").is_file()
    assert "playbook check" in capsys.readouterr().out
    assert cli.main(["init", str(tmp_path / "s"), "--student"]) == 2  # never into a non-empty folder
    assert "exists and is not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["init", str(tmp_path / "both"), "--student", "--facilitator"])


def test_check_refuses_bad_input_with_exit_2(tmp_path, capsys):
    assert cli.main(["check", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert cli.main(["check", str(tmp_path)]) == 2
    assert "holds no step notebook" in capsys.readouterr().err
    nb = source(STEPS[0])
    for cell in nb.cells:
        cell.metadata.pop("tags", None)
    teaching.write_notebook(nb, tmp_path / f"{STEPS[0]}.ipynb")
    assert cli.main(["check", str(tmp_path)]) == 2
    assert "have no exercises" in capsys.readouterr().err
    (tmp_path / f"{STEPS[0]}.ipynb").write_text("{not json")
    assert cli.main(["check", str(tmp_path)]) == 2
    assert "is not a readable notebook" in capsys.readouterr().err


@pytest.mark.slow
def test_a_cell_tagged_raises_exception_does_not_fail_the_notebook(tmp_path):
    """papermill fails a notebook for any error output; the engine keeps nbclient's raises-exception meaning."""
    nb = exercise_notebook()
    nb.cells[3] = code_cell("answer = 1 / 0", ["solution", engine.RAISES_TAG])
    nb.cells[4] = code_cell("print('after', 'the error')", ["check", engine.RAISES_TAG], exercise="9.1")
    teaching.write_notebook(nb, tmp_path / "in.ipynb")
    engine.execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", kernel_name="python3", progress_bar=False)
    out = teaching.read_notebook(tmp_path / "out.ipynb")
    assert len(out.cells) == len(nb.cells)  # no papermill error banner
    assert out.cells[3].outputs[0]["ename"] == "ZeroDivisionError"
    assert out.cells[4].outputs[0]["text"] == "after the error\n"
    nb.cells[3].metadata["tags"] = ["solution"]  # untagged: the notebook fails as before
    teaching.write_notebook(nb, tmp_path / "in.ipynb")
    from papermill import PapermillExecutionError

    with pytest.raises(PapermillExecutionError):
        engine.execute_notebook(tmp_path / "in.ipynb", tmp_path / "out2.ipynb", kernel_name="python3",
                                progress_bar=False)


# --- end to end: one check of a student copy, one of a facilitator copy -----------------------------

SOURCE_EXERCISES = {s: [e.id for e in teaching.exercises_of(source(s), s)] for s in STEPS}


@dataclass
class Checked:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def checks(tmp_path_factory) -> dict[str, tuple[Checked, Path]]:
    """ONE `playbook check --json` of the untouched student copy and ONE `playbook check` of the facilitator
    copy with the exercise key on (its feedback carries the giveaways), run side by side: the suite has
    2 cores, and a run keeps about one busy."""
    work = tmp_path_factory.mktemp("checks")
    started = {}
    for kind, extra, env in (("student", ["--json"], {}), ("facilitator", [], {exercises.KEY_ENV: "1"})):
        assert cli.main(["init", str(work / kind), f"--{kind}"]) == 0
        out, err = open(work / f"{kind}.out", "w"), open(work / f"{kind}.err", "w")  # noqa: SIM115 - closed below
        command = [sys.executable, "-m", "helpers.run.cli", "check", str(work / kind), *extra,
                   "--out", str(work / f"{kind}-run"), *fast_args()]
        started[kind] = (subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                          env={**os.environ, **env}), out, err)
    done = {}
    for kind, (proc, out, err) in started.items():
        code = proc.wait(timeout=1800)
        out.close()
        err.close()
        done[kind] = (Checked(code, (work / f"{kind}.out").read_text(), (work / f"{kind}.err").read_text()),
                      work / f"{kind}-run")
    return done


@pytest.fixture(scope="module")
def student_check(checks):
    return checks["student"]


@pytest.fixture(scope="module")
def facilitator_check(checks):
    return checks["facilitator"]


@pytest.mark.slow
def test_check_passes_every_exercise_of_the_facilitator_copy(facilitator_check):
    result, run = facilitator_check
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    results = teaching.grade_folder(run)
    assert {s: [r.id for r in results if r.notebook == s] for s in STEPS} == SOURCE_EXERCISES
    assert results and all(r.passed and r.message for r in results), [r.text for r in results if not r.passed]
    for r in results:
        assert f"Exercise {r.id} ({r.notebook}): passed." in result.stdout
    assert f"{len(results)} of {len(results)} exercise(s) passed." in result.stdout
    assert "Run folder" not in result.stdout  # the run's progress goes to stderr
    manifest = json.loads((run / "manifest.json").read_text())  # the learner's folder, not the deleted copies
    assert manifest["graded"] is True and Path(manifest["notebooks"]) == (run.parent / "facilitator").resolve()


@pytest.mark.slow
def test_check_fails_every_exercise_of_the_untouched_student_copy_with_feedback(student_check):
    result, run = student_check
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    report = json.loads(result.stdout)  # one JSON document, nothing else
    assert report["passed"] is False and Path(report["run"]) == run.resolve()
    graded = report["exercises"]
    assert {s: [e["id"] for e in graded if e["notebook"] == s] for s in STEPS} == SOURCE_EXERCISES
    for entry in graded:
        assert set(entry) == {"id", "notebook", "passed", "answered", "message", "hint", "error"}
        assert entry["passed"] is False and entry["answered"] is False and entry["error"] is None, entry
        assert entry["message"].strip(), entry


@pytest.mark.slow
def test_no_output_above_an_exercise_of_the_executed_student_copy_gives_its_answer(student_check, facilitator_check):
    key = {(r.notebook, r.id): r.giveaways for r in teaching.grade_folder(facilitator_check[1])}
    assert any(key.values()), "the facilitator check carried no giveaways: was PLAYBOOK_EXERCISE_KEY=1 set?"
    found = []
    for step, path in teaching.step_notebooks(student_check[1]).items():
        nb = teaching.read_notebook(path)
        found += giveaways_shown_above(nb, step, {ex: g for (s, ex), g in key.items() if s == step})
    assert found == [], "answers given away above their exercise:\n" + "\n".join(found)


@pytest.mark.slow
def test_grading_the_demo_run_passes_every_exercise_of_the_sources(demo_run):
    """The demo run executes the source notebooks, solutions included."""
    results = teaching.grade_folder(demo_run.path)
    assert {s: [r.id for r in results if r.notebook == s] for s in STEPS} == SOURCE_EXERCISES
    assert all(r.passed for r in results), [r.text for r in results if not r.passed]
