"""Step 5, deployment and continuous improvement: ``deployment`` (model package, validation,
predictions, KPI gate, CI workflow, model card), ``monitoring`` (drift, performance, retraining)
and ``readiness`` (the ML Test Score)."""

from helpers.steps.operations.monitoring import (
    STEP,
    OperationsResult,
    headline,
    report_section,
    save,
    summary,
)

__all__ = ["STEP", "OperationsResult", "headline", "report_section", "save", "summary"]
