"""ML Project Playbook: the tested package behind the step notebooks.

One module per lifecycle step (``vision``, ``data``, ``stack``, ``modeling``,
``deployment``, ``monitoring``) plus the shared machinery (``config``,
``artifacts``, ``datasets``, ``split``, ``features``, ``families``, ``kpis``,
``runner``, ``report``, ``widgets``, ``cli``). Importing it does no work.
"""

from helpers.errors import PlaybookError

__all__ = ["PlaybookError"]
__version__ = "0.1.0"
