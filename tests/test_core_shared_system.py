"""Computations several steps share, each with one implementation in the core.

Memory (``core.system``, steps 2 and 3), the lock file (``core.system``, steps 3 and 5), file and
frame hashes (``core.hashing``: step 5 and resume, datasets and step 4), time-column parsing
(``core.split``: the split, step 2's report, its date check, step 5's batches).
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from packaging.requirements import Requirement

from helpers.core import artifacts, datasets, hashing, split, system
from helpers.core.paths import STEP_NOTEBOOKS
from helpers.run import resume
from helpers.steps import modeling, stack
from helpers.steps.foundation import data, quality
from helpers.steps.operations import monitoring

GIB = 1024**3

# --- available memory ---------------------------------------------------------------------------------


@pytest.fixture
def meminfo(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       16000000 kB\nMemFree:   100 kB\nMemAvailable:    12000000 kB\nHugePages_Total: 0\n")
    return path


def test_read_meminfo_parses_kilobytes(meminfo, tmp_path):
    info = system.read_meminfo(meminfo)
    assert info["MemTotal"] == 16000000 * 1024 and info["MemAvailable"] == 12000000 * 1024
    assert info["HugePages_Total"] == 0
    assert system.read_meminfo(tmp_path / "missing") == {}


def test_available_memory_respects_a_container_limit(meminfo, tmp_path):
    cgroup = tmp_path / "cgroup"
    (cgroup / "memory").mkdir(parents=True)
    assert system.available_memory_bytes(meminfo, cgroup) == 12000000 * 1024  # no limit: the machine's figure
    (cgroup / "memory.max").write_text(f"{2 * GIB}\n")  # cgroup v2
    assert system.memory_info(meminfo, cgroup) == {"total_bytes": 2 * GIB, "available_bytes": 2 * GIB}
    assert system.available_memory_bytes(meminfo, cgroup) == 2 * GIB
    (cgroup / "memory.max").write_text("max\n")
    assert system.memory_info(meminfo, cgroup)["total_bytes"] == 16000000 * 1024
    (cgroup / "memory.max").unlink()
    (cgroup / "memory/memory.limit_in_bytes").write_text(f"{GIB}\n")  # cgroup v1
    assert system.available_memory_bytes(meminfo, cgroup) == GIB
    (cgroup / "memory/memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")  # v1's "no limit"
    assert system.available_memory_bytes(meminfo, cgroup) == 12000000 * 1024


def test_available_memory_falls_back_to_free_memory(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal: 1000 kB\nMemFree: 300 kB\n")
    assert system.available_memory_bytes(tmp_path / "meminfo", tmp_path / "no-cgroup") == 300 * 1024


def test_steps_2_and_3_both_see_the_container_limit(monkeypatch):
    monkeypatch.setattr(system, "cgroup_memory_limit", lambda root="/sys/fs/cgroup": 123 * 2**20)
    frame = pd.DataFrame({"x": np.arange(50.0), "c": ["a", "b"] * 25})
    assert data.scale_report(frame, {})["available_bytes"] == 123 * 2**20
    env = stack.environment_report()["memory"]
    assert env == {"total_bytes": 123 * 2**20, "available_bytes": 123 * 2**20}


# --- the lock file -----------------------------------------------------------------------------------


class FakeDist:
    def __init__(self, name, version, direct_url=None):
        self.metadata = {"Name": name}
        self.version = version
        self._direct_url = direct_url

    def read_text(self, filename):
        return self._direct_url if filename == "direct_url.json" else None


def _requirements(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_lock_pins_index_packages_and_writes_direct_urls_installably():
    editable = json.dumps({"url": "file:///src/myproj", "dir_info": {"editable": True}})
    vcs = json.dumps({"url": "https://example.org/x.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"}})
    archive = json.dumps({"url": "https://example.org/w-1.0.tar.gz", "archive_info": {"hashes": {"sha256": "ff"}}})
    text = system.lock_text([FakeDist("pandas", "2.2.0"), FakeDist("Jinja2", "3.1.4"),
                             FakeDist("myproj", "0.1"),  # the source tree's .egg-info, found first on sys.path
                             FakeDist("myproj", "0.1", editable), FakeDist("gitpkg", "1.0", vcs),
                             FakeDist("wheelie", "1.0", archive), FakeDist("pandas", "1.0")],
                            captured_by="step 9")
    assert _requirements(text) == ["gitpkg @ git+https://example.org/x.git@abc123", "Jinja2==3.1.4", "pandas==2.2.0",
                                   "wheelie @ https://example.org/w-1.0.tar.gz#sha256=ff"]
    assert "# myproj==0.1 installed from file:///src/myproj" in text.splitlines()  # not an uninstallable myproj==0.1
    assert text.startswith("# Installed packages captured by step 9, ")
    for line in _requirements(text):
        Requirement(line)  # pip's requirement grammar: raises on anything pip -r would reject


def test_lock_of_this_environment_is_installable():
    text = system.lock_text(captured_by="test")
    lines = _requirements(text)
    assert "numpy==" + __import__("numpy").__version__ in lines
    for line in lines:
        Requirement(line)
    names = [Requirement(line).name.lower().replace("_", "-") for line in lines]
    assert len(names) == len(set(names))
    # this project is installed from its folder (editable): a comment, never the uninstallable name==version
    assert "ml-project-playbook" not in names
    assert any(ln.startswith("# ml-project-playbook==") and "installed from file:" in ln for ln in text.splitlines())


# --- the file hash ------------------------------------------------------------------------------------


def test_file_hash_is_sha256_of_the_bytes_and_none_when_missing(tmp_path):
    big = tmp_path / "big.bin"
    content = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # several read blocks
    big.write_bytes(content)
    assert hashing.file_sha256(big) == hashlib.sha256(content).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert hashing.file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
    assert hashing.file_sha256(tmp_path / "missing") is None
    assert hashing.file_sha256(tmp_path) is None  # a folder is not a file


def test_resume_records_file_hashes_and_absent_inputs(tmp_path):
    run = artifacts.open_run(tmp_path / "run")
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text("{}")
    inputs = resume.step_inputs(run, STEP_NOTEBOOKS[1], {}, notebook)
    assert inputs["notebook"] == hashlib.sha256(b"{}").hexdigest()
    assert inputs["data"] is None  # no raw snapshot yet


# --- the frame hash -----------------------------------------------------------------------------------


@pytest.fixture
def frame():
    return pd.DataFrame({"a": [1.5, 2.5, np.nan, 4.0], "b": ["x", "y", None, "x"], "y": [0.1, 0.2, 0.3, 0.4]})


def _meta_hash(train: pd.DataFrame) -> str:
    prepared = SimpleNamespace(train=train, features=["a", "b"], numeric=["a"], categorical=["b"], target="y",
                               problem_type="regression", id_column=None, sensitive_columns=[])
    inputs = SimpleNamespace(prepared=prepared, contract=SimpleNamespace(classes=None, positive_label=None,
                                                                         is_binary=False))
    tuning = SimpleNamespace(best_family="ridge", best_params={}, metric="rmse")
    meta = modeling.model_meta(inputs, tuning, SimpleNamespace(table=[], training_rows=len(train)), None)
    return meta["training_data_sha256"]


def test_frame_hash_is_the_same_for_data_provenance_and_model_metadata(tmp_path, frame):
    run = artifacts.open_run(tmp_path / "run")
    provenance = datasets.write_snapshot(run, {"dataset": "x.csv"}, frame.copy(), 0.0)
    assert provenance["sha256"] == _meta_hash(frame) == hashing.frame_sha256(frame)
    assert len(provenance["sha256"]) == 64


def test_frame_hash_follows_the_data_not_the_row_index(frame):
    digest = hashing.frame_sha256(frame)
    assert hashing.frame_sha256(frame.copy()) == digest
    assert hashing.frame_sha256(frame.set_axis([10, 20, 30, 40])) == digest  # e.g. a split keeps raw row labels
    changed = frame.copy()
    changed.loc[0, "a"] = 1.6
    assert hashing.frame_sha256(changed) != digest
    assert hashing.frame_sha256(frame.rename(columns={"a": "A"})) != digest
    assert hashing.frame_sha256(frame.iloc[::-1]) != digest  # row order is part of the data
    assert hashing.frame_sha256(frame.iloc[:3]) != digest


# --- time-column parsing ------------------------------------------------------------------------------


def test_parse_times_reads_each_format_and_turns_garbage_into_nat():
    parsed = split.parse_times(pd.Series(["2024-01-05", "2024-01-05 10:00", "05/01/2024", "2024-01-06T08:30:00",
                                          "garbage", None]))
    expected = [pd.Timestamp("2024-01-05"), pd.Timestamp("2024-01-05 10:00"),
                pd.Timestamp("2024-05-01"),  # ambiguous day/month: read month first (pandas' default)
                pd.Timestamp("2024-01-06 08:30")]
    assert list(parsed[:4]) == expected
    assert parsed[4:].isna().all()


def test_parse_times_compares_different_utc_offsets_in_utc():
    parsed = split.parse_times(pd.Series(["2024-01-01T00:00+01:00", "2024-01-01T00:00+02:00", "nope"]))
    assert list(parsed[:2]) == [pd.Timestamp("2023-12-31 23:00", tz="UTC"), pd.Timestamp("2023-12-31 22:00", tz="UTC")]
    assert pd.isna(parsed[2])


def test_time_values_keep_numbers_as_numbers():
    assert list(split.time_values(pd.Series([0.9, 0.1, 0.5]))) == [0.9, 0.1, 0.5]
    assert list(split.time_values(pd.Series(["3", "1", "20"]))) == [3, 1, 20]  # numbers written as text
    mostly_dates = split.time_values(pd.Series(["2024-01-01", "2024-01-02", "x"]))
    assert mostly_dates.iloc[1] == pd.Timestamp("2024-01-02") and pd.isna(mostly_dates.iloc[2])


@pytest.fixture
def mixed_times():
    days = np.random.default_rng(1).permutation(30) + 1
    when = [f"2024-01-{d:02d}" if i % 2 else f"01/{d:02d}/2024" for i, d in enumerate(days)]
    return pd.DataFrame({"when": when, "day": days, "x": np.arange(30.0)})


def test_split_and_step_2_report_order_mixed_formats_alike(mixed_times):
    params = {"test_size": 0.2, "seed": 0, "time_column": "when"}
    mask = split.assign_test(mixed_times, target=None, problem_type="regression", test_size=0.2, seed=0,
                             time_column="when")
    assert sorted(mixed_times.loc[mask, "day"]) == list(range(25, 31))  # the latest days, whatever their format
    report = data.split_report(mixed_times, mask, params, "regression")
    assert report["time_order_holds"] is True and report["test_earliest"] == "2024-01-25 00:00:00"


def test_monitoring_batches_follow_the_same_clock(mixed_times):
    batches = monitoring.batches_from_data(mixed_times, time_column="when", n_batches=3)
    assert np.concatenate([b["day"] for b in batches]).tolist() == list(range(1, 31))
    numeric = pd.DataFrame({"t": [0.9, 0.1, 0.5, 0.3], "v": [4, 1, 3, 2]})
    assert [list(b["v"]) for b in monitoring.batches_from_data(numeric, time_column="t", n_batches=2)] == [[1, 2], [3, 4]]


def test_step_2_date_check_reads_mixed_formats():
    dates = pd.Series(["2024-01-05", "2024-01-05 10:00", "05/01/2024"] * 10)
    assert quality._looks_like_dates(dates)
    assert not quality._looks_like_dates(pd.Series(["a-1", "b/2", "c:3"] * 10))


def test_the_default_max_memory_is_half_the_machine_not_what_is_free_now():
    from helpers.core import system

    assert system.default_max_memory() == system.memory_info()["total_bytes"] // 2
