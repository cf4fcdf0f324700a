"""The bed node's cluster DNS: a small DNS server on the host's address on the pod bridge, answering
only names of the cluster domain from the apiserver, as CoreDNS's kubernetes plugin does for them:

  <service>.<namespace>.svc.<domain>   A: a headless Service's endpoint addresses (ready ones, and the
                                       not-ready ones when it publishes them), another Service's
                                       ClusterIP; NXDOMAIN when there is no such Service or no address

Anything else is refused (REFUSED): nothing is forwarded, so pods resolve nothing outside the cluster.
AAAA and other types for a known name get an empty answer (the node's pods have IPv4 addresses only).
Answers are cached for a second. The kubelet points pods at it (`clusterDNS`), so pods find each other
by Service name as on a real cluster; there is still no kube-proxy, so a ClusterIP is not routed: a
Service meant for pods of the node to reach by name is headless (the operator's application clusters'
are).

Run: python -m testbed.cluster_dns --listen IP [--port 53] --kubeconfig FILE [--domain cluster.local]
"""

from __future__ import annotations

import argparse
import ipaddress
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

NOERROR, NXDOMAIN, REFUSED, FORMERR = 0, 3, 5, 1
TYPE_A, CLASS_IN = 1, 1
TTL = 5
_CACHE_SECONDS = 1.0


def parse_question(packet: bytes) -> tuple[int, int, str, int, int, int] | None:
    """(id, flags, name, qtype, qclass, end offset of the question) of a one-question query, or None."""
    if len(packet) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1 or flags & 0x8000:  # exactly one question, and a query
        return None
    labels: list[str] = []
    offset = 12
    while True:
        if offset >= len(packet):
            return None
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0 or offset + length > len(packet) or len(labels) > 127:
            return None  # no compression in a question
        labels.append(packet[offset : offset + length].decode("ascii", errors="replace"))
        offset += length
    if offset + 4 > len(packet):
        return None
    qtype, qclass = struct.unpack("!HH", packet[offset : offset + 4])
    return ident, flags, ".".join(labels).lower(), qtype, qclass, offset + 4


def answer(packet: bytes, lookup: Callable[[str], list[str] | None], domain: str) -> bytes | None:
    """The response to `packet`. `lookup(name)` gives a cluster-domain name's IPv4 addresses (None: no such name)."""
    question = parse_question(packet)
    if question is None:
        if len(packet) >= 2:
            return packet[:2] + struct.pack("!HHHHH", 0x8000 | FORMERR, 0, 0, 0, 0)
        return None
    ident, flags, name, qtype, qclass, end = question
    rd = flags & 0x0100
    addresses: list[str] = []
    if not (name == domain or name.endswith("." + domain)):
        rcode = REFUSED
    else:
        found = lookup(name)
        if found is None:
            rcode = NXDOMAIN
        else:
            rcode = NOERROR
            if qtype == TYPE_A and qclass == CLASS_IN:
                addresses = found
    header = struct.pack("!HHHHHH", ident, 0x8000 | 0x0400 | rd | rcode, 1, len(addresses), 0, 0)
    records = b"".join(
        struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + ipaddress.IPv4Address(a).packed for a in addresses
    )
    return header + packet[12:end] + records


class ServiceResolver:
    """Service names to addresses from the apiserver (read per name, cached briefly)."""

    def __init__(self, api_client: Any, domain: str) -> None:
        import kubernetes

        self.core = kubernetes.client.CoreV1Api(api_client)
        self.suffix = f".svc.{domain}"
        self.cache: dict[str, tuple[float, list[str] | None]] = {}
        self.lock = threading.Lock()

    def __call__(self, name: str) -> list[str] | None:
        with self.lock:
            hit = self.cache.get(name)
            if hit is not None and time.monotonic() - hit[0] < _CACHE_SECONDS:
                return hit[1]
        found = self._resolve(name)
        with self.lock:
            self.cache[name] = (time.monotonic(), found)
        return found

    def _resolve(self, name: str) -> list[str] | None:
        if not name.endswith(self.suffix):
            return None
        parts = name[: -len(self.suffix)].split(".")
        if len(parts) != 2:
            return None
        service_name, namespace = parts
        import kubernetes

        try:
            service = self.core.read_namespaced_service(service_name, namespace, _request_timeout=3)
        except kubernetes.client.ApiException:
            return None
        spec: Any = service.spec
        cluster_ip = spec.cluster_ip
        if cluster_ip and cluster_ip != "None":
            return [cluster_ip]
        try:
            endpoints = self.core.read_namespaced_endpoints(service_name, namespace, _request_timeout=3)
        except kubernetes.client.ApiException:
            return None
        addresses = []
        for subset in endpoints.subsets or []:
            for address in subset.addresses or []:
                addresses.append(address.ip)
            if spec.publish_not_ready_addresses:
                for address in subset.not_ready_addresses or []:
                    addresses.append(address.ip)
        v4 = sorted({a for a in addresses if ipaddress.ip_address(a).version == 4})
        return v4 or None


def serve(listen: str, port: int, lookup: Callable[[str], list[str] | None], domain: str) -> socketserver.BaseServer:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            packet, sock = self.request
            try:
                response = answer(packet, lookup, domain)
            except Exception as exc:  # one bad query never stops the server
                print(f"cluster-dns: query failed: {exc!r}", file=sys.stderr, flush=True)
                response = None
            if response is not None:
                sock.sendto(response, self.client_address)

    server = socketserver.ThreadingUDPServer((listen, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed.cluster_dns", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--domain", default="cluster.local")
    args = parser.parse_args(argv)
    import kubernetes

    api_client = kubernetes.config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    server = serve(args.listen, args.port, ServiceResolver(api_client, args.domain), args.domain)
    print(f"cluster-dns: answering *.svc.{args.domain} on {args.listen}:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
