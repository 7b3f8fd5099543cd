"""The run's plan: sample sizes, parallel jobs and refit rows, from ``time_budget_s`` and step 3's measured costs.

Steps 1 and 2 run before anything is measured, so they work on fixed caps (``feasibility_rows``).
Step 3 turns the budget left after it, with each family's ``CostModel``, into explicit
parameters of step 4 (``selection_rows``, ``refit_rows`` per family, ``n_jobs``); they are
written to the manifest and to the run's ``project.yaml`` (``Run.pin_parameters``), so
re-running that file sets them and nothing is re-planned: the same samples, the same results
on any machine. A parameter the user set is never planned over.

Precedence (README "Scale and budgets"): an explicit ``selection_rows`` / ``refit_rows`` /
``n_jobs`` wins; else step 3's plan from ``time_budget_s``; else the fixed defaults below.
``scaling_budget_s`` is step 3's own measuring time (part of the run's budget); ``tuning_budget_s``
only stops an overlong search (a warning: a stopped search is not reproducible); ``--timeout``
kills a cell that runs too long (a failure, never a plan).

Step 4 grows its selection sample along ``rungs`` (4x apart, up to ``selection_rows``) only while
4x more rows add at least ``sample_gain`` to the selection metric: a decision on scores, not on
clocks, so it is reproducible too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from helpers.core.families import get_family
from helpers.core.scaling import CostModel
from helpers.core.workload import IMPORTANCE_REPEATS, modeling_parts

RUNG_FACTOR = 4  # each rung has 4x the rows of the one before
FIRST_RUNG_ROWS = 2_000  # below this a cross-validated score is too noisy to tell families apart
MIN_SELECTION_ROWS = 20_000  # a spent budget never shrinks the selection below this (step 1's cap too)
DEFAULT_SELECTION_ROWS = 50_000  # without a plan (no step 3 costs, or time_budget_s None)
IMPORTANCE_ROWS = 20_000  # test rows permutation importance is computed on (a seeded sample)
MIN_PARALLEL_WORK_S = 10.0  # below this much single-core work, worker start-up (~2 s) eats the gain
PROJECTED_WORKERS = (1, 2, 4, 8, 16)  # cluster sizes step 3 projects step 4's time for
PARALLEL_EFFICIENCY = 0.8  # measured: 2 loky workers finish a cross-validation in ~0.6 of 1 worker's time
STEP4_FIXED_S = 8.0  # figures, tables, the model file and the bootstrap intervals (measured on the demo)
LATER_STEPS_RESERVE_S = 45.0  # step 5 (works on capped samples) and the report: bench_scale's largest figure
REFIT_SHARE = 0.35  # of step 4's budget, the most the final refit may take
MEMORY_SHARE = 0.5  # of the available memory, the most the final refit may use


def rungs(n_rows: int, cap: int | None) -> list[int]:
    """Ascending sample sizes of step 4's selection: ``min(n_rows, cap)`` and 4x steps below it.

    Sizes under ``FIRST_RUNG_ROWS`` are not rungs, so a small table (the demo) is one rung: all rows.
    """
    top = n_rows if cap is None else max(1, min(n_rows, int(cap)))
    sizes = [top]
    while sizes[-1] // RUNG_FACTOR >= FIRST_RUNG_ROWS:
        sizes.append(sizes[-1] // RUNG_FACTOR)
    return sizes[::-1]


def resolve_n_jobs(n_jobs: int | None, work_s: float | None, cores: int) -> int:
    """``n_jobs`` as set, or (None) every core when the planned single-core work is long enough to gain."""
    if n_jobs is not None:
        return n_jobs
    if work_s is None or cores <= 1:
        return 1
    return cores if work_s >= MIN_PARALLEL_WORK_S else 1


def speedup(n_jobs: int, cores: int) -> float:
    """How many times faster parallel cross-validation runs than one worker (never below 1)."""
    workers = cores if n_jobs < 0 else min(max(n_jobs, 1), cores)
    return max(1.0, workers * PARALLEL_EFFICIENCY)


@dataclass
class Plan:
    """What step 3 planned for step 4 (all explicit values), how long each part should take, and why."""

    time_budget_s: float | None
    parameters: dict[str, Any]  # selection_rows, n_jobs: the values step 4 runs with
    refit_rows: dict[str, int]  # per deployable family: step 4 pins the champion's
    planned_s: dict[str, float] = field(default_factory=dict)  # step -> planned wall seconds
    notes: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)  # which parameters the plan chose (the rest were set)
    # step 4's wall seconds with its selection on that many one-core workers (a Dask cluster's, or this machine's)
    workers_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        return cls(d.get("time_budget_s"), dict(d.get("parameters", {})),
                   {k: int(v) for k, v in (d.get("refit_rows") or {}).items()},
                   dict(d.get("planned_s", {})), list(d.get("notes", [])), list(d.get("planned", [])),
                   dict(d.get("workers_s", {})))


def selection_cost_s(costs: Mapping[str, CostModel], *, problem_type: str, rows: int, folds: int, iterations: int,
                     strategy: str, tuning_budget_s: float, binary: bool, n_features: int) -> float:
    """Single-core seconds of step 4's selection if its sample grows to ``rows``: every rung's
    leaderboard, then tuning and threshold of the costliest deployable family at the top rung."""
    deployable = [n for n in costs if get_family(problem_type, n).deployable]
    common = dict(problem_type=problem_type, n_test=0, n_features=n_features, folds=folds, iterations=iterations,
                  strategy=strategy, tuning_budget_s=tuning_budget_s, explored=[], binary=binary)
    parts = [modeling_parts(costs, n_train=rows, tuned=name, rungs=rungs(rows, rows), **common) for name in deployable]
    return parts[0]["leaderboard"] + max(p["tuning"] + p["threshold"] for p in parts)


def refit_cost_s(cost: CostModel, rows: int, n_test: int, n_features: int) -> float:
    """Single-core seconds of the final refit, the scoring of the whole test side and permutation importance."""
    sample = min(n_test, IMPORTANCE_ROWS)
    return cost.fit_s(rows) + cost.score_s(rows, n_test) + (n_features * IMPORTANCE_REPEATS + 1) * cost.score_s(rows, sample)


def ladder(n_rows: int, smallest: int = FIRST_RUNG_ROWS) -> list[int]:
    """Candidate sizes, largest first: all rows, then halvings down to ``smallest``."""
    sizes = [n_rows]
    while sizes[-1] // 2 >= smallest:
        sizes.append(sizes[-1] // 2)
    return sizes


def make_plan(costs: Mapping[str, CostModel], *, problem_type: str, n_train: int, n_test: int, n_features: int,
              folds: int, iterations: int, strategy: str, tuning_budget_s: float, binary: bool,
              time_budget_s: float | None, elapsed_s: float, cores: int, available_bytes: float | None,
              memory_bytes: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None) -> Plan:
    """Step 4's sample sizes and jobs from the budget left after ``elapsed_s`` (steps 1-3 so far).

    ``fixed`` holds the parameters the user set (``selection_rows``, ``refit_rows``, ``n_jobs``):
    they are kept as they are. ``memory_bytes`` maps a family to a function rows -> peak bytes
    of one fit (step 3's memory law). Without a budget the fixed defaults apply.
    """
    fixed = {k: v for k, v in (fixed or {}).items() if v is not None}
    notes: list[str] = []
    common = dict(problem_type=problem_type, folds=folds, iterations=iterations, strategy=strategy,
                  tuning_budget_s=tuning_budget_s, binary=binary, n_features=n_features)
    default_rows = min(n_train, DEFAULT_SELECTION_ROWS)
    work = selection_cost_s(costs, rows=default_rows, **common) if costs else None
    n_jobs = resolve_n_jobs(fixed.get("n_jobs"), work, cores)
    if "n_jobs" not in fixed:
        notes.append(f"n_jobs={n_jobs}: " + (f"step 4's selection is about {work:.0f} s of single-core work, "
                                            f"{'enough' if n_jobs > 1 else 'too little'} to gain from {cores} cores"
                                            if work is not None else "no measured costs"))
    deployable = [n for n in costs if get_family(problem_type, n).deployable]
    if time_budget_s is None or not costs:
        selection = fixed.get("selection_rows", default_rows)
        refit = {n: int(fixed.get("refit_rows", n_train)) for n in deployable}
        notes.append("no time budget: " if time_budget_s is None else "no measured costs: ")
        notes[-1] += f"selection on at most {selection:,} rows, the champion refitted on every training row"
        return Plan(time_budget_s, {"selection_rows": int(selection), "n_jobs": n_jobs}, refit, {}, notes,
                    [k for k in ("selection_rows", "n_jobs") if k not in fixed])
    gain = speedup(n_jobs, cores)
    left = time_budget_s - elapsed_s - LATER_STEPS_RESERVE_S
    step4 = max(left, 0.0)
    refit_budget = REFIT_SHARE * step4
    refit: dict[str, int] = {}
    memory_cap: dict[str, int] = {}
    for name in deployable:
        if "refit_rows" in fixed:
            refit[name] = min(int(fixed["refit_rows"]), n_train)
            continue
        memory = (memory_bytes or {}).get(name)
        in_memory = [r for r in ladder(n_train)
                     if memory is None or available_bytes is None or memory(r) <= MEMORY_SHARE * available_bytes]
        memory_cap[name] = in_memory[0] if in_memory else min(n_train, FIRST_RUNG_ROWS)
        fits = [r for r in in_memory if refit_cost_s(costs[name], r, n_test, n_features) <= refit_budget]
        refit[name] = fits[0] if fits else min(n_train, MIN_SELECTION_ROWS, memory_cap[name])
    worst_refit = max((refit_cost_s(costs[n], refit[n], n_test, n_features) for n in deployable), default=0.0)
    selection_budget = max(step4 - STEP4_FIXED_S - worst_refit, 0.0) * gain
    if "selection_rows" in fixed:
        selection = int(fixed["selection_rows"])
    else:
        fits = [r for r in ladder(n_train) if selection_cost_s(costs, rows=r, **common) <= selection_budget]
        selection = fits[0] if fits else min(n_train, MIN_SELECTION_ROWS)
        if not fits:
            notes.append(f"selection_rows={selection:,} of {n_train:,}: the budget is spent, so the minimum "
                         f"(raise time_budget_s for more)")
        else:
            notes.append(f"selection_rows={selection:,} of {n_train:,}: the largest sample whose leaderboard, tuning "
                         f"and threshold fit the {selection_budget / gain:.0f} s left for them (of the {time_budget_s:g} s budget)")
    if "refit_rows" not in fixed:  # never refit on fewer rows than selection used: each fold fitted ~that many
        refit = {n: max(r, min(selection, memory_cap[n])) for n, r in refit.items()}
    for name in deployable:
        if refit[name] < n_train and "refit_rows" not in fixed:
            notes.append(f"{name} would be refitted on {refit[name]:,} of {n_train:,} rows: all of them would take "
                         f"longer than {refit_budget:.0f} s or more memory than half of what is free")
    selection_s = selection_cost_s(costs, rows=selection, **common)
    planned = [k for k in ("selection_rows", "n_jobs") if k not in fixed]
    if "refit_rows" not in fixed:
        planned.append("refit_rows")
    return Plan(time_budget_s, {"selection_rows": int(selection), "n_jobs": n_jobs}, refit,
                {"04_model_development": round(step4_seconds(selection_s, worst_refit, gain), 1)}, notes, planned,
                {str(w): round(step4_seconds(selection_s, worst_refit, speedup(w, w)), 1) for w in PROJECTED_WORKERS})


def step4_seconds(selection_s: float, refit_s: float, gain: float) -> float:
    """Wall seconds of step 4: its fixed part, the selection's single-core seconds spread ``gain``-fold, the refit
    (which runs in the step's own process wherever the selection runs)."""
    return STEP4_FIXED_S + selection_s / gain + refit_s


def memory_laws(study: Any, families: Sequence[str]) -> dict[str, Any]:
    """rows -> peak bytes of one fit, per family with a memory law in step 3's study."""
    return {name: (lambda n, name=name: study.memory_bytes(name, n)) for name in families}
