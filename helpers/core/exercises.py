"""Exercises: the one return convention of every checker, and the cell conventions around it.

An exercise in a step notebook is three cells:

1. a Markdown cell with the question, starting ``**Exercise <step>.<k>.**``;
2. a code cell tagged ``solution``. What is outside the markers stays in the learner's copy
   (typically ``answer = ...``); what is between them is the solution::

       answer = ...
       ### BEGIN SOLUTION
       answer = f1_score(y_true, y_rule, pos_label="yes")
       ### END SOLUTION

   ``playbook init --student`` replaces the lines between the markers by ``# your code here``;
   ``--facilitator`` keeps them and drops the marker lines;
3. a code cell tagged ``check`` whose metadata holds ``{"exercise": "<step>.<k>"}`` and whose last
   line calls the step's checker, e.g. ``vision.check_exercise_1(answer, summary)``. The checker
   returns a :class:`Feedback`, which the notebook displays and ``playbook check`` reads back from
   the executed notebook (its ``application/vnd.playbook.feedback+json`` output).

Feedback says what is wrong and gives a hint, not only right or wrong. The expected answer never
leaves the checker, except as ``giveaways`` when ``PLAYBOOK_EXERCISE_KEY=1`` is set (tests and
facilitators): the strings that must not appear in any output above the exercise in a student copy.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

MIME_TYPE = "application/vnd.playbook.feedback+json"
BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
SCAFFOLD = "# your code here"
SOLUTION_TAG = "solution"
CHECK_TAG = "check"
KEY_ENV = "PLAYBOOK_EXERCISE_KEY"


@dataclass(frozen=True)
class Feedback:
    """The verdict of one exercise check: passed or not, what was found and a hint to go on."""

    exercise: str
    passed: bool
    message: str
    hint: str = ""
    answered: bool = True
    giveaways: tuple[str, ...] = field(default=(), repr=False)

    @property
    def text(self) -> str:
        if self.passed:
            return f"Exercise {self.exercise}: correct. {self.message}"
        head = "not answered yet" if not self.answered else "not yet"
        hint = f" Hint: {self.hint}" if self.hint else ""
        return f"Exercise {self.exercise}: {head}. {self.message}{hint}"

    def __str__(self) -> str:
        return self.text

    def as_dict(self, with_key: bool | None = None) -> dict[str, Any]:
        """What the grader reads; the giveaways only when the exercise key is on."""
        with_key = os.environ.get(KEY_ENV) == "1" if with_key is None else with_key
        out = {"exercise": self.exercise, "passed": self.passed, "answered": self.answered,
               "message": self.message, "hint": self.hint}
        if with_key:
            out["giveaways"] = list(self.giveaways)
        return out

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        state = "passed" if self.passed else "failed"
        mark = "\u2714" if self.passed else "\u2718"
        body = html.escape(self.text)
        return {"text/plain": self.text,
                "text/html": f'<div class="playbook-feedback {state}"><strong>{mark}</strong> {body}</div>',
                MIME_TYPE: self.as_dict()}


def correct(exercise: str, message: str, *, expected: Any = None, giveaways: Sequence[str] = ()) -> Feedback:
    return Feedback(exercise, True, message, giveaways=_giveaways(expected, giveaways))


def wrong(exercise: str, message: str, hint: str, *, expected: Any = None, giveaways: Sequence[str] = ()) -> Feedback:
    return Feedback(exercise, False, message, hint, giveaways=_giveaways(expected, giveaways))


def unanswered(exercise: str, what: str, hint: str = "", *, expected: Any = None,
               giveaways: Sequence[str] = ()) -> Feedback:
    """``what`` says what to set, e.g. "set `answer` to a column name"."""
    return Feedback(exercise, False, what, hint, answered=False, giveaways=_giveaways(expected, giveaways))


def is_unanswered(answer: Any) -> bool:
    """``...`` (the scaffold) and ``None`` both mean the learner has not answered."""
    return answer is None or answer is Ellipsis


def as_number(answer: Any) -> float | None:
    """A learner's numeric answer as a float (numbers, numpy scalars, numeric text), None when it is not one."""
    if isinstance(answer, bool):
        return None
    try:
        return float(answer)
    except (TypeError, ValueError):
        return None


def number_answer(exercise: str, answer: Any, what: str, hint: str = "", *, expected: Any = None,
                  giveaways: Sequence[str] = ()) -> float | Feedback:
    """A numeric answer as a float, or the Feedback saying it is missing or not a number.

    ``what`` completes "Set `answer` to ...", e.g. "a factor, e.g. 12". A checker returns the Feedback as it is.
    """
    if is_unanswered(answer):
        return unanswered(exercise, f"Set `answer` to {what}.", hint, expected=expected, giveaways=giveaways)
    value = as_number(answer)
    if value is None:
        return wrong(exercise, f"{answer!r} is not a number.", f"set `answer` to {what}.", expected=expected,
                     giveaways=giveaways)
    return value


def number_forms(value: float) -> tuple[str, ...]:
    """How a number would be printed if a cell above gave it away: 3 or 4 decimals, or whole.

    (Two decimals match too many unrelated figures to be a reliable sign of a give-away.)
    """
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(float(value)):
        return ()
    value = float(value)
    if value.is_integer() and abs(value) >= 10:
        return tuple(dict.fromkeys((f"{int(value)}", f"{int(value):,}")))
    return tuple(dict.fromkeys(f"{value:.{d}f}" for d in (3, 4)))


def _giveaways(expected: Any, explicit: Sequence[str]) -> tuple[str, ...]:
    if explicit:
        return tuple(explicit)
    if isinstance(expected, str):
        return (expected,)
    return number_forms(expected) if expected is not None else ()
