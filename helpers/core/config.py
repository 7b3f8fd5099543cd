"""The parameter registry: every parameter of the playbook, defined once.

Each notebook's ``parameters`` cell, ``templates/project.yaml``, ``playbook params``
and the CLI's type conversion are all derived from (and tested against) ``REGISTRY``.
Dataset-specific parameters default to ``None``: "take it from the dataset's preset".
"""

from __future__ import annotations

import keyword
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helpers.core import compute
from helpers.core.errors import PlaybookError
from helpers.core.paths import STEP_NOTEBOOKS
from helpers.core.system import parse_bytes

S1, S2, S3, S4, S5 = STEP_NOTEBOOKS
ALL_STEPS = STEP_NOTEBOOKS
DATA_STEPS = (S1, S2)  # steps that load the source (the first load writes the snapshot)

PROBLEM_TYPES = ("auto", "classification", "regression", "clustering")


@dataclass(frozen=True)
class Param:
    """One parameter: its name, type, default, help text and the steps that take it."""

    name: str
    type: str  # one of: str, int, float, bool, dict, list
    default: Any
    help: str
    steps: tuple[str, ...]
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False  # bounds are exclusive
    extra: dict = field(default_factory=dict)

    @property
    def annotation(self) -> str:
        return f"Optional[{self.type}]" if self.nullable else self.type

    def code_line(self) -> str:
        """The line of a notebook's parameters cell that declares this parameter."""
        return f"{self.name}: {self.annotation} = {python_literal(self.default)}  # {self.help}"


def python_literal(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _p(name, type_, default, help_, steps, **kw) -> Param:
    return Param(name, type_, default, help_, tuple(steps), **kw)


# --- shared by every step --------------------------------------------------------
_COMMON = [
    _p("run_dir", "str", None, "run folder to write into (None: PLAYBOOK_RUN_DIR or runs/interactive)", ALL_STEPS, nullable=True),
    _p("interactive", "bool", True, "show widgets (the runner sets False for static batch output)", ALL_STEPS),
    _p("seed", "int", 42, "random seed for splits, sampling and models", ALL_STEPS, minimum=0),
]

# --- the data source and the split (steps 1 and 2 load the data) ------------------
_DATA = [
    _p("dataset", "str", "builtin:churn", "CSV/Parquet path, sqlite:///file.db (with query) or builtin:<name>", DATA_STEPS),
    _p("encoding", "str", "utf-8", "text encoding of a CSV file", DATA_STEPS),
    _p("sep", "str", None, "CSV delimiter (None: detect it)", DATA_STEPS, nullable=True),
    _p("query", "str", None, "SQL query to run when dataset is a database URL", DATA_STEPS, nullable=True),
    _p("target", "str", None, "column to predict (None: dataset preset; empty for clustering)", DATA_STEPS, nullable=True),
    _p("problem_type", "str", None, "auto, classification, regression or clustering (None: dataset preset)", DATA_STEPS, nullable=True, choices=PROBLEM_TYPES),
    _p("id_column", "str", None, "identifier column: row key, never a feature (None: dataset preset)", DATA_STEPS, nullable=True),
    _p("group_column", "str", None, "rows of one group stay on one side of the split (None: dataset preset)", DATA_STEPS, nullable=True),
    _p("time_column", "str", None, "time column: gives a time-ordered split (None: dataset preset)", DATA_STEPS, nullable=True),
    _p("sensitive_columns", "list", None, "columns for per-group evaluation, never features (None: dataset preset)", DATA_STEPS, nullable=True),
    _p("keep_columns", "list", [], "columns known at prediction time: never set aside as leakage suspects", DATA_STEPS),
    _p("teaching_faults", "list", [], "faults injected as the data is loaded, for teaching (marked as injected): leak, duplicates, spelling, missing, numbers_as_text, constant, identifier, imbalance, outliers", DATA_STEPS),
    _p("test_size", "float", 0.2, "share of rows held out for the final evaluation", DATA_STEPS, minimum=0.0, maximum=1.0, exclusive=True),
    _p("max_memory", "str", None, "memory the table may take in pandas, e.g. 0.5GB (None: half the machine's memory, resolved once); larger CSV/Parquet sources are read by DuckDB", DATA_STEPS, nullable=True),
    _p("data_engine", "str", None, "pandas (in memory) or duckdb (larger than memory: profiled whole, sampled for modelling); None: from max_memory, resolved once", DATA_STEPS, nullable=True, choices=("pandas", "duckdb")),
    _p("feasibility_rows", "int", 20000, "training rows (stratified sample) for step 1's baselines and the leakage and bias models", DATA_STEPS, minimum=500),
]

# --- step 1: vision and measurable goals --------------------------------------------
_STEP1 = [
    _p("project_name", "str", "churn-demo", "short name of the project (used in run folder names)", (S1,)),
    _p("problem_statement", "str", None, "one sentence: what decision the model supports (None: dataset preset)", (S1,), nullable=True),
    _p("positive_label", "str", None, "binary: the class precision/recall refer to (None: preset or minority class)", (S1,), nullable=True),
    _p("kpis", "dict", None, "KPI thresholds {metric: threshold} (None: dataset preset)", (S1,), nullable=True),
    _p("kpi_average", "str", "macro", "multi-class averaging for precision/recall/f1", (S1,), choices=("macro", "weighted", "micro")),
]

# --- step 2: data foundation ----------------------------------------------------------
_STEP2 = [
    _p("impute_strategy", "str", "median", "numeric imputation: mean, median or most_frequent", (S2,), choices=("mean", "median", "most_frequent")),
    _p("scaler", "str", "standard", "numeric scaling: standard, robust, minmax or none", (S2,), choices=("standard", "robust", "minmax", "none")),
    _p("rare_category_share", "float", 0.01, "categories rarer than this share are grouped as infrequent", (S2,), minimum=0.0, maximum=0.5),
]

# --- step 3: tools and stack ------------------------------------------------------------
_STEP3 = [
    _p("time_budget_s", "float", 420.0, "wall time for the whole run (s): step 3 plans the unset sample sizes of steps 4-5 from it (None: no plan)", (S3,), nullable=True, minimum=0.0, exclusive=True),
    _p("scaling_budget_s", "float", 10.0, "time budget for the fit-time scaling measurements (seconds; idle cores measure side by side)", (S3,), minimum=0.0, exclusive=True),
    _p("growth_factor", "float", 10.0, "expected data growth to plan for (x current rows)", (S3,), minimum=1.0),
]

# --- step 4: model development ------------------------------------------------------------
# (step 3 takes the first four too: it predicts step 4's duration from them)
_STEP4 = [
    _p("cv_folds", "int", 5, "cross-validation folds (step 4 uses at most 3 on samples of 50,000 rows or more)", (S3, S4), minimum=2, maximum=20),
    _p("tuning_strategy", "str", "random", "hyperparameter search: grid, random or halving", (S3, S4), choices=("grid", "random", "halving")),
    _p("tuning_iterations", "int", 8, "candidate configurations per tuned family (decides the search)", (S3, S4), minimum=1),
    _p("tuning_budget_s", "float", 120.0, "cap that stops an overlong search with a warning (seconds)", (S3, S4), minimum=0.0, exclusive=True),
    _p("compute", "str", "local", "where the fits of steps 3-4 run: local, dask (a cluster on this machine's cores) or tcp://host:8786 (a Dask scheduler)", (S3, S4)),
    _p("n_jobs", "int", None, "parallel jobs for scikit-learn (None: every core when step 3 measures long fits, else 1; -1: all cores)", (S3, S4), nullable=True),
    _p("selection_rows", "int", None, "largest training sample for the leaderboard, tuning and threshold (None: step 3's plan)", (S3, S4), nullable=True, minimum=100),
    _p("refit_rows", "int", None, "training rows the champion is refitted on (None: step 3's plan; every row without one)", (S3, S4), nullable=True, minimum=100),
    _p("sample_gain", "float", 0.002, "grow the selection sample 4x only while that adds at least this to the selection metric", (S4,), minimum=0.0),
]

# --- step 5: deployment and monitoring -------------------------------------------------------
_STEP5 = [
    _p("monitor_data", "str", None, "new production data to monitor: CSV/Parquet, or the --log-dir of `playbook serve` (None: simulate batches)", (S5,), nullable=True),
    _p("n_batches", "int", 6, "simulated production batches", (S5,), minimum=1, maximum=100),
    _p("drift_magnitude", "float", 1.0, "strength of the simulated drift (0: none)", (S5,), minimum=0.0),
    _p("retrain_after_breaches", "int", 2, "retrain after this many consecutive KPI breaches", (S5,), minimum=1),
    _p("drift_threshold", "float", 0.25, "PSI above which drift on an important feature triggers retraining", (S5,), minimum=0.0, exclusive=True),
    _p("promotion_margin", "float", 0.01, "a challenger must beat the champion by this margin", (S5,), minimum=0.0),
]

# --- the runner, after the steps (no notebook takes them) ----------------------------------------
TRACKING_LOCAL, TRACKING_OFF, TRACKING_URI = "local", "off", "uri"
TRACKING_SCHEMES = ("http", "https", "sqlite", "file", "postgresql", "mysql", "mssql", "databricks")
_RUNNER = [
    _p("tracking", "str", TRACKING_LOCAL, "log the finished run to MLflow: local (SQLite store runs/mlflow.db in the runs folder), off, or a tracking server URI (http://host:5000)", ()),
]

REGISTRY: dict[str, Param] = {p.name: p for p in _COMMON + _DATA + _STEP1 + _STEP2 + _STEP3 + _STEP4 + _STEP5 + _RUNNER}

# Parameters whose None means "take it from the dataset preset".
PRESET_KEYS = ("target", "problem_type", "id_column", "group_column", "time_column",
               "sensitive_columns", "problem_statement", "positive_label", "kpis")


def params_for_step(step: str) -> list[Param]:
    """The parameters one notebook declares, in registry order."""
    if step not in STEP_NOTEBOOKS:
        raise PlaybookError(f"Unknown step {step!r}.", f"use one of {', '.join(STEP_NOTEBOOKS)}.")
    return [p for p in REGISTRY.values() if step in p.steps]


def parameters_cell_source(step: str) -> str:
    """The exact source of a step notebook's ``parameters`` cell."""
    lines = ["from typing import Optional  # the annotations below use it", ""]
    lines += [p.code_line() for p in params_for_step(step)]
    return "\n".join(lines)


# --- conversion and validation -----------------------------------------------------------

_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}


def check_name(name: str) -> Param:
    """Return the parameter called ``name`` or raise a clear error.

    Names are checked before anything is injected: papermill writes them into code verbatim.
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise PlaybookError(f"{name!r} is not a valid parameter name.",
                            "parameter names are Python identifiers; see `playbook params`.")
    if name not in REGISTRY:
        close = [n for n in REGISTRY if n.startswith(name[:3])][:3]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise PlaybookError(f"Unknown parameter {name!r}{hint}.",
                            "see `playbook params` for the parameters each step takes.")
    return REGISTRY[name]


def convert(name: str, value: Any, *, from_text: bool = False) -> Any:
    """Convert ``value`` to the declared type of parameter ``name``.

    ``from_text=True`` for command-line strings (``-p NAME VALUE``), which are parsed
    with YAML safe loading for lists and dicts.
    """
    p = check_name(name)
    bad = f"Parameter {name!r} expects {p.annotation}, got {value!r}."
    if value is None or (from_text and isinstance(value, str) and value.strip() in {"None", "null", "~"}):
        if p.nullable:
            return None
        raise PlaybookError(f"Parameter {name!r} cannot be empty (None).", f"give a {p.type} value.")
    if from_text and isinstance(value, str) and p.type in ("dict", "list"):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise PlaybookError(f"Parameter {name!r}: cannot parse {value!r} as YAML ({exc.problem}).",
                                f"write it as YAML, e.g. {_example(p)}.") from None
    converted = _convert_type(p, value, bad)
    _check_bounds(p, converted)
    return converted


def _example(p: Param) -> str:
    return "'{recall: 0.7, precision: 0.5}'" if p.type == "dict" else "'[gender, region]'"


def _convert_type(p: Param, value: Any, bad: str) -> Any:
    fix = f"give a {p.type} value (see `playbook params`)."
    if p.type == "str":
        if isinstance(value, bool) or isinstance(value, (list, dict)):
            raise PlaybookError(bad, fix)
        return str(value)
    if p.type == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise PlaybookError(bad, "use true or false.")
    if p.type == "int":
        if isinstance(value, bool):
            raise PlaybookError(bad, fix)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise PlaybookError(bad, "give a whole number.")
    if p.type == "float":
        if isinstance(value, bool):
            raise PlaybookError(bad, fix)
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise PlaybookError(bad, "give a number.") from None
        if not math.isfinite(result):
            raise PlaybookError(bad, "give a finite number.")
        return result
    if p.type == "dict":
        if not isinstance(value, Mapping):
            raise PlaybookError(bad, f"write it as a mapping, e.g. {_example(p)}.")
        return {str(k): v for k, v in value.items()}
    if p.type == "list":
        if isinstance(value, str):
            return [value]
        if not isinstance(value, (list, tuple)):
            raise PlaybookError(bad, f"write it as a list, e.g. {_example(p)}.")
        return [str(v) for v in value]
    raise AssertionError(f"unknown registry type {p.type}")


def _check_bounds(p: Param, value: Any) -> None:
    if p.choices is not None and value not in p.choices:
        raise PlaybookError(f"Parameter {p.name!r} is {value!r}, which is not one of {', '.join(map(str, p.choices))}.",
                            f"set {p.name} to one of those.")
    if p.type not in ("int", "float"):
        return
    lo, hi = p.minimum, p.maximum
    if lo is not None and (value < lo or (p.exclusive and value == lo)):
        raise PlaybookError(f"Parameter {p.name!r} is {value}, but it must be {'>' if p.exclusive else '>='} {lo}.",
                            f"choose a value in the allowed range ({_range_text(p)}).")
    if hi is not None and (value > hi or (p.exclusive and value == hi)):
        raise PlaybookError(f"Parameter {p.name!r} is {value}, but it must be {'<' if p.exclusive else '<='} {hi}.",
                            f"choose a value in the allowed range ({_range_text(p)}).")


def _range_text(p: Param) -> str:
    lo = "" if p.minimum is None else f"{p.minimum} {'<' if p.exclusive else '<='} "
    hi = "" if p.maximum is None else f" {'<' if p.exclusive else '<='} {p.maximum}"
    return f"{lo}{p.name}{hi}"


def defaults() -> dict[str, Any]:
    return {name: p.default for name, p in REGISTRY.items()}


def load_project_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``project.yaml`` (safe YAML only) into raw parameter values."""
    path = Path(path)
    if not path.is_file():
        raise PlaybookError(f"Project file {str(path)!r} does not exist.", "check the path given to -f.")
    return parse_yaml_mapping(path.read_text(encoding="utf-8"), where=f"project file {path}")


def parse_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PlaybookError(f"Malformed YAML in {where}{at}: {getattr(exc, 'problem', exc)}.",
                            "fix the YAML syntax (indentation, colons, quotes).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PlaybookError(f"{where} must be a mapping of parameter: value, got {type(data).__name__}.",
                            "write one `name: value` per line.")
    return data


def merge(*layers: Mapping[str, Any], text_layer: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Merge parameter layers over the registry defaults and resolve the dataset preset.

    Order: defaults < dataset preset < each of ``layers`` in turn < ``text_layer``
    (command-line ``-p`` strings). Every name and value is checked.
    """
    values = defaults()
    for layer in layers:
        for name, value in layer.items():
            values[name] = convert(name, value)
    for name, value in (text_layer or {}).items():
        values[name] = convert(name, value, from_text=True)
    values = resolve_preset(values)
    check_consistency(values)
    return values


def resolve_preset(values: dict[str, Any]) -> dict[str, Any]:
    """Fill preset-backed parameters that are ``None`` from the dataset's preset."""
    from helpers.core.datasets import (
        preset_for,  # local: datasets imports pandas, which `playbook params` does not need
    )

    preset = preset_for(values.get("dataset") or "")
    out = dict(values)
    for key in PRESET_KEYS:
        if key in out and out[key] is None and key in preset:
            out[key] = preset[key]
    if "problem_type" in out and out["problem_type"] is None:
        out["problem_type"] = "auto"
    return out


def check_consistency(values: Mapping[str, Any]) -> None:
    """Checks across parameters that need no data (run before any kernel starts)."""
    from helpers.core.kpis import (
        validate_kpis,  # local: kpis imports scipy and scikit-learn; `playbook params` needs neither
    )

    ptype = values.get("problem_type")
    target = values.get("target")
    if ptype in ("classification", "regression") and not target:
        raise PlaybookError(f"problem_type is {ptype!r} but no target column is set.",
                            "set target to the column to predict (or problem_type: clustering).")
    if ptype == "clustering" and target:
        raise PlaybookError(f"problem_type is 'clustering' but target is {target!r}.",
                            "clustering has no target: leave target empty, or choose classification/regression.")
    if values.get("kpis") is not None:
        validate_kpis(values["kpis"], ptype if ptype != "auto" else None)
    compute.parse(values.get("compute"))
    tracking_setting(values.get("tracking"))
    if values.get("max_memory") is not None:
        parse_bytes(values["max_memory"])
    if values.get("teaching_faults"):
        from helpers.core import (
            faults,  # local: faults imports pandas, which `playbook params` does not need
        )

        faults.check_applicable(values["teaching_faults"], ptype, target)
        faults.check_engine(values["teaching_faults"], values.get("data_engine"))


def tracking_setting(value: str | None) -> tuple[str, str | None]:
    """``tracking`` -> (local | off | uri, the URI or None); anything else is a clear error."""
    text = (value or TRACKING_LOCAL).strip()
    if text in (TRACKING_LOCAL, TRACKING_OFF):
        return text, None
    scheme = text.split("://", 1)[0].split("+", 1)[0] if "://" in text else text
    if scheme in TRACKING_SCHEMES:
        return TRACKING_URI, text
    raise PlaybookError(f"tracking is {value!r}: neither 'local', 'off' nor an MLflow tracking URI.",
                        "use -p tracking local (runs/mlflow.db), -p tracking off, or the URI of a tracking "
                        "server, e.g. -p tracking http://mlflow.example:5000.")


# --- inside a notebook --------------------------------------------------------------------------


class Params(dict):
    """Validated parameter values of one step; attribute access for short notebook code."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def validate_step(step: str, namespace: Mapping[str, Any]) -> Params:
    """Validate the parameters a notebook holds (defaults or injected) and resolve presets.

    Called in the cell right after the ``parameters`` cell: papermill only warns about
    bad values, this turns them into one clear ``PlaybookError``.
    """
    declared = params_for_step(step)
    values = {}
    for p in declared:
        if p.name not in namespace:
            raise PlaybookError(f"The parameters cell of {step} does not define {p.name!r}.",
                                "restore the notebook's parameters cell (see `playbook params`).")
        values[p.name] = convert(p.name, namespace[p.name])
    values = resolve_preset(values)
    check_consistency(values)
    return Params(values)


def describe(step: str | None = None) -> list[dict[str, Any]]:
    """Rows for ``playbook params``: name, type, default, help, steps."""
    rows = []
    for p in REGISTRY.values():
        if step and step not in p.steps:
            continue
        rows.append({"name": p.name, "type": p.annotation, "default": p.default, "help": p.help,
                     "steps": ",".join(s[:2] for s in p.steps) or "runner"})
    return rows


def project_yaml_text() -> str:
    """``templates/project.yaml``: every parameter with its help, type, default and steps."""
    lines = ["# ML Project Playbook: project parameters.",
             "# Values left at null come from the dataset's preset (built-ins) or are inferred.",
             "# Run with: playbook run -f project.yaml   (list them with: playbook params)", ""]
    for p in REGISTRY.values():
        if p.name in ("run_dir", "interactive"):
            continue  # set by the runner, not by a project
        steps = ", ".join(s[:2] for s in p.steps) or "none: the runner, after the steps"
        lines.append(f"# {p.help} [{p.annotation}; steps {steps}]")
        lines.append(yaml.safe_dump({p.name: p.default}, sort_keys=False).strip())
        lines.append("")
    return "\n".join(lines)
