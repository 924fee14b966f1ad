"""Shared pytest fixtures.

`../shared` (reference fixtures and the authors' data files) sits beside the repository root in CI and on
the developers' machines, never in a user's clone: tests that need it skip with a clear reason there.
CI sets GAP_REQUIRE_SHARED=1, which turns those skips into failures (see .ci/run).
GAP_TORCH_THREADS=N runs the session with `torch.set_num_threads(N)` (CI runs the fidelity tests a second
time with one thread: the checks must not depend on the thread count).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


def pytest_configure(config):
    config.addinivalue_line("markers", "fidelity: compares against ../shared reference fixtures or release data")
    threads = os.environ.get("GAP_TORCH_THREADS")
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise pytest.UsageError(f"GAP_TORCH_THREADS: expected a positive integer, got {threads!r}")
        import torch

        torch.set_num_threads(int(threads))


def _require_shared(path: Path) -> Path:
    if not path.exists():
        reason = f"{path} is absent: reference fixtures / release files live beside the repo in ../shared"
        if os.environ.get("GAP_REQUIRE_SHARED") == "1":
            pytest.fail(f"GAP_REQUIRE_SHARED=1 but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    return _require_shared(SHARED_DIR)


@pytest.fixture(scope="session")
def reference_dir(shared) -> Path:
    return _require_shared(shared / "fixtures" / "reference")


@pytest.fixture(scope="session")
def release_dir(shared) -> Path:
    return _require_shared(shared / "gap_release")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With GAP_REQUIRE_SHARED=1 (CI), a skipped fidelity test is a failure: skips must not hide gaps."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and os.environ.get("GAP_REQUIRE_SHARED") == "1"
            and item.get_closest_marker("fidelity") is not None):
        report.outcome = "failed"
        report.longrepr = f"fidelity test skipped under GAP_REQUIRE_SHARED=1: {report.longrepr}"
