"""Production readiness: Google's "ML Test Score" rubric scored from the evidence a run produced.

The rubric (28 tests, 4 sections of 7, interpretation bands) is a data file,
``helpers/reference/ml_test_score.yaml``; this module only looks the evidence up and adds up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import yaml

from helpers.core.artifacts import Run
from helpers.core.errors import PlaybookError
from helpers.core.paths import data_dir

RUBRIC_FILE = "ml_test_score.yaml"
NOT_VERIFIABLE = "not verifiable here"


@dataclass(frozen=True)
class Fact:
    """A fact step 5 measured: whether it holds, and its evidence (a measured value or a file) either way,
    so the readiness table shows what a score rests on and what a missing one failed on."""

    holds: bool
    evidence: str


def load_rubric() -> dict[str, Any]:
    """The rubric data file, checked: 28 tests, 7 per section, known scores."""
    rubric = yaml.safe_load((data_dir() / RUBRIC_FILE).read_text(encoding="utf-8"))
    counts = pd.Series([t["section"] for t in rubric["tests"]]).value_counts()
    if len(rubric["tests"]) != 28 or set(counts.index) != set(rubric["sections"]) or (counts != 7).any():
        raise PlaybookError(f"{RUBRIC_FILE} must hold 28 tests, 7 per section.", "restore the rubric file.")
    return rubric


def _dig(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
    return data


def _present(value: Any) -> bool:
    return value is not None and value is not False and value != [] and value != {} and value != ""


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"{len(value)} item(s)"
    if isinstance(value, Mapping):
        return f"{len(value)} field(s)"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def lookup(run: Run, facts: Mapping[str, Any], item: Mapping[str, Any]) -> tuple[bool, str]:
    """Find one piece of evidence; return (found, description of what was found or missed)."""
    if "file" in item:
        path = run.path / item["file"]
        return path.exists(), f"file {item['file']}"
    if "summary" in item:
        summary = run.optional_summary(item["summary"]) or {}
        value = _dig(summary, item["key"])
        where = f"step {item['summary'][:2]} summary {item['key']}"
        return _present(value), f"{where} = {_short(value)}" if _present(value) else where
    if "manifest" in item:
        value = _dig(run.read_manifest(), item["manifest"])
        return _present(value), f"manifest {item['manifest']} = {_short(value)}" if _present(value) \
            else f"manifest {item['manifest']}"
    if "fact" in item:
        value = facts.get(item["fact"])
        if isinstance(value, Fact):
            return value.holds, f"{item['fact']}: {value.evidence}"
        return _present(value), f"{item['fact']}: {_short(value)}" if _present(value) else item["fact"]
    raise PlaybookError(f"Unknown evidence lookup {dict(item)} in {RUBRIC_FILE}.",
                        "use file, summary (with key), manifest or fact.")


def score_test(run: Run, facts: Mapping[str, Any], test: Mapping[str, Any]) -> dict[str, Any]:
    """Score one rubric test: its score when all evidence is found, else 0."""
    found = [lookup(run, facts, item) for item in test["evidence"]]
    if not found:
        status, score, evidence = NOT_VERIFIABLE, 0.0, ""
    elif all(ok for ok, _ in found):
        status, score = ("automated" if test["score"] == 1 else "done once or manually"), float(test["score"])
        evidence = "; ".join(text for _, text in found)
    else:
        status, score = "missing evidence", 0.0
        evidence = "missing: " + "; ".join(text for ok, text in found if not ok)
    return {"id": test["id"], "section": test["section"], "test": test["test"], "score": score, "status": status,
            "evidence": evidence, "how": test["how"], "todo": test["todo"]}


def score_run(run: Run, facts: Mapping[str, Any]) -> pd.DataFrame:
    """One row per rubric test: score, status, evidence found, and what a team must do."""
    return pd.DataFrame([score_test(run, facts, t) for t in load_rubric()["tests"]])


def band(score: float, rubric: Mapping[str, Any] | None = None) -> str:
    """The rubric's interpretation of a final score."""
    rubric = rubric or load_rubric()
    return next(b["text"] for b in rubric["bands"] if score <= float(b["max"]))


def summarise(table: pd.DataFrame) -> dict[str, Any]:
    """Section sums, the final score (their minimum), its band and the weakest section."""
    rubric = load_rubric()
    sections = {s: float(table.loc[table["section"] == s, "score"].sum()) for s in rubric["sections"]}
    final = min(sections.values())
    weakest = min(sections, key=sections.get)
    return {"sections": sections, "final": final, "weakest_section": weakest, "band": band(final, rubric),
            "not_verifiable": int((table["status"] == NOT_VERIFIABLE).sum()),
            "missing_evidence": int((table["status"] == "missing evidence").sum())}


def section_figure(summary: Mapping[str, Any]):
    """Bar chart of the four section scores (out of 7) with the final score marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    names = list(summary["sections"])
    values = [summary["sections"][n] for n in names]
    colors = ["tab:red" if n == summary["weakest_section"] else "tab:blue" for n in names]
    ax.barh(names, values, color=colors)
    ax.axvline(summary["final"], color="black", linestyle="--", label=f"final score {summary['final']:g} (minimum)")
    ax.set_xlim(0, 7)
    ax.set_xlabel("section score (sum of 7 tests, each 0 / 0.5 / 1)")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
