"""Hostile Flink endpoints and jar servers, on the real bed, servers on loopback only.

One operator (its own namespace, JSON logs, tight deadlines, 127.0.0.2/32 added to the denied
networks through FLINKOP_EXTRA_DENIED_NETWORKS, file:// jars at their default: off) serves one
FlinkJob per misbehaviour at once: a Flink endpoint that answers slowly, never finishes a body, sends
100 MB, redirects to another host, answers HTML or JSON of the wrong shape, or echoes the
Authorization header into an error; a jar server doing the same; endpoints in a denied network. Beside
them a FlinkJob on the real Flink is created and upgraded. Each hostile FlinkJob's status says what is
wrong, the denied server receives nothing, the operator's memory stays bounded, and the REST token
never reaches its log, an Event or a status.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation, is_stalled
from testbed.hostile_server import HostileServer
from testbed.operator_process import start_operator
from testbed.procs import ManagedProcess

pytestmark = pytest.mark.integration

RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]
TOKEN = f"tok-{secrets.token_hex(12)}"
FLINK_TIMEOUT = 2
JAR_DEADLINE = 4
MAX_JAR_BYTES = 20 * 1024 * 1024
# The operator's peak resident memory: a 100 MB answer read whole would take it well past this.
MEMORY_BOUND_BYTES = 200 * 1024 * 1024
_counter = itertools.count(1)


@dataclass
class Bed:
    namespace: str
    jobs: FlinkJobs
    operator: ManagedProcess
    hostile: HostileServer  # 127.0.0.1
    denied: HostileServer  # 127.0.0.2, in the operator's denied networks
    flink_url: str
    jar_path: Path


# name -> (where the FlinkJob points: "flink" at the hostile server's path, or "jar"), the path
FLINK_CASES = {
    "flink-slow": ("/slow", f"no complete answer within {FLINK_TIMEOUT} s"),
    "flink-drip": ("/drip", f"no complete answer within {FLINK_TIMEOUT} s"),
    "flink-huge": ("/huge", "over the limit of 16777216 bytes; not read (FLINKOP_FLINK_MAX_RESPONSE_BYTES)"),
    "flink-redirect": ("/redirect", "HTTP 302: a redirect to http://127.0.0.2:"),
    "flink-html": ("/html", "answer is not JSON: '<html>"),
    "flink-shape": ("/shape", "not shaped as Flink's"),
    "flink-echo": ("/echo", "HTTP 500: Unauthorized request: header Authorization: Bearer [redacted] is not valid"),
}
JAR_CASES = {
    "jar-slow": (
        "/slow/job.jar",
        "JarFetchFailed",
        f"not complete within {JAR_DEADLINE} s (FLINKOP_JAR_FETCH_TIMEOUT)",
    ),
    "jar-drip": (
        "/drip/job.jar",
        "JarFetchFailed",
        f"not complete within {JAR_DEADLINE} s (FLINKOP_JAR_FETCH_TIMEOUT)",
    ),
    "jar-huge": ("/huge/job.jar", "JarTooLarge", f"over the limit of {MAX_JAR_BYTES} bytes"),
    "jar-redirect": ("/redirect/job.jar", "DeniedNetwork", "in the denied network 127.0.0.2/32"),
    "jar-html": ("/html/job.jar", "NotAJar", "is not a jar (not a zip archive)"),
    "jar-echo": ("/echo/job.jar", "JarFetchFailed", "could not be fetched: HTTP 500"),
}


@pytest.fixture(scope="module")
def bed(kube: Any, crd: Path, flink: Any, flink_rest: Any, test_job_jar: Path, bed_dir: Path) -> Iterator[Bed]:
    namespace = f"own-hostile-{next(_counter)}"
    kube.kubectl("create", "namespace", namespace)
    denied = HostileServer(host="127.0.0.2").start()
    hostile = HostileServer(slow_seconds=30, redirect_to=denied.url(""), files={"job.jar": test_job_jar}).start()
    operator = start_operator(
        bed_dir / f"{namespace}-operator",
        kube.admin_kubeconfig,
        args=("--namespace", namespace, "--log-format", "json"),
        extra_env={
            "FLINKOP_FLINK_TIMEOUT": str(FLINK_TIMEOUT),
            "FLINKOP_JAR_FETCH_TIMEOUT": str(JAR_DEADLINE),
            "FLINKOP_MAX_JAR_BYTES": str(MAX_JAR_BYTES),
            "FLINKOP_EXTRA_DENIED_NETWORKS": "127.0.0.2/32",
            "FLINKOP_JAR_ALLOW_FILE": "",  # the default: off
            "FLINKOP_DELETE_TIMEOUT": "5",
        },
    )
    jobs = FlinkJobs(kube.api_client(), namespace)
    kube.kubectl("create", "secret", "generic", "flink-token", "-n", namespace, f"--from-literal=token={TOKEN}")
    try:
        yield Bed(namespace, jobs, operator, hostile, denied, flink.rest_url, test_job_jar)
    finally:
        # Most of these FlinkJobs could never reach a Flink: no final savepoint is owed for them.
        operator.stop()
        patch = '{"metadata":{"finalizers":null}}'
        kube.kubectl("patch", "flinkjobs", "--all", "-n", namespace, "--type=merge", "-p", patch, check=False)
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        flink_rest.cancel_running_jobs()
        hostile.close()
        denied.close()


@pytest.fixture(scope="module")
def created(bed: Bed) -> Bed:
    """Every hostile FlinkJob and the good one, created at once."""
    good_jar = bed.hostile.url("/good/job.jar")
    bed.jobs.create(
        "good", {"flinkRestUrl": bed.flink_url, "jar": {"uri": good_jar}, "parallelism": 2, "args": RATE_ARGS}
    )
    for name, (path, _) in FLINK_CASES.items():
        spec = {
            "flinkRestUrl": bed.hostile.url(path),
            "jar": {"uri": good_jar},
            "parallelism": 1,
            "restAuthSecretRef": {"name": "flink-token"},
        }
        bed.jobs.create(name, spec)
    for name, (path, _, _) in JAR_CASES.items():
        bed.jobs.create(name, {"flinkRestUrl": bed.flink_url, "jar": {"uri": bed.hostile.url(path)}, "parallelism": 1})
    bed.jobs.create(
        "jar-file", {"flinkRestUrl": bed.flink_url, "jar": {"uri": bed.jar_path.as_uri()}, "parallelism": 1}
    )
    bed.jobs.create(
        "jar-denied", {"flinkRestUrl": bed.flink_url, "jar": {"uri": bed.denied.url("/good/job.jar")}, "parallelism": 1}
    )
    spec = {
        "flinkRestUrl": bed.denied.url(""),
        "jar": {"uri": good_jar},
        "parallelism": 1,
        "restAuthSecretRef": {"name": "flink-token"},
    }
    bed.jobs.create("flink-denied", spec)
    return bed


def message_has(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: text in str((r.get("status") or {}).get("message") or "")


def test_a_flinkjob_on_the_real_flink_runs_and_upgrades_while_hostile_endpoints_misbehave(
    created: Bed, flink_rest: Any
) -> None:
    jobs = created.jobs
    first = jobs.wait("good", is_ready_at_current_generation, "Ready", timeout=120)["status"]["jobId"]
    before = flink_rest.wait_state_counter_at_least(first, 50)
    jobs.patch_spec("good", {"parallelism": 3})
    done = jobs.wait("good", is_ready_at_current_generation, "Ready after the upgrade", timeout=120)
    assert done["status"]["jobId"] != first
    assert flink_rest.restored_from(done["status"]["jobId"]) == done["status"]["lastSavepoint"]["path"]
    assert flink_rest.wait_state_counter_at_least(done["status"]["jobId"], before + 1) > before


@pytest.mark.parametrize("name", list(FLINK_CASES))
def test_a_hostile_flink_endpoint_is_reported_in_status_saying_what_is_wrong(created: Bed, name: str) -> None:
    path, says = FLINK_CASES[name]
    found = created.jobs.wait(name, message_has(says), f"a message saying {says!r}", timeout=60)
    assert f"Flink at {created.hostile.url(path)} is unreachable" in found["status"]["message"]


@pytest.mark.parametrize("name", list(JAR_CASES))
def test_a_hostile_jar_server_stalls_the_flinkjob_with_the_reason(created: Bed, name: str) -> None:
    _, reason, says = JAR_CASES[name]
    found = created.jobs.wait(name, lambda r: is_stalled(r, reason), f"Stalled {reason}", timeout=60)
    assert says in found["status"]["message"]


def test_file_jars_are_refused_by_default_with_the_setting_that_enables_them(created: Bed) -> None:
    found = created.jobs.wait("jar-file", lambda r: is_stalled(r, "JarHostNotAllowed"), "Stalled", timeout=60)
    assert "file:// jars (the operator's own disk) are off" in found["status"]["message"]
    assert "FLINKOP_JAR_ALLOW_FILE=true" in found["status"]["message"]


def test_endpoints_in_a_denied_network_stall_and_receive_nothing(created: Bed) -> None:
    jobs = created.jobs
    flink = jobs.wait("flink-denied", lambda r: is_stalled(r, "DeniedNetwork"), "Stalled DeniedNetwork", timeout=60)
    assert "spec.flinkRestUrl: address 127.0.0.2 is in the denied network 127.0.0.2/32" in flink["status"]["message"]
    assert "FLINKOP_EXTRA_DENIED_NETWORKS" in flink["status"]["message"]
    jar = jobs.wait("jar-denied", lambda r: is_stalled(r, "DeniedNetwork"), "Stalled DeniedNetwork", timeout=60)
    assert "jar fetch: address 127.0.0.2 is in the denied network 127.0.0.2/32" in jar["status"]["message"]
    # ... and the redirecting cases (Flink's and the jar server's) have been seen and refused by now.
    jobs.wait("jar-redirect", lambda r: is_stalled(r, "DeniedNetwork"), "Stalled DeniedNetwork", timeout=60)
    jobs.wait("flink-redirect", message_has("HTTP 302"), "the redirect reported", timeout=60)
    assert created.hostile.paths(), "the operator did talk to the loopback server on 127.0.0.1"
    assert created.denied.seen == [], f"requests reached the denied address: {created.denied.paths()}"


def test_no_credential_reaches_the_log_events_or_status_and_memory_stays_bounded(created: Bed, kube: Any) -> None:
    created.jobs.wait("flink-echo", message_has("[redacted]"), "the echo reported", timeout=60)
    created.jobs.wait("flink-huge", message_has("over the limit"), "the 100 MB answer refused", timeout=60)
    rest = [s for s in created.hostile.seen if s.path.startswith("/echo") and not s.path.endswith(".jar")]
    assert rest and rest[-1].headers.get("Authorization") == f"Bearer {TOKEN}", "the token was sent, and echoed"
    jars = [s for s in created.hostile.seen if s.path.endswith(".jar")]
    assert jars and not any("Authorization" in s.headers for s in jars), "a jar server never gets Flink's credentials"
    log = created.operator.log_path.read_text()
    assert TOKEN not in log
    events = kube.kubectl("get", "events", "-n", created.namespace, "-o", "json").stdout
    assert TOKEN not in events and "[redacted]" in events
    statuses = json.dumps([created.jobs.status(n) for n in [*FLINK_CASES, *JAR_CASES, "good"]])
    assert TOKEN not in statuses
    peak = _peak_memory(created.operator.pid)
    print(f"operator peak resident memory: {peak / 2**20:.0f} MiB")  # shown with -s
    assert peak < MEMORY_BOUND_BYTES, f"the operator peaked at {peak / 2**20:.0f} MiB"


def _peak_memory(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")
