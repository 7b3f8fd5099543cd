"""Step 5, deployment and continuous improvement: ``deployment`` (model package, validation,
predictions, KPI gate, CI workflow, model card), ``monitoring`` (drift, performance, retraining)
and ``readiness`` (the ML Test Score)."""
