"""Teaching faults: documented faults injected into any table as it is loaded (the ``teaching_faults`` parameter).

To teach "this check finds that fault" a trainer lists faults instead of hand-crafting a broken
table: ``teaching_faults: [duplicates, spelling]``. ``inject`` applies them to the loaded table
(seeded, deterministic), before the raw snapshot is written, so every step sees the faulted table;
the record of what was done goes to the manifest (``teaching_faults``), every quality issue a fault
causes is marked ``injected`` ("injected for teaching" in its evidence), notebooks 01 and 02 print a
notice when the snapshot is read and the report's first screen says "Teaching run".

How columns are chosen (any table): faults that need a numeric feature take one of the table's
numeric columns that is not the target and not excluded (id, group, time, sensitive and kept
columns), a different one per fault where the table has enough; faults that need a category take a
text column with 2 to 20 values. A table without one (the scikit-learn tables are all numbers)
gets one made for the purpose: ``spelling`` then adds ``<numeric column>_band`` (its tertiles as
"low", "medium", "high": the same information as the column it bands, so it adds no signal) and
misspells that. ``leak``, ``constant`` and ``identifier`` add a column of their own. Each fault
draws from its own generator, seeded by the run's seed and the fault's name (``fault_rng``), and the
faults are applied in one fixed order (``APPLY_ORDER``: columns first, then rows), whatever the order
of the list.

``make_churn`` (the demo's built-in faults) uses the same row picking, spelling variants and
duplicate rows (``pick_rows``, ``vary_spellings``, ``append_duplicates``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.errors import PlaybookError
from helpers.core.problem import frame_problem, infer_problem_type

RECORD_ATTR = "teaching_faults"  # ``frame.attrs`` key of the record on a faulted table (and the manifest key)
LABEL = "injected for teaching"


@dataclass(frozen=True)
class Fault:
    """One teaching fault: what it does to the table, which check finds it (where), what it teaches."""

    name: str
    what: str
    finds: str
    teaches: str
    check: str | None  # the step-2 quality check whose issue it causes (None: not an issue of that table)


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("leak", "adds a numeric column `followup_score` computed from the target (the class code or the "
                  "target's value, plus a little noise), as if it were recorded after the outcome",
          "step 1 leakage screen (set aside before the baselines) and step 2 data quality: target leakage",
          "A column that predicts the target almost perfectly is rarely a gift: ask when it is recorded, and set "
          "it aside unless it is known at prediction time.", "target leakage"),
    Fault("duplicates", "appends exact copies of 6% of the rows, shuffled in among the others",
          "step 2 data quality: duplicate rows",
          "Duplicate rows over-weight some records and leak across cross-validation folds: remove them before "
          "splitting folds.", "duplicate rows"),
    Fault("spelling", "rewrites 10% of each value of a category in another spelling (case, leading or trailing "
                      "spaces); a table without text columns gets `<numeric column>_band` to misspell",
          "step 2 data quality: inconsistent spellings",
          "One value spelled several ways becomes several categories: map the spellings to one before encoding.",
          "inconsistent spellings"),
    Fault("missing", "blanks 12% of the values of a numeric feature",
          "step 2 data quality: missing values",
          "Missing values must be imputed inside the model pipeline, fitted on the training folds only.",
          "missing values"),
    Fault("numbers_as_text", "stores a numeric feature as text (\"13.2\" instead of 13.2)",
          "step 2 data quality: numbers stored as text",
          "A number stored as text looks like a category with hundreds of levels: coerce it back to numbers.",
          "numbers stored as text"),
    Fault("constant", "adds a column `source_system` that holds one value on every row",
          "step 2 data quality: constant column",
          "A column that never changes cannot inform a model: drop it, and ask why the extract carries it.",
          "constant column"),
    Fault("identifier", "adds a column `record_id` of unique codes (R000001, ... in shuffled order)",
          "step 1 set-aside identifiers and step 2 data quality: identifier column",
          "A model memorises unique codes instead of learning: identifiers are row keys, never features.",
          "identifier column"),
    Fault("imbalance", "classification only: removes rows of the rarest class until the largest class has about "
                       "5 times its rows",
          "step 2 bias and representativeness: class balance (imbalance ratio of at least 3:1)",
          "With a rare class, accuracy rewards always predicting the common one: use recall, precision, F1 or "
          "balanced accuracy, and stratified folds.", None),
    Fault("outliers", "turns 2% (at least 6) of a numeric feature's values into units errors: ten times the value, at least "
                      "the upper quartile plus six inter-quartile ranges",
          "step 2 data quality: outliers (beyond Tukey's far-out fences)",
          "A few extreme values drag the mean and the standard deviation: check the source, and prefer robust "
          "scaling.", "outliers"),
)}

# Columns first (added, then changed), rows last: duplicates copy the faulted rows exactly.
APPLY_ORDER = ("leak", "constant", "identifier", "spelling", "numbers_as_text", "missing", "outliers",
               "imbalance", "duplicates")
assert set(APPLY_ORDER) == set(FAULTS)

DUPLICATE_SHARE, SPELLING_SHARE, MISSING_SHARE, OUTLIER_SHARE = 0.06, 0.10, 0.12, 0.02
IMBALANCE_RATIO, IMBALANCE_MIN_ROWS = 5, 10
OUTLIER_MIN_ROWS = 6
MAX_CATEGORIES = 20


# --- shared with the churn generator --------------------------------------------------------------


def pick_rows(n: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """``share`` of ``n`` row positions (at least one), drawn without replacement."""
    return rng.choice(n, size=max(1, int(share * n)), replace=False)


def vary_spellings(frame: pd.DataFrame, column: str, variants: Mapping[str, Sequence[str]], share: float,
                   rng: np.random.Generator) -> int:
    """Rewrite ``share`` of the rows of each canonical value in one of its ``variants`` (in place); rows changed."""
    changed = 0
    for canonical, forms in variants.items():
        rows = np.flatnonzero((frame[column] == canonical).to_numpy())
        chosen = rng.choice(rows, size=int(share * len(rows)), replace=False)
        frame.loc[chosen, column] = rng.choice(forms, size=len(chosen))
        changed += len(chosen)
    return changed


def append_duplicates(frame: pd.DataFrame, rows: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """The table with exact copies of ``rows`` appended, every row then shuffled."""
    combined = pd.concat([frame, frame.iloc[rows]], ignore_index=True)
    return combined.iloc[rng.permutation(len(combined))].reset_index(drop=True)


def spelling_variants(value: str) -> list[str]:
    """Other spellings of one value that step 2 folds together: case and surrounding spaces."""
    forms = [value.upper(), value.lower(), value.capitalize(), value + " ", " " + value]
    return list(dict.fromkeys(f for f in forms if f != value))


# --- names and applicability -------------------------------------------------------------------------


def check_names(names: Sequence[str] | None) -> list[str]:
    """``teaching_faults`` as a list of known names (repeats dropped), or one clear error."""
    names = list(dict.fromkeys(str(n).strip() for n in names or []))
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise PlaybookError(f"Unknown teaching fault{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(map(repr, unknown))}.",
                            f"list only these in teaching_faults: {', '.join(FAULTS)}.")
    return names


def check_applicable(names: Sequence[str] | None, problem_type: str | None, target: str | None) -> list[str]:
    """The checked names, and one clear error for a fault the problem cannot have (``problem_type`` "auto": later)."""
    names = check_names(names)
    if "leak" in names and (problem_type == "clustering" or (not target and problem_type not in (None, "auto"))):
        raise PlaybookError("The teaching fault 'leak' needs a target to leak, and clustering has none.",
                            "remove leak from teaching_faults, or use a data set with a target.")
    if "imbalance" in names and problem_type not in (None, "auto", "classification"):
        raise PlaybookError(f"The teaching fault 'imbalance' needs classes, and this problem is {problem_type}.",
                            "remove imbalance from teaching_faults, or use a classification data set.")
    return names


def check_engine(names: Sequence[str] | None, data_engine: str | None) -> None:
    """Faults are injected into a table in memory: none on the DuckDB path (one clear error)."""
    if names and data_engine == "duckdb":
        raise PlaybookError("teaching_faults are injected into a table in memory, and data_engine is duckdb.",
                            "use data_engine: pandas (a table that fits in memory) for a teaching run.")


# --- choosing columns ---------------------------------------------------------------------------------------


class _Columns:
    """The columns faults may change: numeric features and categories, each used by one fault where possible."""

    def __init__(self, frame: pd.DataFrame, protected: Sequence[str]):
        self.frame, self.protected, self.used = frame, set(protected), set()

    def _free(self, columns: list[str]) -> list[str]:
        fresh = [c for c in columns if c not in self.used]
        return fresh or columns

    def numeric(self, rng: np.random.Generator, fault: str, *, min_distinct: int = 2,
                max_distinct_share: float = 1.0, spread: bool = False) -> str:
        frame = self.frame
        found = []
        for col in frame.columns:
            s = frame[col]
            if col in self.protected or not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
                continue
            values = s.dropna()
            distinct = values.nunique()
            if distinct < min_distinct or distinct > max_distinct_share * max(len(values), 1):
                continue
            if spread and not (values.quantile(0.75) - values.quantile(0.25)) > 0:
                continue
            found.append(col)
        if not found:
            raise PlaybookError(f"The teaching fault {fault!r} needs a numeric feature column, and the table has "
                                "none that fits.", f"remove {fault} from teaching_faults for this data set.")
        return self.take(str(rng.choice(self._free(found))))

    def category(self, rng: np.random.Generator) -> str | None:
        frame = self.frame
        found = [c for c in frame.columns if c not in self.protected and _is_text(frame[c])
                 and 2 <= frame[c].nunique() <= min(MAX_CATEGORIES, 0.5 * len(frame))]
        fresh = [c for c in found if c not in self.used]
        return self.take(str(rng.choice(fresh))) if fresh else None

    def take(self, column: str) -> str:
        self.used.add(column)
        return column

    def new_name(self, name: str) -> str:
        """``name``, or ``name_2``, ... when the table has that column already."""
        out, k = name, 2
        while out in self.frame.columns:
            out, k = f"{name}_{k}", k + 1
        return self.take(out)


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)


def _entry(columns: Sequence[str], rows: int, detail: str) -> dict[str, Any]:
    return {"columns": list(columns), "rows": int(rows), "detail": detail}


# --- the faults -----------------------------------------------------------------------------------------------


def _leak(frame, cols, rng, target, problem_type):
    name = cols.new_name("followup_score")
    y = frame[target]
    if problem_type == "classification":
        codes = pd.Series(pd.factorize(y.astype(str), sort=True)[0], index=frame.index).astype(float)
        value = codes + rng.uniform(0.0, 0.6, len(frame))  # classes never overlap: near-perfect alone
        how = "the class code plus uniform noise (0 to 0.6)"
    else:
        numbers = pd.to_numeric(y, errors="coerce")
        value = numbers + rng.normal(0.0, 0.05 * float(numbers.std() or 1.0), len(frame))
        how = "the target plus normal noise (5% of its standard deviation)"
    frame[name] = value.where(y.notna()).round(3)
    return frame, _entry([name], len(frame), f"{name} = {how}")


def _constant(frame, cols, rng, target, problem_type):
    name = cols.new_name("source_system")
    frame[name] = "crm"
    return frame, _entry([name], len(frame), f"{name} = 'crm' on every row")


def _identifier(frame, cols, rng, target, problem_type):
    name = cols.new_name("record_id")
    frame[name] = [f"R{k:06d}" for k in rng.permutation(len(frame)) + 1]
    return frame, _entry([name], len(frame), f"{name}: a unique code per row (shuffled, so it carries no row order)")


def _spelling(frame, cols, rng, target, problem_type):
    column = cols.category(rng)
    made = ""
    if column is None:  # no category to misspell: band a numeric feature (the same information, as words)
        source = cols.numeric(rng, "spelling", min_distinct=3)
        column = cols.new_name(f"{source}_band")
        ranks = frame[source].rank(method="first")
        frame[column] = pd.qcut(ranks, 3, labels=["low", "medium", "high"]).astype(object).where(frame[source].notna())
        made = f"{column} (tertiles of {source}) added; "
    values = [str(v) for v in frame[column].dropna().unique()]
    frame[column] = frame[column].astype(object)
    changed = vary_spellings(frame, column, {v: spelling_variants(v) for v in values}, SPELLING_SHARE, rng)
    return frame, _entry([column], changed, f"{made}{changed} values of {column} rewritten in another spelling")


def _numbers_as_text(frame, cols, rng, target, problem_type):
    # repeated values: a text column of (nearly) unique values would look like an identifier instead
    column = cols.numeric(rng, "numbers_as_text", min_distinct=10, max_distinct_share=0.8)
    values = frame[column]
    frame[column] = [None if pd.isna(v) else np.format_float_positional(float(v), trim="-") for v in values]
    return frame, _entry([column], int(values.notna().sum()), f"{column} stored as text")


def _missing(frame, cols, rng, target, problem_type):
    column = cols.numeric(rng, "missing")
    rows = pick_rows(len(frame), MISSING_SHARE, rng)
    frame[column] = frame[column].astype(float)
    frame.loc[rows, column] = np.nan
    return frame, _entry([column], len(rows), f"{len(rows)} values of {column} blanked")


def _outliers(frame, cols, rng, target, problem_type):
    column = cols.numeric(rng, "outliers", min_distinct=10, spread=True)
    values = frame[column].astype(float)
    q1, q3 = values.quantile([0.25, 0.75])
    rows = rng.choice(len(frame), size=min(len(frame), max(OUTLIER_MIN_ROWS, int(OUTLIER_SHARE * len(frame)))),
                      replace=False)  # a few rows at least: some of them land on the test side
    rows = rows[values.iloc[rows].notna().to_numpy()]
    chosen = values.iloc[rows]
    frame[column] = values
    frame.loc[rows, column] = np.maximum(10 * chosen, q3 + 6 * (q3 - q1)).to_numpy()
    return frame, _entry([column], len(rows), f"{len(rows)} values of {column} made units errors "
                                              f"(10x, at least {q3 + 6 * (q3 - q1):.4g})")


def _imbalance(frame, cols, rng, target, problem_type):
    counts = frame[target].value_counts()
    rare = counts.index[-1]
    keep = max(math.ceil(counts.iloc[0] / IMBALANCE_RATIO), IMBALANCE_MIN_ROWS)
    rows = np.flatnonzero((frame[target] == rare).to_numpy())
    drop = rng.choice(rows, size=max(len(rows) - keep, 0), replace=False)
    out = frame.drop(index=frame.index[drop]).reset_index(drop=True)
    return out, _entry([target], len(drop), f"class {rare!r} cut from {len(rows)} to {len(rows) - len(drop)} rows "
                                            f"(largest class {counts.index[0]!r}: {counts.iloc[0]})")


def _duplicates(frame, cols, rng, target, problem_type):
    rows = pick_rows(len(frame), DUPLICATE_SHARE, rng)
    return append_duplicates(frame, rows, rng), _entry([], len(rows), f"{len(rows)} rows copied")


_APPLY = {"leak": _leak, "constant": _constant, "identifier": _identifier, "spelling": _spelling,
          "numbers_as_text": _numbers_as_text, "missing": _missing, "outliers": _outliers,
          "imbalance": _imbalance, "duplicates": _duplicates}


def fault_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one fault: the run's seed and the fault's name (stable across processes)."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def inject(frame: pd.DataFrame, faults: Sequence[str], *, target: str | None, problem_type: str | None,
           seed: int, exclude: Sequence[str] = ()) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Apply the teaching ``faults`` to a copy of ``frame``; also the record of what was done.

    The record: ``{"seed", "faults": {name: {"columns", "rows", "detail", "check", "finds"}}}``
    (``rows``: rows changed, copied or removed). ``exclude``: columns no fault may change (the
    id, group, time, sensitive and kept columns); the target is never changed, except that
    ``imbalance`` removes rows of one class. Nothing listed: the frame itself and an empty record.
    """
    names = check_names(faults)
    if not names:
        return frame, {"seed": int(seed), "faults": {}}
    if target and (problem_type in (None, "auto") or target not in frame.columns):
        problem_type, _ = frame_problem(frame, target, problem_type or "auto")
    elif not target:
        problem_type, _ = infer_problem_type(None, problem_type or "auto")
    check_applicable(names, problem_type, target)
    out = frame.copy().reset_index(drop=True)
    cols = _Columns(out, [c for c in [target, *exclude] if c])
    record: dict[str, Any] = {"seed": int(seed), "faults": {}}
    for name in sorted(names, key=APPLY_ORDER.index):
        out, entry = _APPLY[name](out, cols, fault_rng(seed, name), target, problem_type)
        cols.frame = out
        record["faults"][name] = {**entry, "check": FAULTS[name].check, "finds": FAULTS[name].finds}
    record["faults"] = {n: record["faults"][n] for n in names}  # in the order the user listed them
    out.attrs[RECORD_ATTR] = record
    return out, record


# --- saying what was injected ----------------------------------------------------------------------------------


def record_of(frame: pd.DataFrame) -> dict[str, Any] | None:
    """The record ``inject`` left on a faulted table (kept by row selections such as the training side)."""
    record = frame.attrs.get(RECORD_ATTR)
    return record if record and record.get("faults") else None


def notice(record: Mapping[str, Any] | None) -> str:
    """One line naming the injected faults and their columns ("" for a run without)."""
    if not record or not record.get("faults"):
        return ""
    parts = []
    for name, entry in record["faults"].items():
        where = ", ".join(entry["columns"]) if name != "duplicates" else f"{entry['rows']} rows"
        parts.append(f"{name} ({where})" if where else name)
    return (f"Teaching run: injected faults {', '.join(parts)}. The issues they cause are marked '{LABEL}': "
            "they are not findings about the data (teaching_faults in manifest.json).")


def mark_issues(issues: Sequence[dict[str, Any]], record: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The quality issues, each one an injected fault caused marked ``injected`` and labelled in its evidence."""
    if not record or not record.get("faults"):
        return list(issues)
    causes = {}
    for name, entry in record["faults"].items():
        if entry.get("check"):
            for column in entry["columns"] or [None]:
                causes[(entry["check"], column)] = name
    out = []
    for found in issues:
        name = causes.get((found["check"], found["column"]))
        if name and not found.get("injected"):
            found = {**found, "injected": True, "fault": name,
                     "evidence": f"{LABEL} (fault {name}): {found['evidence']}"}
        out.append(found)
    return out
