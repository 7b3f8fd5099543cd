"""Show a helper's own source in a notebook, so learners see the scikit-learn and pandas calls.

The source is read from the module at display time (``inspect.getsource``), never copied into
the notebook: what the learner reads is what the playbook runs.
"""

from __future__ import annotations

import inspect
from typing import Any

from IPython.display import Markdown


def source_text(obj: Any) -> str:
    """The source of a function, class or method, with the module it lives in."""
    target = inspect.unwrap(obj)
    try:
        code = inspect.getsource(target)
    except (OSError, TypeError) as exc:
        raise TypeError(f"{obj!r} has no Python source to show (built-in or compiled).") from exc
    return inspect.cleandoc(code) if code.startswith((" ", "\t")) else code.rstrip()


def show_source(obj: Any) -> Markdown:
    """A Markdown rendering of ``obj``'s source: its qualified name and a highlighted code block."""
    target = inspect.unwrap(obj)
    name = f"{target.__module__}.{target.__qualname__}"
    return Markdown(f"Source of `{name}` (read from the installed module):\n\n```python\n{source_text(obj)}\n```")
