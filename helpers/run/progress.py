"""What a ``playbook run`` is doing right now: step, stage within the step, elapsed, remaining from the plan.

One display for the whole run, fed by the engine's execution manager (``cell_started`` with the
nearest markdown heading of the executing cell, ``cell_completed``), not by polling notebooks:

* stderr is a terminal: a tqdm bar over the step's code cells, its text
  ``[4/5] 04_model_development · 4.3 Training vs validation · 35 s elapsed, ~40 s left``
  refreshed every second (a long cell still shows the clock moving); it is erased when the
  step ends, so the runner's own lines (``[i/n] step ...``, ``succeeded in X s``) stay clean.
* otherwise (CI logs, pipes): that same text as one plain line per stage change.

"~N s left" comes from the run's plan (manifest ``plan.planned_s[step]``, written by step 3);
without a planned time for the step there is no remaining estimate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

SEP = " · "
TICK_S = 1.0  # refresh of the terminal bar's clock
MAX_STAGE_CHARS = 48  # on the terminal bar; plain lines keep the whole heading


def format_seconds(seconds: float) -> str:
    """``35 s``, ``2 min 05 s``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def planned_seconds(manifest: Mapping[str, Any], step: str) -> float | None:
    """The plan's wall time for ``step`` (manifest ``plan.planned_s``), or None."""
    plan = manifest.get("plan") or {}
    value = (plan.get("planned_s") or {}).get(step) if isinstance(plan, Mapping) else None
    return float(value) if isinstance(value, int | float) else None


def clock_text(elapsed: float, planned: float | None) -> str:
    """``35 s elapsed, ~40 s left`` (from the plan), ``35 s elapsed`` without one."""
    text = f"{format_seconds(elapsed)} elapsed"
    if planned is None:
        return text
    if elapsed <= planned:
        return f"{text}, ~{format_seconds(planned - elapsed)} left"
    return f"{text}, {format_seconds(elapsed - planned)} over the {format_seconds(planned)} plan"


class RunProgress:
    """The progress display of one run (``tty``: a tqdm bar on ``stream``; else plain lines through ``echo``)."""

    def __init__(self, total_steps: int, *, echo: Callable[[str], Any], tty: bool, stream: TextIO | None = None):
        self.total = total_steps
        self.echo = echo
        self.tty = tty
        self.stream = stream
        self.index = 0
        self.step = ""
        self.stage = ""
        self.planned: float | None = None
        self.running = False
        self.started = time.perf_counter()
        self._bar = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # --- the runner's side ---------------------------------------------------------------------
    def step_started(self, index: int, step: str, planned_s: float | None = None) -> None:
        self.step_finished()
        self.index, self.step, self.stage, self.planned = index, step, "", planned_s
        self.running = False
        self.started = time.perf_counter()

    def step_finished(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2 * TICK_S)
            self._ticker = None
        with self._lock:
            if self._bar is not None:
                self._bar.close()  # leave=False: the line is erased
                self._bar = None

    close = step_finished

    def text(self, max_stage: int | None = None) -> str:
        stage = self.stage or ("" if self.running else "starting")  # until the first cell: kernel, imports
        if max_stage is not None and len(stage) > max_stage:
            stage = stage[:max_stage - 1] + "…"
        parts = [f"[{self.index}/{self.total}] {self.step}"] + ([stage] if stage else [])
        return SEP.join(parts + [clock_text(time.perf_counter() - self.started, self.planned)])

    # --- the engine's side (ThrottledSaves) ---------------------------------------------------
    def notebook_started(self, code_cells: int) -> None:
        if not self.tty:
            return
        from tqdm import tqdm  # local: only a terminal needs it

        with self._lock:
            self._bar = tqdm(total=code_cells, file=self.stream, leave=False, dynamic_ncols=True,
                             bar_format="{desc} |{bar}| {n_fmt}/{total_fmt} cells", desc=self.text(MAX_STAGE_CHARS))
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(self._stop,), name="playbook-progress", daemon=True)
        self._ticker.start()

    def cell_started(self, stage: str) -> None:
        self.running = True
        if stage == self.stage:
            return
        self.stage = stage
        if self.tty:
            self._refresh()
        else:
            self.echo(self.text())

    def cell_completed(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.update(1)

    def _refresh(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.set_description_str(self.text(MAX_STAGE_CHARS), refresh=True)

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(TICK_S):
            self._refresh()
