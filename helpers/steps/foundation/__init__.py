"""Step 2, the data foundation: ``data`` (load, split, clean, bias, scale) and ``quality``
(profile and quality checks)."""

from helpers.steps.foundation.data import (
    STEP,
    FoundationResult,
    headline,
    report_section,
    save,
    summary,
)

__all__ = ["STEP", "FoundationResult", "headline", "report_section", "save", "summary"]
