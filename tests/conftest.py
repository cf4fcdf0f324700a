"""Session-wide fixtures: the real bed (kube-apiserver + etcd, Flink session cluster, test job jar).

Each piece starts once per test session, on loopback and free ports, under one temporary
directory, and is stopped at the end of the session (or when the session is interrupted).
When a test fails, the tails of the bed's logs are attached to its report.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
def node(kube: Any, bed_dir: Path) -> Iterator[object]:
    """A real Kubernetes node (testbed.node: containerd, kubelet, controller-manager, scheduler, the
    bed's images) beside the session's apiserver. Started only when a test asks for it; from then on
    the controller-manager and scheduler serve the whole session's apiserver."""
    from testbed.node import start_node

    started = start_node(kube, bed_dir / "node")
    try:
        yield started
    finally:
        started.stop()


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


REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / "crds" / "flinkjob.yaml"


@pytest.fixture(scope="session")
def crd(kube: Any) -> Path:
    """The FlinkJob CRD, applied from crds/flinkjob.yaml and Established."""
    kube.kubectl("apply", "-f", str(CRD_FILE))
    kube.kubectl("wait", "--for=condition=Established", "crd/flinkjobs.flinkop.io", "--timeout=60s")
    return CRD_FILE


@pytest.fixture(scope="session")
def operator(kube: Any, crd: Path, flink: Any, bed_dir: Path) -> Iterator[procs.ManagedProcess]:
    """One operator process for the session. It serves every namespace but `own-*`: tests that
    kill or restart an operator run their own there (see `own_namespace`)."""
    from testbed.operator_process import start_operator

    proc = start_operator(bed_dir / "operator", kube.admin_kubeconfig, args=("--namespace", "!own-*"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def proxy(flink: Any) -> Iterator[Any]:
    """A fault-injecting proxy (testbed.flink_proxy.FlinkProxy) in front of the bed's Flink."""
    from testbed.flink_proxy import FlinkProxy

    p = FlinkProxy(flink.rest_url)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="session")
def flink_rest(flink: Any) -> Any:
    from testbed.flink_rest import FlinkRest

    return FlinkRest(flink.rest_url)


_namespace_counter = itertools.count(1)


@pytest.fixture
def namespace(kube: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test. At the end its FlinkJobs are deleted (the operator stops their jobs
    with a savepoint) and any job still running on the bed's Flink is cancelled, so slots are free."""
    name = f"t{next(_namespace_counter)}-{request.node.name.lower().replace('_', '-')}"[:50].rstrip("-")
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "flinkjobs", "--all", "-n", name, "--wait=false", check=False)
    kube.kubectl("wait", "--for=delete", "flinkjobs", "--all", "-n", name, "--timeout=60s", check=False)
    _drop_finalizers(kube, name)


def _drop_finalizers(kube: Any, namespace: str) -> None:
    """Releases FlinkJobs no operator will finish with (their operator is gone, or gave up), and
    cancels the session-cluster jobs they recorded: a released FlinkJob's job would otherwise hold
    the bed's slots for the rest of the session."""
    from testbed.flinkjobs import cancel_recorded_jobs, release_all

    cancel_recorded_jobs(kube, namespace)
    release_all(kube, namespace)


@pytest.fixture
def own_namespace(kube: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the session operator does not serve, for a test that runs its own operator.
    At the end, finalizers are dropped and leftover jobs cancelled (the test's operator is gone)."""
    name = f"own-{next(_namespace_counter)}"
    kube.kubectl("create", "namespace", name)
    yield name
    _drop_finalizers(kube, name)
    kube.kubectl("delete", "flinkjobs", "--all", "-n", name, "--wait=false", check=False)


@pytest.fixture
def flinkjobs(kube: Any, namespace: str) -> Any:
    from testbed.flinkjobs import FlinkJobs

    return FlinkJobs(kube.api_client(), namespace)


@pytest.fixture(autouse=True)
def _free_flink_slots(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "flink_rest" in request.fixturenames:
        request.getfixturevalue("flink_rest").cancel_running_jobs()
