"""Benchmark of the verdicts behind step 5's readiness facts and the saved decision threshold.

    python benchmarks/bench_readiness.py [--cases 8] [--seed 0]   (about 2 minutes on a quiet machine)

A generated corpus with known answers: binary problems with string, integer ({2, 10}, {9, 10}, {0, 1})
and boolean labels, numeric and categorical columns with missing values, raw rows with spelling variants
and numbers stored as text that step 2's fixes repair, a champion from every deployable classifier family
at a random decision threshold, written as a real package. Each case is checked healthy and with faults
injected whose answer is known by construction:

- ``package_loads`` (fresh process): truncated file, corrupted bytes, a pickle, a type off the trusted
  list, no model_meta.json;
- ``single_rows``: preprocessing that uses the batch's own statistics (centre, standardise, rank);
- ``same_code_path``: the package lacks step 2's spelling fixes, its number-from-text fix, one spelling
  that only one held-out row needs, or records a numeric column as categorical.

It prints, per fact, how often a healthy package holds (target 100%) and a fault is caught (target
100%), the median seconds of each check (fresh process target: 2-3 s on a quiet machine), then the
agreement of `playbook predict` with ``model.predict()`` on the loaded file (target 100%) and how often
the cross-validated probabilities are the positive class's (target 100%; the old text order as reference).
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from helpers.core import artifacts, families, kpis, modelio
from helpers.core.cleaning import apply_cleaning
from helpers.core.features import as_model_input, with_model, with_threshold
from helpers.core.prepared import Prepared
from helpers.core.schema import make_schema
from helpers.steps import modeling
from helpers.steps.operations import deployment

LABELS = [("no", "yes"), (10, 2), (2, 10), (9, 10), (0, 1), (False, True), (True, False)]  # (negative, positive)
CLASSIFIERS = [f for f in families.FAMILIES if f.deployable and f.problem_type == "classification"]
SPELLINGS = {"alpha": "alpha", "beta": "beta", "gamma": "gamma"}


def make_case(seed: int, root: Path) -> dict:
    """One problem: raw rows, step 2's hand-over, a thresholded champion written as a package."""
    rng = np.random.default_rng(seed)
    n, n_num = 400, int(rng.integers(2, 5))
    numeric = [f"num{i}" for i in range(n_num)]
    raw = pd.DataFrame({c: rng.normal(0, 1, n) for c in numeric})
    raw["cat0"] = rng.choice(["alpha", "beta", "gamma"], n).astype(object)
    raw["cat1"] = rng.choice(["x", "y"], n).astype(object)
    signal = raw["num0"] + 0.8 * (raw["cat0"] == "alpha") + rng.normal(0, 0.7, n)
    negative, positive = LABELS[seed % len(LABELS)]
    raw["target"] = np.where(signal > np.quantile(signal, 0.65), positive, negative)
    for c in numeric:
        raw.loc[rng.random(n) < 0.06, c] = np.nan
    raw.loc[rng.random(n) < 0.05, "cat1"] = None
    test = np.arange(n) % 4 == 0
    variants = (np.arange(n) % 5 == 1) & (raw["cat0"] != "gamma")  # "Alpha ", "BETA": fixed by step 2's spellings
    raw.loc[variants, "cat0"] = raw.loc[variants, "cat0"].map(lambda v: f"{v.title()} " if len(v) == 5 else v.upper())
    rare = int(np.flatnonzero(test & (raw["cat0"] == "gamma").to_numpy())[0])
    raw.loc[rare, "cat0"] = "GAMMA"  # the one held-out row that needs the "gamma" spelling
    raw["num1"] = raw["num1"].map(lambda v: None if pd.isna(v) else f"{v * 1000:,.3f}").astype(object)  # "1,234.567"
    cleaning = {"spellings": {"cat0": SPELLINGS}, "numeric_text": ["num1"]}
    clean = apply_cleaning(raw, cleaning)  # step 2's fixes, replayed by the package on the raw rows
    prepared = Prepared(clean[~test], clean[test], "target", "classification", numeric, ["cat0", "cat1"],
                        cleaning=cleaning)
    family = CLASSIFIERS[seed % len(CLASSIFIERS)]
    threshold = float(rng.uniform(0.25, 0.75))
    model = with_threshold(with_model(prepared.make_preprocessor(), family.build(seed, 1)), threshold, positive)
    model.fit(prepared.X("train"), prepared.y("train"))
    run = artifacts.open_run(str(root / f"case{seed}"))
    folder = run.models_dir(1)
    folder.mkdir(parents=True)
    modelio.save_model(model, folder / "model.skops")
    meta = {"version": 1, "family": family.name, "features": prepared.features, "numeric": numeric,
            "categorical": ["cat0", "cat1"], "target": "target", "problem_type": "classification",
            "classes": kpis.class_order(raw["target"]), "positive_label": positive, "threshold": threshold,
            "id_column": None, "sensitive_columns": [], "schema_version": 1}
    artifacts.write_json(folder / "model_meta.json", artifacts.to_jsonable(meta))
    run.update_manifest(champion={"version": 1, "path": "models/v1", "family": family.name})
    deployment.write_package(run, schema=make_schema(prepared), cleaning=cleaning)
    return {"seed": seed, "raw": raw, "prepared": prepared, "package": deployment.package_for_run(run),
            "threshold": threshold, "positive": positive, "family": family.name, "root": root}


# --- faults, each known to break its fact -------------------------------------------------------------------


def damage(case: dict, how: str) -> deployment.Package:
    package = case["package"]
    folder = case["root"] / f"case{case['seed']}-{how.replace(' ', '-')}"
    shutil.copytree(package.path, folder)
    model = folder / "model.skops"
    data = model.read_bytes()
    if how == "truncated":
        model.write_bytes(data[: len(data) // 2])
    elif how == "corrupted bytes":
        middle = len(data) // 2
        model.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:])
    elif how == "pickle":
        model.write_bytes(pickle.dumps(package.model))
    elif how == "untrusted type":
        X, y = case["prepared"].X("train"), case["prepared"].y("train")
        sio.dump(with_model(case["prepared"].make_preprocessor(), KNeighborsClassifier(algorithm="ball_tree")).fit(X, y),
                 model)
    elif how == "no model_meta.json":
        (folder / "model_meta.json").unlink()
    return replace(package, path=folder)


def _centre(X):
    return X - X.mean(axis=0)


def _standardise(X):
    return (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-9)


def _rank(X):
    return rankdata(X, axis=0) / len(X)


def batch_dependent(case: dict, how: str) -> deployment.Package:
    fn = {"centre on the batch": _centre, "standardise on the batch": _standardise, "rank within the batch": _rank}[how]
    prepared, family = case["prepared"], families.get_family("classification", case["family"])
    model = Pipeline([("preprocess", prepared.make_preprocessor()), ("batch", FunctionTransformer(fn)),
                      ("model", family.build(case["seed"], 1))]).fit(prepared.X("train"), prepared.y("train"))
    return replace(case["package"], model=model)


def diverging(case: dict, how: str) -> deployment.Package:
    package = case["package"]
    if how == "no spelling fixes":
        return replace(package, cleaning={**package.cleaning, "spellings": {}})
    if how == "no number-from-text fix":
        return replace(package, cleaning={**package.cleaning, "numeric_text": []})
    if how == "one rare spelling lost":
        kept = {k: v for k, v in SPELLINGS.items() if k != "gamma"}
        return replace(package, cleaning={**package.cleaning, "spellings": {"cat0": kept}})
    meta = {**package.meta, "numeric": package.meta["numeric"][1:],
            "categorical": [*package.meta["categorical"], package.meta["numeric"][0]]}
    return replace(package, meta=meta)  # a numeric column recorded as categorical


LOAD_FAULTS = ("truncated", "corrupted bytes", "pickle", "untrusted type", "no model_meta.json")
ROW_FAULTS = ("centre on the batch", "standardise on the batch", "rank within the batch")
CONVERSION_FAULTS = ("no spelling fixes", "no number-from-text fix", "one rare spelling lost", "kind swapped")


def bench_facts(cases: list[dict]) -> None:
    tally = {f: {"healthy": [], "caught": [], "seconds": []} for f in ("package_loads", "single_rows", "same_code_path")}
    worst_noise, inside = 0.0, []
    for case in cases:
        rows = deployment.check_rows(case["prepared"], 20)
        package, prepared, raw = case["package"], case["prepared"], case["raw"]
        fresh = deployment.fresh_process_check(package, rows)
        single = deployment.single_row_check(package, rows)
        same = deployment.training_serving_check(package, prepared, raw)
        worst_noise = max(worst_noise, single["max_abs_diff"], fresh.get("max_abs_diff") or 0.0)
        inside.append(fresh.get("load_predict_s", float("nan")))
        for name, check in (("package_loads", fresh), ("single_rows", single), ("same_code_path", same)):
            tally[name]["healthy"].append(check["holds"])
            tally[name]["seconds"].append(check["seconds"])
            if not check["holds"]:
                print(f"  false alarm, case {case['seed']} ({case['family']}): {check['evidence']}")
        fault = LOAD_FAULTS[case["seed"] % len(LOAD_FAULTS)]  # one damaged copy per case: the fresh process is slow
        broken = deployment.fresh_process_check(damage(case, fault), rows)
        tally["package_loads"]["caught"].append(not broken["holds"])
        tally["package_loads"]["seconds"].append(broken["seconds"])
        for fault in ROW_FAULTS:
            tally["single_rows"]["caught"].append(not deployment.single_row_check(batch_dependent(case, fault), rows)["holds"])
        for fault in CONVERSION_FAULTS:
            check = deployment.training_serving_check(diverging(case, fault), prepared, raw)
            tally["same_code_path"]["caught"].append(not check["holds"])
            if fault == "one rare spelling lost" and check["holds"]:
                print(f"  missed, case {case['seed']}: {fault}")
    print(f"\nReadiness facts on {len(cases)} generated packages ({', '.join(sorted({c['family'] for c in cases}))})")
    print(f"{'fact':<16} {'healthy holds':>14} {'faults caught':>14} {'median s':>9}   target")
    for name, t in tally.items():
        healthy, caught = np.mean(t["healthy"]), np.mean(t["caught"])
        print(f"{name:<16} {healthy:>13.0%} {caught:>10.0%} ({len(t['caught']):>2}) {statistics.median(t['seconds']):>8.2f}"
              f"   100% / 100%{'; < 3 s' if name == 'package_loads' else ''}")
    print(f"largest batch-vs-single / fresh-vs-here difference on healthy packages: {worst_noise:.1g} "
          f"(tolerance {deployment.CHECK_ATOL:g})")
    floor = statistics.median(_seconds([sys.executable, "-c", "import pandas, skops.io"]) for _ in range(3))
    print(f"fresh process: load + predict inside it {statistics.median(inside):.2f} s (median); "
          f"`python -c 'import pandas, skops.io'` alone {floor:.2f} s (median of 3): the floor of any fresh process")


def _seconds(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - started


def bench_decisions(cases: list[dict], tmp: Path) -> None:
    """`playbook predict` against model.predict() on the loaded file; earlier packages against their meta threshold."""
    agree = total = moved = legacy_agree = 0
    for case in cases:
        package, prepared = case["package"], case["prepared"]
        new = prepared.test.drop(columns="target")
        src, dst = tmp / f"new{case['seed']}.csv", tmp / f"pred{case['seed']}.csv"
        new.to_csv(src, index=False)
        deployment.predict_file(package, src, dst, chunk_size=37, overwrite=True)
        served = pd.read_csv(dst)["prediction"].astype(str).to_numpy()
        loaded = modelio.load_model(package.path / "model.skops")
        X = as_model_input(pd.read_csv(src), package.meta["numeric"], package.meta["categorical"])
        decided = loaded.predict(X).astype(str)
        agree, total = agree + int((served == decided).sum()), total + len(decided)
        moved += int((decided != loaded.classes_[loaded.predict_proba(X).argmax(axis=1)].astype(str)).sum())
        plain = replace(package, model=loaded.estimator_)  # an earlier run's package: threshold in model_meta.json
        labels, proba = deployment.predict_arrays(plain, new)
        legacy_agree += int(((np.asarray(labels).astype(str) == str(case["positive"])) == (proba >= case["threshold"])).sum())
    print(f"\nDecisions on {total} held-out rows of {len(cases)} packages (chunked CSV, as `playbook predict`)")
    print(f"playbook predict = model.predict() on the loaded file: {agree / total:.2%} (target 100%); "
          f"rows the threshold moved away from argmax: {moved}")
    print(f"earlier packages (threshold in model_meta.json only) decide at it: {legacy_agree / total:.2%} (target 100%)")


def bench_class_order(cases: list[dict]) -> None:
    """Is the cross-validated probability the positive class's? Known answer: the label the case names positive."""
    right = old_right = 0
    for case in cases:
        prepared = case["prepared"]
        classes = kpis.class_order(prepared.y("train"))
        contract = kpis.KpiContract("classification", {"recall": 0.7}, case["positive"], "macro", classes)
        inputs = modeling.Inputs(prepared, contract, None, seed=case["seed"], folds=3, n_jobs=1)
        pipe = with_model(prepared.make_preprocessor(), families.get_family("classification", "logistic_regression").build(0, 1))
        is_pos = (inputs.y == case["positive"]).to_numpy()
        right += roc_auc_score(is_pos, modeling.cv_positive_proba(inputs, pipe)) > 0.5
        full = cross_val_predict(pipe, inputs.X, inputs.y, cv=modeling.cv_folds(inputs), method="predict_proba")
        by_text = [str(c) for c in sorted(inputs.y.unique(), key=str)]  # the old order, for reference
        old_right += roc_auc_score(is_pos, full[:, by_text.index(str(case["positive"]))]) > 0.5
    print(f"\nPositive-class probabilities on {len(cases)} problems (labels {', '.join(map(str, LABELS))})")
    print(f"estimator's class order: {right}/{len(cases)} right (target 100%); text order (before): "
          f"{old_right}/{len(cases)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-readiness-") as tmp:
        root = Path(tmp)
        cases = [make_case(args.seed + i, root) for i in range(args.cases)]
        bench_facts(cases)
        bench_decisions(cases, root)
        bench_class_order(cases)


if __name__ == "__main__":
    main()
