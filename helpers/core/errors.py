"""The one exception type for bad input: it names the problem and the fix."""

from __future__ import annotations


class PlaybookError(Exception):
    """Bad input found by the playbook (exit code 2 on the command line).

    The message states the problem and how to fix it, in one or two sentences.
    """

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem} Fix: {fix}")

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing a long traceback: a notebook
        # user sees the same one clear message as the command line.
        return [f"PlaybookError: {self}"]
