"""Where the fits of steps 3 and 4 run: this machine, a Dask ``LocalCluster``, or an existing Dask cluster.

``compute`` (a parameter of steps 3 and 4) is ``local`` (joblib's own processes on this machine),
``dask`` (a ``dask.distributed.LocalCluster`` with one single-threaded worker per usable core,
started by the step's kernel: anyone can try the cluster path) or a scheduler address
(``tcp://host:8786``). On a cluster, scikit-learn's model-selection calls (cross-validation,
tuning, learning and validation curves, permutation importance) run on its workers through
joblib's Dask backend (``joblib.parallel_config(backend="dask")``), which sends each large
argument (the training rows) to the workers once per call, not once per task; ours
(``_dask_backend``) sends it to every worker, so a worker that dies mid-run takes no data with it
and its tasks are retried on the others. The estimators
themselves stay single-threaded there: a worker is one core.

Same seed, same results: every estimator and splitter is seeded, so where a fit runs changes
its duration, never its result (tested: leaderboard, tuning, champion and KPIs equal).
Dask is imported only when a cluster is used (it is a heavy import).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from helpers.core.errors import PlaybookError
from helpers.core.system import usable_cores

LOCAL, EMBEDDED = "local", "dask"
SCHEMES = ("tcp", "tls")
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Engine:
    """Where fits ran: ``kind`` local or dask, the scheduler's address, its workers and their threads."""

    kind: str
    address: str | None
    workers: int
    threads: int

    @property
    def label(self) -> str:
        if self.kind == LOCAL:
            return f"this machine ({self.threads} core{'s' * (self.threads != 1)})"
        where = self.address or "a LocalCluster on this machine"
        return f"Dask cluster at {where} ({self.workers} workers, {self.threads} threads)"

    def record(self) -> dict:
        return asdict(self)


def parse(value: str | None) -> tuple[str, str | None]:
    """``compute`` -> (kind, scheduler address or None); a value that is neither is a clear error."""
    text = (value or LOCAL).strip()
    if text in (LOCAL, EMBEDDED):
        return text, None
    parts = urlsplit(text)
    if parts.scheme in SCHEMES and parts.hostname and parts.port:
        return EMBEDDED, text
    raise PlaybookError(f"compute is {value!r}: neither 'local', 'dask' nor a Dask scheduler address.",
                        "use -p compute local, -p compute dask (a cluster on this machine) "
                        "or -p compute tcp://host:8786 (an existing scheduler).")


def check_reachable(value: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail at once, with the fix, when ``compute`` names a scheduler nobody answers at (before any kernel)."""
    kind, address = parse(value)
    if address is None:
        return
    parts = urlsplit(address)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            pass
    except OSError as exc:
        raise PlaybookError(f"The Dask scheduler {address} cannot be reached ({exc.strerror or exc}).",
                            "start it (`dask scheduler`, then `dask worker " + address + "` on each machine), "
                            "check the address, or run on this machine with -p compute local.") from None


_CLIENTS: dict[str, object] = {}  # compute value -> its dask Client, one per process (a kernel)


def client(value: str | None):
    """The process's Dask client for ``compute`` (connected, or its LocalCluster started, on first use); None locally."""
    kind, address = parse(value)
    if kind == LOCAL:
        return None
    key = address or EMBEDDED
    if key not in _CLIENTS:
        # local: dask is a heavy import, and only clusters need it
        from distributed import Client, LocalCluster

        if address is None:
            cluster = LocalCluster(n_workers=usable_cores(), threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            _CLIENTS[key] = Client(cluster)
        else:
            try:
                _CLIENTS[key] = Client(address, timeout=CONNECT_TIMEOUT_S)
            except OSError as exc:
                raise PlaybookError(f"The Dask scheduler {address} did not answer ({exc}).",
                                    "check that it runs and has workers, or use -p compute local.") from None
        _CLIENTS[key].wait_for_workers(1, timeout=120)
    return _CLIENTS[key]


@atexit.register
def close_clients() -> None:
    """Close this process's clients (and the LocalCluster it started): at exit, or before its cluster goes away."""
    for c in list(_CLIENTS.values()):
        with contextlib.suppress(Exception):
            cluster = getattr(c, "cluster", None)
            c.close()
            if cluster is not None:
                cluster.close()
    _CLIENTS.clear()


def engine(value: str | None, n_jobs: int = 1) -> Engine:
    """Where fits run: this machine with ``n_jobs`` cores, or the cluster's workers and threads.

    An embedded cluster not started in this process is described without starting it (one
    single-threaded worker per usable core); a scheduler is asked for its current workers.
    """
    kind, address = parse(value)
    if kind == LOCAL:
        return Engine(LOCAL, None, 1, usable_cores() if n_jobs < 0 else max(1, n_jobs))
    if address is None and EMBEDDED not in _CLIENTS:
        return Engine(EMBEDDED, None, usable_cores(), usable_cores())
    workers = client(value).scheduler_info()["workers"]
    return Engine(EMBEDDED, address, len(workers), sum(w["nthreads"] for w in workers.values()))


def command(address: str = "tcp://scheduler:8786") -> str:
    """The command line that runs the playbook's fits on the Dask cluster at ``address``."""
    return f"playbook run -f project.yaml -p compute {address}"


def is_cluster(value: str | None) -> bool:
    return parse(value)[0] != LOCAL


@contextlib.contextmanager
def fits_on(value: str | None) -> Iterator[None]:
    """joblib's Dask backend on the ``compute`` cluster for the calls inside (nothing changes locally)."""
    c = client(value)
    if c is None:
        yield
        return
    from joblib import parallel_config

    from helpers.core import _dask_backend  # local: imports dask, only clusters need it

    with parallel_config(backend=_dask_backend.NAME, client=c):  # type: ignore[call-arg]
        yield

