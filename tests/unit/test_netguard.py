"""The network guard: the real denied defaults, checked with an injected resolver (nothing is ever resolved
for real or sent to a metadata address), the settings that change them, and connections pinned to the
address that was checked (loopback servers only; 127.0.0.2 stands for a denied address)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from flinkop.guarded_http import guarded_session
from flinkop.netguard import DEFAULT_DENIED_NETWORKS, NetGuard, NetworkDenied, parse_networks
from flinkop.settings import OperatorSettings
from testbed.hostile_server import HostileServer


def resolver_of(table: dict[str, list[str]]) -> object:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise AssertionError(f"{host} must not be resolved for real in a unit test")
        return table[host]

    return resolve


def no_resolving(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} was resolved, but the check needs no DNS")


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack metadata
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.0.1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "fe80::1",
        "100.100.100.200",  # Alibaba Cloud metadata
    ],
)
def test_the_default_guard_refuses_link_local_and_metadata_literals_without_resolving(address: str) -> None:
    guard = NetGuard(resolver=no_resolving)
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(NetworkDenied, match=r"denied network"):
        guard.vet_url(f"http://{host}:8081/", "spec.flinkRestUrl")


def test_an_ipv4_mapped_ipv6_metadata_address_is_refused_too() -> None:
    with pytest.raises(NetworkDenied, match=r"169.254.169.254"):
        NetGuard(resolver=no_resolving).vet_url("http://[::ffff:169.254.169.254]/", "spec.jar.uri")


@pytest.mark.parametrize("name", ["metadata.google.internal", "METADATA.google.internal.", "metadata.goog"])
def test_metadata_host_names_are_refused_by_name_whatever_they_resolve_to(name: str) -> None:
    with pytest.raises(NetworkDenied, match=r"cloud metadata service"):
        NetGuard(resolver=no_resolving).vet_url(f"http://{name}/computeMetadata/v1/", "spec.flinkRestUrl")


def test_a_name_that_resolves_into_a_denied_network_is_refused_naming_host_address_and_network() -> None:
    guard = NetGuard(resolver=resolver_of({"flink.team-a.svc": ["10.0.0.7", "169.254.169.254"]}))  # type: ignore[arg-type]
    with pytest.raises(NetworkDenied) as refused:
        guard.vet_url("http://flink.team-a.svc:8081", "spec.flinkRestUrl")
    message = str(refused.value)
    assert "spec.flinkRestUrl" in message and "flink.team-a.svc" in message
    assert "169.254.169.254" in message and "169.254.0.0/16" in message
    assert "FLINKOP_DENIED_NETWORKS" in message


def test_a_name_that_resolves_outside_the_denied_networks_is_vetted_with_its_addresses() -> None:
    guard = NetGuard(resolver=resolver_of({"flink.team-a.svc": ["10.0.0.7"]}))  # type: ignore[arg-type]
    assert guard.vet_url("http://flink.team-a.svc:8081", "spec.flinkRestUrl") == ("10.0.0.7",)


def test_a_name_that_does_not_resolve_is_not_a_refusal_but_an_os_error() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(OSError, match=r"not known"):
        NetGuard(resolver=fails).vet_url("http://nowhere.invalid", "spec.flinkRestUrl")


def test_settings_default_to_link_local_and_metadata_and_add_extra_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLINKOP_DENIED_NETWORKS", raising=False)
    monkeypatch.setenv("FLINKOP_EXTRA_DENIED_NETWORKS", "127.0.0.2/32, 10.96.0.1")
    settings = OperatorSettings.from_env()
    assert settings.denied_networks == DEFAULT_DENIED_NETWORKS
    guard = settings.net_guard()
    assert guard.denied_network_of("127.0.0.2") is not None and guard.denied_network_of("10.96.0.1") is not None
    assert guard.denied_network_of("169.254.169.254") is not None
    assert guard.denied_network_of("127.0.0.1") is None


def test_the_denied_networks_setting_replaces_the_defaults_and_none_empties_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLINKOP_DENIED_NETWORKS", "none")
    assert OperatorSettings.from_env().net_guard().denied_network_of("169.254.169.254") is None
    monkeypatch.setenv("FLINKOP_DENIED_NETWORKS", "10.0.0.0/8")
    guard = OperatorSettings.from_env().net_guard()
    assert guard.denied_network_of("10.1.2.3") is not None and guard.denied_network_of("169.254.169.254") is None


def test_a_malformed_network_setting_stops_the_operator_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLINKOP_EXTRA_DENIED_NETWORKS", "10.0.0.0/8, not-a-net")
    with pytest.raises(SystemExit, match=r"FLINKOP_EXTRA_DENIED_NETWORKS: 'not-a-net' is not a network"):
        OperatorSettings.from_env()


def test_parse_networks_accepts_single_addresses_as_host_networks() -> None:
    assert [str(n) for n in parse_networks("127.0.0.2, ::1", "X")] == ["127.0.0.2/32", "::1/128"]


# -- connections go to the vetted address ------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[HostileServer]:
    s = HostileServer().start()
    yield s
    s.close()


@pytest.fixture
def denied_server() -> Iterator[HostileServer]:
    s = HostileServer(host="127.0.0.2").start()
    yield s
    s.close()


def test_the_connection_goes_to_the_vetted_address_and_keeps_the_host_header(server: HostileServer) -> None:
    guard = NetGuard(resolver=resolver_of({"flink.example.test": ["127.0.0.1"]}))  # type: ignore[arg-type]
    session = guarded_session(guard, "Flink REST")
    answer = session.get(f"http://flink.example.test:{server.port}/good/none", timeout=5)
    assert answer.status_code == 404
    assert server.seen[-1].headers["Host"] == f"flink.example.test:{server.port}"


def test_a_name_rebound_to_a_denied_address_after_the_check_is_refused_when_connecting(
    denied_server: HostileServer,
) -> None:
    # First answer (the pass's check): an allowed address; the next one (at connect time): a denied one.
    answers = iter([["127.0.0.1"], ["127.0.0.2"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    guard = NetGuard(denied=parse_networks("127.0.0.2/32", "test"), resolver=rebinding, cache_seconds=0)
    guard.vet_url(f"http://rebind.example.test:{denied_server.port}/", "spec.flinkRestUrl")
    with pytest.raises(NetworkDenied, match=r"127.0.0.2"):
        guarded_session(guard, "Flink REST").get(f"http://rebind.example.test:{denied_server.port}/x", timeout=5)
    assert denied_server.seen == [], "nothing reached the denied address"


def test_a_vetted_resolution_is_what_the_connection_uses_within_its_lifetime(denied_server: HostileServer) -> None:
    # The check resolved to 127.0.0.1; DNS now says 127.0.0.2: the connection goes where the check said.
    answers = iter([["127.0.0.1"], ["127.0.0.2"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    guard = NetGuard(denied=(), resolver=rebinding, cache_seconds=60)
    guard.vet_url(f"http://pinned.example.test:{denied_server.port}/", "spec.flinkRestUrl")
    with pytest.raises(requests.ConnectionError):  # nothing listens on 127.0.0.1 at that port
        guarded_session(guard, "Flink REST").get(f"http://pinned.example.test:{denied_server.port}/x", timeout=5)
    assert denied_server.seen == []


def test_a_redirect_into_a_denied_network_is_refused_before_it_is_followed(
    server: HostileServer, denied_server: HostileServer
) -> None:
    server.redirect_to = denied_server.url("")
    guard = NetGuard(denied=parse_networks("127.0.0.2/32", "test"), resolver=no_resolving)
    with pytest.raises(NetworkDenied, match=r"127.0.0.2"):
        guarded_session(guard, "jar fetch").get(server.url("/redirect/job.jar"), timeout=5)
    assert denied_server.seen == [] and server.paths() == ["/redirect/job.jar"]
