"""joblib's Dask backend with every large argument held as a task, so a dead worker loses no data.

joblib's own backend scatters each large argument (the training rows, the fold indices) to one
worker. Scattered data cannot be recomputed: when that worker dies, every task that needs it
fails with "lost dependencies" (measured here by killing one of two workers during a
cross-validation; broadcasting the scatter to every worker still failed when the kill came while
the copies were being made). Here each large argument becomes the result of a small task that
returns it: the scheduler keeps the task, so when the worker holding the result dies it runs it
again on another worker, and the fits of the dead worker are retried there. Each object is still
sent once per call (to the scheduler, then between workers as needed), not once per task.

This module imports dask: ``core.compute`` imports it only when a cluster is used.
"""

from __future__ import annotations

import warnings

from dask.sizeof import sizeof
from joblib import register_parallel_backend
from joblib._dask import DaskDistributedBackend, _WeakKeyDictionary, is_weakrefable

NAME = "dask_recomputable"
LARGE_BYTES = 1e3  # joblib's own threshold for scattering an argument rather than sending it inline


def _held(value):
    """The task whose result is ``value``: the scheduler can run it again if its worker dies."""
    return value


class RecomputableDaskBackend(DaskDistributedBackend):
    """``DaskDistributedBackend`` whose large arguments are recomputable task results, not scattered data."""

    def start_call(self):
        super().start_call()
        # id -> (object, future): holding the object keeps its id unique until the call ends
        self._held: dict[int, tuple[object, object]] = {}
        self.call_data_futures = None  # joblib's scatter off: the tasks below replace it

    def stop_call(self):
        self.call_data_futures = _WeakKeyDictionary()
        super().stop_call()
        for key in self._held:
            self.data_futures.pop(key, None)
        self._held = {}

    async def _to_func_args(self, func):
        for _, args, kwargs in func.items:
            for arg in (*args, *kwargs.values()):
                key = id(arg)
                if key in self._held or key in self.data_futures:
                    continue
                if is_weakrefable(arg) and sizeof(arg) > LARGE_BYTES:
                    with warnings.catch_warnings():  # "large object in task graph": that is the point here
                        warnings.simplefilter("ignore", UserWarning)
                        future = self.client.submit(_held, arg, pure=False)
                    self._held[key] = (arg, future)
                    self.data_futures[key] = future
        return await super()._to_func_args(func)


register_parallel_backend(NAME, RecomputableDaskBackend)
