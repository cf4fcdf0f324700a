"""Session-wide fixtures: the real bed (kube-apiserver + etcd, Flink session cluster, test job jar).

Each piece starts once per test session, on loopback and free ports, under one temporary
directory, and is stopped at the end of the session (or when the session is interrupted).
When a test fails, the tails of the bed's logs are attached to its report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import procs


@pytest.fixture(scope="session")
def bed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bed")


@pytest.fixture(scope="session")
def kube(bed_dir: Path) -> Iterator[object]:
    from testbed.kube import start_kube

    cluster = start_kube(bed_dir / "kube")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def flink(bed_dir: Path) -> Iterator[object]:
    from testbed.flink import start_flink

    cluster = start_flink(bed_dir / "flink")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def test_job_jar(bed_dir: Path) -> Path:
    from testbed.jobs import build_test_job

    return build_test_job(bed_dir / "jobs")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if report.failed and call.when in ("setup", "call") and not os.environ.get("FLINKOP_NO_LOG_TAILS"):
        for proc in procs.running():
            report.sections.append((f"log tail: {proc.name} ({proc.log_path})", proc.tail(60)))
    return report
