"""Benchmark of `playbook serve`: latency, throughput, errors and time per stage, and a reload under load.

    python benchmarks/bench_serve.py RUN_DIR [--requests 10000] [--seconds 120] [--repeats 3]

RUN_DIR is a finished demo run (steps 1-5). The script starts the service on a free loopback port
(the tests' `serving.running_service`), then drives it with concurrent clients, each a thread with
one keep-alive `http.client` connection (bounded in count and time), on held-out rows of the run:

- one client, single-row requests (target p50 <= 20 ms);
- 8 clients, single-row requests (>= 100 requests/s, p99 <= 250 ms; 0 errors in ``--requests``);
- 2 clients, 1,000-row requests (>= 20,000 rows/s);
- 8 clients while the model is reloaded 5 times (0 failed requests).

Medians of ``--repeats`` runs (the long 8-client run once).

``--against OTHER_CHECKOUT [--against-python PYTHON]`` is an A/B on a shared machine: the service of another
checkout (e.g. main's commit, with its own environment's Python) runs beside this one, and the two are driven
in turn, ``--repeats`` rounds of the three short scenarios (the order flipped each round), so that both see the
same load from other work; it prints the medians of each side and their ratio. Stage times (parse, queue: waiting for the
batcher, validate, convert, predict, respond) are the service's own ``Server-Timing`` figures; requests
answered together in one batch each report the batch's stage times. The clients run on the same
cores as the service: on 2 cores they take a share of the CPU the service would have.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from serving import free_port, running_service, serve_command  # noqa: E402 - the service the tests start

from helpers.core.artifacts import Run  # noqa: E402
from helpers.steps.operations import deployment  # noqa: E402

STAGES = ("parse", "queue", "validate", "convert", "predict", "respond")


def drive(port: int, bodies: list[bytes], *, clients: int, requests: int, seconds: float,
          during=None) -> dict[str, float]:
    """``clients`` threads send ``bodies`` in turn until ``requests`` are sent or ``seconds`` pass."""
    latencies, stages, errors, lock = [], [], [], threading.Lock()
    sent = iter(range(requests))
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                i = next(sent, None)
            if i is None:
                break
            body = bodies[(i + k) % len(bodies)]
            started = time.perf_counter()
            try:
                conn.request("POST", "/predict", body, {"content-type": "application/json"})
                response = conn.getresponse()
                response.read()
                error = None if response.status == 200 else f"status {response.status}"
                timing = response.getheader("server-timing") or ""
            except (OSError, http.client.HTTPException) as exc:
                error, timing = repr(exc), ""
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if error:
                    errors.append(error)
                if timing:
                    stages.append({p.split(";dur=")[0].strip(): float(p.split(";dur=")[1])
                                   for p in timing.split(",") if ";dur=" in p})
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    if during is not None:
        during()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    result = {"requests": len(latencies), "errors": len(errors), "req_s": len(latencies) / wall,
              "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
              "p99": float(np.percentile(ms, 99)), "first_error": errors[0] if errors else ""}
    result.update({s: statistics.median(x.get(s, 0.0) for x in stages) for s in STAGES} if stages else {})
    return result


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = dict.fromkeys(k for r in runs for k in r if k != "first_error")
    out = {k: statistics.median(r.get(k, float("nan")) for r in runs) for k in keys}
    return {**out, "first_error": next((r["first_error"] for r in runs if r.get("first_error")), "")}


def reload_during(port: int, targets: list[str], times: int = 5, pause: float = 0.8):
    """A function that reloads the service ``times`` times (alternating ``targets``) and counts failed reloads."""
    failed = []

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for i in range(times):
            time.sleep(pause)
            conn.request("POST", "/reload", json.dumps({"target": targets[i % len(targets)]}),
                         {"content-type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failed.append(response.status)
        conn.close()

    return run, failed


SHORT = {"1 client, 1 row": (1, 150), "8 clients, 1 row": (8, 600), "2 clients, 1,000 rows": (2, 16)}


def compare(package: Path, single: list[bytes], thousand: list[bytes], against: Path, python: str, *,
            repeats: int, seconds: float) -> None:
    """The A/B of ``--against``: this checkout's service and the other's, driven in turn on the same rows."""
    sides = {"this": (serve_command(package, free_port()), ROOT),
             "other": ([python, *serve_command(package, free_port())[1:]], against)}
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        ports = {}
        for side, (command, cwd) in sides.items():
            port = int(command[command.index("--port") + 1])
            stack.enter_context(running_service(command, port, cwd=cwd))
            drive(port, single, clients=1, requests=50, seconds=10)  # warm up
            ports[side] = port
        for k in range(repeats):
            for side in (("this", "other") if k % 2 == 0 else ("other", "this")):
                for name, (clients, requests) in SHORT.items():
                    bodies = thousand if "1,000" in name else single
                    runs.setdefault((side, name), []).append(
                        drive(ports[side], bodies, clients=clients, requests=requests, seconds=seconds))
    print(f"A/B, medians of {repeats} alternating rounds: this = {ROOT}, other = {against} ({python})")
    print(f"{'scenario':<24} {'side':<6} {'req/s':>8} {'rows/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for name in SHORT:
        for side in ("other", "this"):
            r = median_of(runs[(side, name)])
            rows = r["req_s"] * (1000 if "1,000" in name else 1)
            print(f"{name:<24} {side:<6} {r['req_s']:>8.1f} {rows:>8.0f} {r['p50']:>7.1f} {r['p95']:>7.1f} "
                  f"{r['p99']:>7.1f} {r['errors']:>6.0f}")
        this, other = median_of(runs[("this", name)]), median_of(runs[("other", name)])
        print(f"{'':<24} {'ratio':<6} {this['req_s'] / other['req_s']:>8.2f} {'':>8} {this['p50'] / other['p50']:>7.2f} "
              f"{this['p95'] / other['p95']:>7.2f} {this['p99'] / other['p99']:>7.2f}   (this / other)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--requests", type=int, default=10_000, help="requests of the long 8-client run")
    parser.add_argument("--seconds", type=float, default=120, help="time cap of each run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--against", type=Path, help="A/B: another checkout of the playbook to compare with")
    parser.add_argument("--against-python", default=sys.executable, help="the Python of --against's environment")
    args = parser.parse_args(argv)
    run = Run(args.run_dir)
    package = deployment.champion_dir(run)
    test = pd.read_parquet(run.artifacts / "02_data_foundation" / "test.parquet")
    test = test.drop(columns=[c for c in ("churn", "target") if c in test.columns])
    single = [test.iloc[[i]].to_json(orient="records").encode() for i in range(min(len(test), 500))]
    big = pd.concat([test] * (3000 // len(test) + 1), ignore_index=True)
    thousand = [big.iloc[i * 1000:(i + 1) * 1000].to_json(orient="records").encode() for i in range(3)]
    if args.against:
        compare(package, single, thousand, args.against.resolve(), args.against_python, repeats=args.repeats,
                seconds=args.seconds)
        return 0
    port = free_port()
    started = time.perf_counter()
    with running_service(serve_command(package, port), port):
        print(f"service up in {time.perf_counter() - started:.2f} s (start, imports, package load); "
              f"package {package}")
        drive(port, single, clients=1, requests=50, seconds=10)  # warm up
        rows = {"1 client, 1 row": median_of([drive(port, single, clients=1, requests=300, seconds=args.seconds)
                                             for _ in range(args.repeats)]),
                "8 clients, 1 row": median_of([drive(port, single, clients=8, requests=1000, seconds=args.seconds)
                                              for _ in range(args.repeats)]),
                "2 clients, 1,000 rows": median_of([drive(port, thousand, clients=2, requests=40,
                                                          seconds=args.seconds) for _ in range(args.repeats)])}
        rows["2 clients, 1,000 rows"]["rows_s"] = rows["2 clients, 1,000 rows"]["req_s"] * 1000
        rows[f"8 clients, 1 row, {args.requests:,} requests"] = drive(port, single, clients=8,
                                                                    requests=args.requests, seconds=args.seconds)
        reloads, failed = reload_during(port, [str(package), str(package)])
        rows["8 clients, 1 row, 5 reloads"] = drive(port, single, clients=8, requests=100_000, seconds=6,
                                                    during=reloads)
        rows["8 clients, 1 row, 5 reloads"]["failed_reloads"] = len(failed)
    print("machine shared with other work: figures are medians of "
          f"{args.repeats} runs (the long and the reload runs once)")
    head = f"{'scenario':<34} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
    print(head + "".join(f" {s:>8}" for s in STAGES) + "  (stage medians in ms)")
    for name, r in rows.items():
        line = (f"{name:<34} {r['requests']:>8.0f} {r['errors']:>6.0f} {r['req_s']:>8.1f} {r['p50']:>7.1f} "
                f"{r['p95']:>7.1f} {r['p99']:>7.1f}")
        print(line + "".join(f" {r.get(s, float('nan')):>8.2f}" for s in STAGES))
    for name, r in rows.items():
        if r.get("first_error"):
            print(f"{name}: first error {r['first_error']}")
    print(f"1,000-row requests: {rows['2 clients, 1,000 rows']['rows_s']:,.0f} rows/s (target >= 20,000); "
          f"failed reloads: {rows['8 clients, 1 row, 5 reloads']['failed_reloads']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
