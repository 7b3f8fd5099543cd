"""Small finished-looking run folders written in a second: manifest, summaries, model, per-row predictions.

For the tracking and history tests that need several runs with known differences (the demo run is
one run, and a second demo run would cost a minute).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from helpers.core import artifacts, kpis, modelio, paths
from helpers.steps.modeling import PREDICTIONS_FILE

S1, S2, S3, S4, S5 = paths.STEP_NOTEBOOKS
CONTRACT = kpis.KpiContract("classification", {"recall": 0.6, "roc_auc": 0.7}, "yes", "macro", ["no", "yes"])


def labels(n: int = 400, seed: int = 0) -> np.ndarray:
    return np.where(np.random.default_rng(seed).random(n) < 0.4, "yes", "no").astype(object)


def probabilities(y: np.ndarray, skill: float, seed: int = 1) -> np.ndarray:
    """Positive-class probabilities that separate the classes more as ``skill`` grows (0: noise)."""
    noise = np.random.default_rng(seed).normal(size=len(y))
    return 1 / (1 + np.exp(-(skill * np.where(y == "yes", 1.0, -1.0) + noise)))


def make_run(path: Path, *, proba: np.ndarray, y: np.ndarray, created_at: str = "2026-01-01T10:00:00+00:00",
             project: str = "demo-project", target: str = "churn", problem_type: str = "classification",
             params: dict | None = None, gate_code: int = 0, sha256: str = "a" * 64,
             issues: list[dict] | None = None) -> artifacts.Run:
    """A run folder whose KPIs are scored (sklearn, with bootstrap intervals) from ``y`` and ``proba``."""
    run = artifacts.Run(path)
    run.path.mkdir(parents=True)
    predicted = np.where(proba >= 0.5, "yes", "no").astype(object)
    table = kpis.kpi_intervals(CONTRACT, y, predicted, proba, n_boot=50)
    manifest = artifacts.empty_manifest()
    manifest.update(project=project, created_at=created_at, command="playbook run",
                    parameters={"project_name": project, "target": target, "seed": 42, **(params or {})},
                    dataset={"source": "builtin:churn", "sha256": sha256, "rows": 5 * len(y), "columns": 9},
                    steps=[{"step": s, "status": "succeeded", "duration_s": 1.5 + i} for i, s in enumerate(paths.STEP_NOTEBOOKS)],
                    kpis=table.to_dict(orient="records"),
                    champion={"version": 1, "path": "models/v1/model.skops", "family": "logistic_regression"})
    run.write_manifest(manifest)
    run.write_summary(S1, {"target": target, "problem_type": problem_type, "contract": CONTRACT.to_dict(),
                           "verdict": {"code": "proceed", "text": "ML is worth it."}})
    run.write_summary(S2, {"target": target, "issues": issues or [], "issue_counts": {"high": 0, "medium": 1, "low": 0},
                           "split": {"test_rows_cleaned": len(y)}})
    run.write_summary(S4, {"champion": {"family": "logistic_regression", "params": {"C": 1.0}}})
    run.write_summary(S5, {"gate": {"exit_code": gate_code, "result": "passed" if gate_code == 0 else "failed"},
                           "retraining": {"champion_changed": False}, "readiness": {"final": 3.0}})
    run.write_artifact_text(S1, "charter.md", "# Charter\n")
    run.write_artifact_text(S5, "model_card.md", "# Model card\n")
    frame = pd.DataFrame({"actual": y, "predicted": predicted, "proba": proba},
                         index=pd.RangeIndex(len(y), name="row") * 5)
    run.write_table(S4, PREDICTIONS_FILE, frame)
    folder = run.models_dir(1)
    X = np.column_stack([proba, np.arange(len(y)) % 3])
    modelio.save_model(LogisticRegression().fit(X, y), folder / "model.skops")
    artifacts.write_json(folder / "model_meta.json", {"version": 1, "family": "logistic_regression"})
    artifacts.write_text(run.path / "report.html", "<html><body>report</body></html>")
    return run
