"""The bed's cluster DNS responder (testbed.cluster_dns), on real UDP sockets on loopback: it answers
names of the cluster domain from its lookup and refuses the rest, forwarding nothing."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from testbed.cluster_dns import NXDOMAIN, REFUSED, answer, serve

SERVICES = {"flink-jobmanager.team-a.svc.cluster.local": ["10.200.0.7"]}


def query(name: str, qtype: int = 1, ident: int = 0x1234) -> bytes:
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", qtype, 1)


def parse(response: bytes) -> tuple[int, int, list[str]]:
    ident, flags, _qd, ancount, _ns, _ar = struct.unpack("!HHHHHH", response[:12])
    addresses = [socket.inet_ntoa(response[-4 * (i + 1) : len(response) - 4 * i]) for i in range(ancount)][::-1]
    return ident, flags & 0xF, addresses


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    srv = serve("127.0.0.1", 0, SERVICES.get, "cluster.local")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address  # type: ignore[misc]
    finally:
        srv.shutdown()
        srv.server_close()


def ask(address: tuple[str, int], packet: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(packet, address)
        return sock.recv(512)


def test_a_service_name_of_the_cluster_domain_is_answered_with_its_address(server: tuple[str, int]) -> None:
    ident, rcode, addresses = parse(ask(server, query("flink-jobmanager.team-a.svc.cluster.local")))
    assert (ident, rcode, addresses) == (0x1234, 0, ["10.200.0.7"])


def test_an_unknown_name_of_the_cluster_domain_is_nxdomain(server: tuple[str, int]) -> None:
    _, rcode, addresses = parse(ask(server, query("flink-jobmanager.team-a.team-a.svc.cluster.local")))
    assert (rcode, addresses) == (NXDOMAIN, [])


def test_a_name_outside_the_cluster_domain_is_refused_not_forwarded(server: tuple[str, int]) -> None:
    _, rcode, addresses = parse(ask(server, query("example.com")))
    assert (rcode, addresses) == (REFUSED, [])


def test_aaaa_for_a_known_name_is_an_empty_answer(server: tuple[str, int]) -> None:
    _, rcode, addresses = parse(ask(server, query("flink-jobmanager.team-a.svc.cluster.local", qtype=28)))
    assert (rcode, addresses) == (0, [])


@pytest.mark.parametrize("packet", [b"", b"\x01", b"\x12\x34" + b"\xff" * 20, query("a.b")[:-3]])
def test_malformed_packets_get_formerr_or_nothing_and_never_an_exception(packet: bytes) -> None:
    response = answer(packet, SERVICES.get, "cluster.local")
    assert response is None or struct.unpack("!H", response[2:4])[0] & 0xF == 1
