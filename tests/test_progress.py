"""What the command line shows while a run works: stage lines in logs, a bar on a terminal, planned vs actual."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time

import pytest

from helpers.core.artifacts import Run
from helpers.run import progress, runner
from tests.conftest import ROOT, fast_args, run_cli

STEP1, STEP4 = "01_vision_and_goals", "04_model_development"


def test_durations_and_the_clock_text():
    assert [progress.format_seconds(s) for s in (0, 4.6, 59.4, 60, 125)] == ["0 s", "5 s", "59 s", "1 min 00 s",
                                                                              "2 min 05 s"]
    assert progress.clock_text(35, None) == "35 s elapsed"
    assert progress.clock_text(35, 75) == "35 s elapsed, ~40 s left"
    assert progress.clock_text(80, 60) == "1 min 20 s elapsed, 20 s over the 1 min 00 s plan"


def test_planned_seconds_come_from_the_plan_in_the_manifest():
    manifest = {"plan": {"planned_s": {STEP4: 60, "05_deployment_and_monitoring": 30.5}}}
    assert progress.planned_seconds(manifest, STEP4) == 60.0
    assert progress.planned_seconds(manifest, STEP1) is None
    assert progress.planned_seconds({}, STEP4) is None and progress.planned_seconds({"plan": None}, STEP4) is None


def test_plain_lines_one_per_stage_change():
    lines = []
    display = progress.RunProgress(5, echo=lines.append, tty=False)
    display.step_started(4, STEP4, planned_s=75)
    display.notebook_started(12)
    for stage in ("4.1 Inputs", "4.1 Inputs", "4.3 Tune the leader"):
        display.cell_started(stage)
        display.cell_completed()
    display.step_finished()
    assert lines == [f"[4/5] {STEP4} · 4.1 Inputs · 0 s elapsed, ~1 min 15 s left",
                     f"[4/5] {STEP4} · 4.3 Tune the leader · 0 s elapsed, ~1 min 15 s left"]


def test_on_a_terminal_a_bar_over_the_steps_cells_erased_when_the_step_ends(monkeypatch):
    monkeypatch.setattr(progress, "TICK_S", 0.05)
    stream, lines = io.StringIO(), []
    display = progress.RunProgress(5, echo=lines.append, tty=True, stream=stream)
    display.step_started(4, STEP4)
    display.notebook_started(10)
    display.cell_started("4.3 Tune the leader")
    display.cell_completed()
    time.sleep(0.3)  # the clock ticks while a long cell runs
    display.step_finished()
    shown = stream.getvalue()
    assert lines == []  # no plain lines on a terminal
    assert f"\r[4/5] {STEP4} · 4.3 Tune the leader · 0 s elapsed |" in shown and "| 1/10 cells" in shown
    assert shown.count("\r") > 4 and shown.endswith("\r")  # redrawn in place, then erased


def _run_with_steps(tmp_path, plan=None) -> Run:
    run = Run(tmp_path / "run")
    run.path.mkdir()
    runner.start_manifest(run, {"project_name": "p"}, [STEP1, STEP4], "playbook run", tmp_path)
    run.set_step_status(STEP1, "succeeded", duration_s=9.34)
    run.set_step_status(STEP4, "failed", duration_s=61.0)
    if plan is not None:
        run.update_manifest(plan=plan)
    return run


def test_the_summary_puts_planned_next_to_actual_time(tmp_path):
    run = _run_with_steps(tmp_path, plan={"time_budget_s": 420, "planned_s": {STEP4: 55.0}})
    lines = []
    runner.print_summary(run, [], lines.append)
    assert lines[1] == "Step                            status        time      planned"
    assert lines[2] == f"{STEP1:<31} succeeded     9.3 s     -"
    assert lines[3] == f"{STEP4:<31} failed        61.0 s    55.0 s"


def test_without_a_plan_the_summary_has_no_planned_column(tmp_path):
    lines = []
    runner.print_summary(_run_with_steps(tmp_path), [], lines.append)
    assert lines[1] == "Step                            status        time"
    assert lines[2] == f"{STEP1:<31} succeeded     9.3 s"


# --- the real command ------------------------------------------------------------------------


@pytest.mark.slow
def test_piped_output_gets_plain_stage_lines(tmp_path):
    result = run_cli("run", "--steps", "1", "--no-html", "--out", str(tmp_path / "run"), *fast_args())
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f"[1/1] {STEP1} ..." in lines and any(re.fullmatch(r" +succeeded in \d+\.\d s", x) for x in lines)
    stages = [x for x in lines if x.startswith(f"[1/1] {STEP1} · ")]
    assert any(re.fullmatch(rf"\[1/1\] {STEP1} · 1\.1 Frame the problem · \d+ s elapsed", x) for x in stages), stages
    assert len(stages) == len(set(stages)) >= 5  # one line per stage of the notebook
    assert "\r" not in result.stdout + result.stderr and "cells" not in result.stderr  # no bar in a log


@pytest.mark.slow
def test_a_terminal_gets_a_progress_bar(tmp_path):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "helpers.run.cli", "run", "--steps", "1", "--no-html",
                             "--out", str(tmp_path / "run"), *fast_args()],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal has closed it
            break
        if not chunk:
            break
        shown += chunk
    stdout, _ = proc.communicate(timeout=600)
    os.close(master)
    assert proc.returncode == 0, stdout + shown.decode(errors="replace")
    text = shown.decode()
    assert re.search(rf"\r\[1/1\] {STEP1} · 1\.1 Frame the problem · \d+ s elapsed \|.*\| \d+/\d+ cells", text), text
    assert f"[1/1] {STEP1} ..." in stdout and "succeeded in" in stdout  # the runner's own lines stay
    assert f"[1/1] {STEP1} · " not in stdout  # no plain stage lines when the bar shows them
