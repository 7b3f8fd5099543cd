"""The real `playbook serve` on a free loopback port, for the tests and the benchmark (no mock of HTTP)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_service(command: Sequence[str], port: int, *, env: dict | None = None, timeout: float = 90,
                    cwd: str | os.PathLike = ROOT) -> Iterator[subprocess.Popen]:
    """Start ``command`` (a ``playbook serve``), wait until ``/health`` answers, stop it after (SIGTERM, then kill)."""
    process = subprocess.Popen(list(command), cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited ({process.returncode}):\n{process.stdout.read()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not answer /health within {timeout:g} s")
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve_command(package: str | os.PathLike, port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "helpers.run.cli", "serve", "--package", str(package), "--port", str(port), *args]
