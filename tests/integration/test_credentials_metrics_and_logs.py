"""Credentials and transport to Flink, the jar host allow-list, metrics and JSON logs, on the real bed.

Flink sits behind the fault proxy playing an authenticating, TLS-terminating proxy (a certificate
from a CA the test makes). The operator reads the credentials and the CA from Secrets the FlinkJob
names, upgrades the job through it, and neither the password, a token nor the CA's key shows up in
its log, the FlinkJob's Events or its status.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from testbed.certs import issue_server_cert, make_ca
from testbed.flink_proxy import FlinkProxy
from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation, is_stalled
from testbed.operator_process import start_operator
from testbed.procs import ManagedProcess, free_port

pytestmark = pytest.mark.integration

RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]


@pytest.fixture
def observed_operator(kube: Any, crd: Path, own_namespace: str, bed_dir: Path) -> Iterator[tuple[ManagedProcess, str]]:
    """An operator for `own_namespace` with JSON logs, a metrics endpoint, and jars allowed from local
    files only (FLINKOP_JAR_ALLOWED_HOSTS=file)."""
    port = free_port()
    proc = start_operator(
        bed_dir / f"{own_namespace}-observed",
        kube.admin_kubeconfig,
        args=("--namespace", own_namespace, "--log-format", "json", "--metrics", f"127.0.0.1:{port}"),
        extra_env={"FLINKOP_JAR_ALLOWED_HOSTS": "file"},
    )
    try:
        yield proc, f"http://127.0.0.1:{port}/metrics"
    finally:
        proc.stop()


def create_secret(kube: Any, namespace: str, name: str, data: dict[str, bytes]) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def everything_said_about(kube: Any, jobs: FlinkJobs, namespace: str, name: str, operator: ManagedProcess) -> str:
    """The operator's whole log, the FlinkJob's Events and the FlinkJob itself (status included)."""
    events = kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    return "\n".join([operator.log_path.read_text(), events, json.dumps(jobs.get(name))])


def test_upgrade_through_an_authenticating_tls_proxy_keeps_secrets_out_of_logs_events_and_status(
    kube: Any,
    flink: Any,
    flink_rest: Any,
    own_namespace: str,
    test_job_jar: Path,
    bed_dir: Path,
    observed_operator: tuple[ManagedProcess, str],
) -> None:
    operator, metrics_url = observed_operator
    workdir = bed_dir / f"{own_namespace}-tls"
    ca = make_ca(workdir)
    cert, key = issue_server_cert(ca, workdir, "flink-proxy", ip="127.0.0.1")
    password = f"pw-{secrets.token_hex(12)}"
    basic = "Basic " + base64.b64encode(f"flink:{password}".encode()).decode()
    proxy = FlinkProxy(flink.rest_url, tls=(cert, key), authorization=basic)
    try:
        create_secret(kube, own_namespace, "flink-auth", {"username": b"flink", "password": password.encode()})
        create_secret(kube, own_namespace, "flink-ca", {"ca.crt": ca.cert.read_bytes()})
        jobs = FlinkJobs(kube.api_client(), own_namespace)
        spec = {
            "flinkRestUrl": proxy.url,
            "restAuthSecretRef": {"name": "flink-auth"},
            "tls": {"caSecretRef": {"name": "flink-ca"}},
            "jar": {"uri": test_job_jar.as_uri()},
            "parallelism": 2,
            "args": RATE_ARGS,
        }
        jobs.create("guarded", spec)
        old_job = jobs.wait("guarded", is_ready_at_current_generation, "Ready", timeout=120)["status"]["jobId"]
        before = flink_rest.wait_state_counter_at_least(old_job, 100)
        jobs.patch_spec("guarded", {"parallelism": 3})
        done = jobs.wait("guarded", is_ready_at_current_generation, "Ready after the upgrade", timeout=120)
        new_job = done["status"]["jobId"]
        assert new_job != old_job
        assert flink_rest.restored_from(new_job) == done["status"]["lastSavepoint"]["path"]
        assert flink_rest.wait_state_counter_at_least(new_job, before + 1) > before
        assert proxy.calls("POST", r"/jobs/.*/stop$"), "the upgrade went through the proxy"
        assert proxy.refused == [], "every request carried the credentials"

        # A wrong token: refused by the proxy, reported, and the token is not repeated anywhere.
        token = f"tok-{secrets.token_hex(12)}"
        create_secret(kube, own_namespace, "wrong-token", {"token": token.encode()})
        jobs.create("wrong", {**spec, "restAuthSecretRef": {"name": "wrong-token"}})
        refused = jobs.wait(
            "wrong", lambda r: "restAuthSecretRef" in r.get("status", {}).get("message", ""), "refusal", timeout=60
        )
        assert "401" in refused["status"]["message"]
        # A Secret that does not exist: Stalled, naming it.
        jobs.create("missing", {**spec, "restAuthSecretRef": {"name": "no-such-secret"}})
        missing = jobs.wait("missing", lambda r: is_stalled(r, "CredentialsUnavailable"), "Stalled", timeout=60)
        assert f"{own_namespace}/no-such-secret" in missing["status"]["message"]

        said = everything_said_about(kube, jobs, own_namespace, "guarded", operator)
        said += "".join(json.dumps(jobs.get(n)) for n in ("wrong", "missing"))
        for secret_value in (password, base64.b64encode(f"flink:{password}".encode()).decode(), token):
            assert secret_value not in said
        assert ca.key.read_text().strip().splitlines()[1] not in said

        # Metrics: the upgrade is counted; JSON logs: every line is JSON, the handled ones name the FlinkJob.
        scraped = requests.get(metrics_url, timeout=5).text
        assert 'flinkop_upgrades_total{kind="upgrade",outcome="succeeded"} 1' in scraped, scraped
        assert 'flinkop_savepoint_duration_seconds_count{reason="upgrade"} 1' in scraped, scraped
        assert 'flinkop_flinkjobs{phase="Running"} 1' in scraped, scraped
        lines = [json.loads(line) for line in operator.log_path.read_text().splitlines() if line.strip()]
        named = [line for line in lines if line.get("flinkjob") == f"{own_namespace}/guarded"]
        assert any(line["message"].startswith("done: ") for line in named), named  # each action taken
    finally:
        proxy.close()
        flink_rest.cancel_running_jobs()


class _JarServer:
    """An http server with a jar on it, counting requests, on a host the operator does not allow."""

    def __init__(self, jar: Path) -> None:
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests += 1
                body = jar.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/{uuid.uuid4().hex}/job.jar"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def test_a_jar_from_a_host_off_the_allow_list_is_never_fetched_nor_sent_to_flink(
    kube: Any, flink: Any, own_namespace: str, test_job_jar: Path, observed_operator: tuple[ManagedProcess, str]
) -> None:
    server = _JarServer(test_job_jar)
    proxy = FlinkProxy(flink.rest_url)
    try:
        jobs = FlinkJobs(kube.api_client(), own_namespace)
        jobs.create("remote", {"flinkRestUrl": proxy.url, "jar": {"uri": server.url}, "parallelism": 1})
        stalled = jobs.wait("remote", lambda r: is_stalled(r, "JarHostNotAllowed"), "Stalled", timeout=60)
        assert "FLINKOP_JAR_ALLOWED_HOSTS" in stalled["status"]["message"]
        assert server.requests == 0
        assert proxy.calls("POST", r"/jars/upload") == [] and proxy.calls("POST", r"/run") == []
        assert "jobId" not in stalled["status"]
    finally:
        server.close()
        proxy.close()
