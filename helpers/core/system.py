"""Facts about the machine and environment a run executes in: memory (container-aware) and the package lock.

Step 2 (will the table fit?), step 3 (environment report, lock file) and step 5 (the model package's
lock when step 3 did not run) read them here, so they agree.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from helpers.core.errors import PlaybookError

LOCK_FILE = "requirements.lock.txt"
SERVE_LOCK_FILE = "requirements-serve.lock.txt"  # what `playbook serve` needs, no more (the model package's)
PROJECT_DISTRIBUTION = "ml-project-playbook"


# --- memory ------------------------------------------------------------------------------------


def read_meminfo(path: str | os.PathLike = "/proc/meminfo") -> dict[str, int]:
    """Memory figures in bytes from a Linux ``/proc/meminfo`` file (empty dict elsewhere)."""
    values: dict[str, int] = {}
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return values
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            unit = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
            values[name.strip()] = int(parts[0]) * unit
    return values


def cgroup_memory_limit(root: str | os.PathLike = "/sys/fs/cgroup") -> int | None:
    """A container's memory limit in bytes (cgroup v2 ``memory.max`` or v1), or None."""
    root = Path(root)
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            text = (root / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # v1 reports "no limit" as a huge number
            return int(text)
    return None


def memory_info(meminfo_path: str | os.PathLike = "/proc/meminfo",
                cgroup_root: str | os.PathLike = "/sys/fs/cgroup") -> dict[str, int | None]:
    """Total and available memory in bytes, capped by a container limit when there is one."""
    info = read_meminfo(meminfo_path)
    total = info.get("MemTotal")
    available = info.get("MemAvailable", info.get("MemFree"))
    if total is None and hasattr(os, "sysconf"):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            total = None
    # /proc/meminfo shows the host's memory inside a container; the cgroup limit is what this process can get
    limit = cgroup_memory_limit(cgroup_root)
    if limit is not None:
        total = min(total, limit) if total else limit
        available = min(available, limit) if available else limit
    return {"total_bytes": total, "available_bytes": available if available is not None else total}


def available_memory_bytes(meminfo_path: str | os.PathLike = "/proc/meminfo",
                           cgroup_root: str | os.PathLike = "/sys/fs/cgroup") -> int | None:
    """Memory available to this process in bytes (container limit respected), or None when unknown."""
    return memory_info(meminfo_path, cgroup_root)["available_bytes"]


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_bytes(text: str | int | float) -> int:
    """Bytes of a size such as ``0.5GB``, ``512MB``, ``2GiB`` or ``1000000``."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match and match.group(2).lower()
    if not match or unit not in _UNITS or float(match.group(1)) <= 0:
        raise PlaybookError(f"max_memory {text!r} is not a size.", "use e.g. 0.5GB, 512MB or 8GiB (or None: automatic).")
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(n: int) -> str:
    """A size as max_memory accepts it (``0.5GB``)."""
    return f"{n / 1e9:.3g}GB"


def default_max_memory() -> int:
    """Half of this machine's memory (its container limit respected; 4 GB when unknown).

    Of the total, not of what is free now: the default must resolve to the same value on every run
    of one machine (two runs of the same project take the same data path and record the same value).
    """
    total = memory_info()["total_bytes"]
    return int(total // 2) if total else 4 * 10**9


# --- lock file ---------------------------------------------------------------------------------


def _direct_url(dist: metadata.Distribution) -> dict[str, Any] | None:
    """The PEP 610 record of a package installed from a URL or folder rather than an index, else None."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        return None
    return info if isinstance(info, Mapping) and info.get("url") else None


def _direct_reference(info: Mapping[str, Any]) -> str:
    """What follows ``name @`` for a PEP 610 record, built the way ``pip freeze`` builds it."""
    url = info["url"]
    vcs = info.get("vcs_info")
    if vcs:  # PEP 610 keeps the VCS out of the URL; pin the commit that was installed
        url = f"{vcs['vcs']}+{url}" + (f"@{vcs['commit_id']}" if vcs.get("commit_id") else "")
    else:
        hashes = (info.get("archive_info") or {}).get("hashes") or {}
        if "sha256" in hashes:
            url += f"#sha256={hashes['sha256']}"
    if info.get("subdirectory"):
        url += ("&" if "#" in url else "#") + f"subdirectory={info['subdirectory']}"
    return url


def lock_text(distributions: Iterable[metadata.Distribution] | None = None, *, captured_by: str = "this run",
              file: str = LOCK_FILE) -> str:
    """A ``requirements.lock.txt`` that ``pip install -r`` accepts: every installed distribution, pinned.

    Read from importlib.metadata (what ``pip freeze`` reads, without a subprocess). Index packages
    become ``name==version``; packages installed from a URL (PEP 610) become ``name @ url``, VCS ones
    pinned to their commit. Packages installed from a local folder or file (such as this project in
    editable mode) cannot be fetched elsewhere (and ``name==version`` would not be on an index), so
    they become comments naming their source.
    """
    lines: dict[str, tuple[bool, str]] = {}  # normalised name -> (has a PEP 610 record, line)
    for dist in distributions if distributions is not None else metadata.distributions():
        name = dist.metadata.get("Name")
        if not name:
            continue
        key = _normalised(name)
        info = _direct_url(dist)
        if key in lines and (lines[key][0] or not info):
            # seen twice, e.g. the source tree's .egg-info on sys.path next to the editable install's record:
            # keep the first, unless only the later one says where the package came from
            continue
        if info and info["url"].startswith("file:"):
            lines[key] = (True, f"# {name}=={dist.version} installed from {info['url']}")
        elif info:
            lines[key] = (True, f"{name} @ {_direct_reference(info)}")
        else:
            lines[key] = (False, f"{name}=={dist.version}")
    pinned = [line for _, (_, line) in sorted(lines.items()) if not line.startswith("#")]
    local = [line for _, (_, line) in sorted(lines.items()) if line.startswith("#")]
    header = [f"# Installed packages captured by {captured_by}, {dt.date.today().isoformat()}, "
              f"Python {platform.python_version()} on {platform.system()} {platform.machine()}.",
              f"# Recreate with: python -m pip install -r {file}"]
    return "\n".join(header + pinned + local) + "\n"


def extra_distributions(extra: str, project: str = PROJECT_DISTRIBUTION) -> tuple[list[metadata.Distribution],
                                                                                list[str]]:
    """The installed distributions an extra of ``project`` needs (the extra's own requirements, not the
    project's base ones, and theirs recursively, markers evaluated here), and the names not installed."""
    own = [Requirement(r) for r in metadata.distribution(project).requires or []]
    todo = [(r, extra) for r in own if r.marker is not None and r.marker.evaluate({"extra": extra})
            and not r.marker.evaluate({"extra": ""})]
    found: dict[str, metadata.Distribution] = {}
    missing: list[str] = []
    while todo:
        req, active = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": active}):
            continue
        key = _normalised(req.name)
        if key in found or key in missing or key == _normalised(project):
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(key)
            continue
        found[key] = dist
        for wanted in ("", *req.extras):
            todo += [(Requirement(r), wanted) for r in dist.requires or []]
    return list(found.values()), sorted(missing)


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def serve_lock_text(project: str = PROJECT_DISTRIBUTION) -> str:
    """The model package's lock for serving: the ``[serve]`` extra's installed closure, pinned; the playbook
    itself as a comment (it is on no index: the container recipe installs its wheel with ``--no-deps``)."""
    try:
        dists, missing = extra_distributions("serve", project)
        version = metadata.version(project)
    except metadata.PackageNotFoundError:  # run from a source tree that pip never installed: no extra to read
        return (f"# {project} is not installed here, so its [serve] extra could not be read and nothing is "
                "pinned.\n# Make this lock where the playbook is installed: pip install -e '.[serve]'.\n")
    text = lock_text(dists, captured_by="step 5 for `playbook serve` (the [serve] extra)", file=SERVE_LOCK_FILE)
    text += f"# and the playbook itself, {project}=={version}: pip install --no-deps <its wheel>\n"
    if missing:
        text += f"# not installed where this lock was made, so unpinned: {', '.join(missing)}\n" + \
                "".join(f"{name}\n" for name in missing)
    return text


# --- cores --------------------------------------------------------------------------------------


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """The container's CPU quota in cores (cgroup v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores(root: str | os.PathLike = "/sys/fs/cgroup") -> int:
    """Cores this process may run on: its CPU affinity, capped by a container's CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    return max(1, min(cores, int(limit)) if limit else cores)
