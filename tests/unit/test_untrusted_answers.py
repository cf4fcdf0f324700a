"""The Flink REST client and the jar fetcher against a hostile loopback server: every misbehaviour ends
in an error that says what is wrong, within the total deadline, without reading more than the cap,
and without the request's credentials in the message. file:// jars and the Deployment's placeholder
allow-list refuse with a clear message."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from flinkop.credentials import RestCredentials
from flinkop.flink_client import FlinkClient, FlinkDenied, FlinkError, FlinkUnreachable
from flinkop.guarded_http import guarded_session
from flinkop.jars import JarError, JarFetcher
from flinkop.netguard import NetGuard, parse_networks
from flinkop.settings import OperatorSettings
from testbed.hostile_server import HostileServer

TOKEN = "tok-9f8e7d6c5b4a"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    s = HostileServer(slow_seconds=30).start()
    yield s
    s.close()


def client(server: HostileServer, kind: str, **kwargs: object) -> FlinkClient:
    return FlinkClient(
        server.url(f"/{kind}"),
        timeout=1.0,
        retries=0,
        credentials=RestCredentials(token=TOKEN),
        max_response_bytes=1 << 20,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_slow_flink_endpoint_is_cut_off_at_the_deadline(server: HostileServer) -> None:
    with pytest.raises(FlinkUnreachable, match=r"no complete answer within 1 s"):
        client(server, "slow").jobs_overview()


def test_a_body_that_never_finishes_is_cut_off_at_the_total_deadline_not_per_read(server: HostileServer) -> None:
    # One byte a second: every read succeeds within the per-read timeout; only a total deadline ends it.
    with pytest.raises(FlinkUnreachable, match=r"no complete answer within 1 s"):
        client(server, "drip").jobs_overview()


def test_a_100_mb_answer_is_refused_at_the_size_cap_without_being_read(server: HostileServer) -> None:
    with pytest.raises(FlinkError, match=r"over the limit of 1048576.*FLINKOP_FLINK_MAX_RESPONSE_BYTES"):
        client(server, "huge").jobs_overview()


def test_a_redirect_from_flink_is_not_followed(server: HostileServer) -> None:
    server.redirect_to = "http://127.0.0.3:9"
    with pytest.raises(FlinkError, match=r"HTTP 302: a redirect to http://127.0.0.3:9/jobs/overview; .*not follow"):
        client(server, "redirect").jobs_overview()


def test_an_html_answer_is_an_error_saying_it_is_not_json(server: HostileServer) -> None:
    with pytest.raises(FlinkError, match=r"list jobs .* answer is not JSON: '<html>"):
        client(server, "html").jobs_overview()


@pytest.mark.parametrize("call", ["jobs_overview", "config", "list_jars", "job"])
def test_json_of_the_wrong_shape_is_an_error_naming_the_call(server: HostileServer, call: str) -> None:
    c = client(server, "shape")
    with pytest.raises(FlinkError, match=r"not shaped as Flink's"):
        getattr(c, call)(*(["0" * 32] if call == "job" else []))


def test_an_endpoint_echoing_the_authorization_header_gets_it_redacted(server: HostileServer) -> None:
    with pytest.raises(FlinkError) as failed:
        client(server, "echo").jobs_overview()
    assert server.seen[-1].headers["Authorization"] == f"Bearer {TOKEN}", "the token was sent"
    assert TOKEN not in str(failed.value) and "[redacted]" in str(failed.value)


def test_basic_auth_echoed_in_base64_is_redacted_too(server: HostileServer) -> None:
    c = FlinkClient(
        server.url("/echo"), timeout=1.0, retries=0, credentials=RestCredentials(username="flink", password="pa55-w0rd")
    )
    with pytest.raises(FlinkError) as failed:
        c.jobs_overview()
    assert "Basic " in server.seen[-1].headers["Authorization"]
    echoed = server.seen[-1].headers["Authorization"].split()[1]
    assert echoed not in str(failed.value) and "pa55-w0rd" not in str(failed.value)


def test_a_flink_endpoint_in_a_denied_network_is_never_contacted() -> None:
    denied = HostileServer(host="127.0.0.2").start()
    try:
        guard = NetGuard(denied=parse_networks("127.0.0.2/32", "test"))
        c = FlinkClient(denied.url(""), timeout=1.0, session=guarded_session(guard, "Flink REST"))
        with pytest.raises(FlinkDenied, match=r"denied network 127.0.0.2/32"):
            c.overview()
        assert denied.seen == []
    finally:
        denied.close()


# -- jars -------------------------------------------------------------------------------------------


def fetcher(tmp_path: Path, **kwargs: object) -> JarFetcher:
    return JarFetcher(tmp_path / "cache", max_bytes=1 << 20, deadline=2.0, **kwargs)  # type: ignore[arg-type]


def test_a_slow_jar_server_is_cut_off_at_the_fetch_deadline(server: HostileServer, tmp_path: Path) -> None:
    with pytest.raises(JarError, match=r"not complete within 2 s \(FLINKOP_JAR_FETCH_TIMEOUT\)") as failed:
        fetcher(tmp_path).fetch(server.url("/slow/job.jar"), None)
    assert failed.value.reason == "JarFetchFailed"


def test_a_jar_body_that_never_finishes_is_cut_off_at_the_fetch_deadline(server: HostileServer, tmp_path: Path) -> None:
    with pytest.raises(JarError, match=r"not complete within 2 s"):
        fetcher(tmp_path).fetch(server.url("/drip/job.jar"), None)


def test_a_kept_alive_connection_reused_for_a_slow_answer_is_cut_off_at_the_deadline_too(tmp_path: Path) -> None:
    jar = tmp_path / "job.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    s = HostileServer(slow_seconds=30, files={"job.jar": jar}).start()
    try:
        fetch = fetcher(tmp_path)
        fetch.fetch(s.url("/good/job.jar"), None)  # leaves a kept-alive connection in the pool
        with pytest.raises(JarError, match=r"not complete within 2 s"):
            fetch.fetch(s.url("/drip/job.jar"), None)
    finally:
        s.close()


def test_a_100_mb_jar_is_refused_at_the_size_limit(server: HostileServer, tmp_path: Path) -> None:
    with pytest.raises(JarError, match=r"over the limit of 1048576 bytes") as failed:
        fetcher(tmp_path).fetch(server.url("/huge/job.jar"), None)
    assert failed.value.reason == "JarTooLarge"
    assert not list((tmp_path / "cache").glob("*.part")), "the partial download is removed"


def test_a_jar_redirect_to_a_denied_host_is_refused_before_it_is_followed(
    server: HostileServer, tmp_path: Path
) -> None:
    denied = HostileServer(host="127.0.0.2").start()
    try:
        server.redirect_to = denied.url("")
        guard = NetGuard(denied=parse_networks("127.0.0.2/32", "test"))
        with pytest.raises(JarError, match=r"127.0.0.2") as failed:
            fetcher(tmp_path, guard=guard).fetch(server.url("/redirect/job.jar"), None)
        assert failed.value.reason == "DeniedNetwork" and denied.seen == []
    finally:
        denied.close()


def test_a_jar_redirect_to_a_host_off_the_allow_list_is_refused_before_it_is_followed(
    server: HostileServer, tmp_path: Path
) -> None:
    server.redirect_to = "http://127.0.0.3:9"
    with pytest.raises(JarError, match=r"redirected from .* not in the operator's FLINKOP_JAR_ALLOWED_HOSTS") as failed:
        fetcher(tmp_path, allowed_hosts=("127.0.0.1",)).fetch(server.url("/redirect/job.jar"), None)
    assert failed.value.reason == "JarHostNotAllowed"


def test_an_html_page_instead_of_a_jar_is_not_a_jar(server: HostileServer, tmp_path: Path) -> None:
    with pytest.raises(JarError, match=r"is not a jar") as failed:
        fetcher(tmp_path).fetch(server.url("/html/job.jar"), None)
    assert failed.value.reason == "NotAJar"


def test_a_jar_server_error_is_reported_by_status_only(server: HostileServer, tmp_path: Path) -> None:
    with pytest.raises(JarError, match=r"HTTP 500$"):
        fetcher(tmp_path).fetch(server.url("/echo/job.jar"), None)


def test_file_jars_are_refused_by_default_saying_which_setting_enables_them(tmp_path: Path) -> None:
    jar = tmp_path / "job.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    with pytest.raises(JarError, match=r"file:// jars .* are off; .* FLINKOP_JAR_ALLOW_FILE=true") as failed:
        JarFetcher(tmp_path / "cache").fetch(jar.as_uri(), None)
    assert failed.value.reason == "JarHostNotAllowed"
    assert JarFetcher(tmp_path / "cache", allow_file=True).fetch(jar.as_uri(), None).path == jar


def test_the_deployments_placeholder_allow_list_fails_every_jar_fetch_saying_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deployment = yaml.safe_load((REPO / "deploy" / "operator.yaml").read_text())
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    for entry in env:
        if "value" in entry:
            monkeypatch.setenv(entry["name"], entry["value"])
    monkeypatch.setenv("POD_NAMESPACE", "flinkop-system")  # the Deployment takes it from the pod
    settings = OperatorSettings.from_env()
    fetch = JarFetcher(tmp_path, allowed_hosts=settings.jar_allowed_hosts, allow_file=settings.jar_allow_file)
    with pytest.raises(JarError, match=r"FLINKOP_JAR_ALLOWED_HOSTS is still the placeholder") as failed:
        fetch.fetch("https://repo.example.com/jobs/job.jar", None)
    assert failed.value.reason == "JarHostNotAllowed"
    assert settings.cluster_access_configmap == ("flinkop-system", "flinkop-cluster-access")
    assert not settings.jar_allow_file
