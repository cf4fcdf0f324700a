"""The network guard: which addresses the operator may never send a request to, whatever a spec says.

A FlinkJob's author chooses `spec.flinkRestUrl` and `spec.jar.uri`; the operator's pod sits inside the
cluster network. The guard refuses, for Flink REST calls and jar fetches alike, every address in the
denied networks: by default link-local (169.254.0.0/16, fe80::/10, where clouds serve instance
metadata and credentials) and the known cloud metadata addresses and names. It is checked on the
addresses a name resolves to (an IP literal is its own address), on every redirect hop, and again
where the connection is opened: `guarded_http` connects to the very address that was checked, so a
name that resolves elsewhere a moment later (DNS rebinding) gains nothing.

The resolver is injectable: unit tests check the real defaults without resolving or connecting.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlparse

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]  # (host, port) -> the addresses it resolves to

LINK_LOCAL = ("169.254.0.0/16", "fe80::/10")
# Metadata endpoints outside link-local: AWS over IPv6, Alibaba Cloud. (169.254.169.254, used by AWS,
# GCP, Azure and OpenStack, and AWS ECS's 169.254.170.2 are in link-local already.)
METADATA_ADDRESSES = ("fd00:ec2::254/128", "100.100.100.200/32")
DEFAULT_DENIED_NETWORKS = (*LINK_LOCAL, "169.254.169.254/32", *METADATA_ADDRESSES)
# Names that mean a metadata service whatever they resolve to (GCP's, and the short forms some images use).
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data"})

DENIED_SETTING = "FLINKOP_DENIED_NETWORKS"
EXTRA_SETTING = "FLINKOP_EXTRA_DENIED_NETWORKS"


class NetworkDenied(Exception):
    """A request would go to a denied address; the message names the host, address and network."""


def parse_networks(text: str, setting: str) -> tuple[IPNetwork, ...]:
    """`10.0.0.0/8, fd00::/8` -> networks; raises ValueError naming the setting and the bad entry."""
    networks = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(f"{setting}: {entry!r} is not a network (write it as 10.0.0.0/8 or fd00::/8)") from exc
    return tuple(networks)


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _address(text: str) -> IPAddress | None:
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])  # fe80::1%eth0: the zone is not part of it
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    return addr


@dataclass
class NetGuard:
    denied: tuple[IPNetwork, ...] = field(default_factory=lambda: parse_networks(",".join(DEFAULT_DENIED_NETWORKS), ""))
    denied_names: frozenset[str] = METADATA_NAMES
    resolver: Resolver = system_resolver
    cache_seconds: float = 10.0  # how long a vetted resolution is reused (the pass's check and the connection)
    _cache: dict[tuple[str, int], tuple[float, tuple[str, ...]]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, denied: Iterable[str], extra: Iterable[str] = ()) -> NetGuard:
        networks = tuple(ipaddress.ip_network(n, strict=False) for n in (*denied, *extra))
        return cls(denied=networks)

    def denied_network_of(self, address: str) -> IPNetwork | None:
        addr = _address(address)
        if addr is None:
            return None
        for network in self.denied:
            if addr.version == network.version and addr in network:
                return network
        return None

    def check_name(self, host: str, what: str) -> None:
        """Refuses a metadata name or a denied IP literal, without resolving anything (the webhook's check)."""
        name = host.lower().rstrip(".").strip("[]")
        if name in self.denied_names:
            raise NetworkDenied(
                f"{what}: host {host} is a cloud metadata service; the operator never sends requests there"
            )
        network = self.denied_network_of(name)
        if network is not None:
            raise NetworkDenied(
                f"{what}: address {name} is in the denied network {network} ({DENIED_SETTING} / {EXTRA_SETTING}); "
                "the operator never sends requests there"
            )

    def vet(self, host: str, port: int, what: str) -> tuple[str, ...]:
        """The addresses of `host` a connection may go to: all of them, or NetworkDenied when any one is denied
        (a name that resolves into a denied network is refused as a whole). OSError when it does not resolve."""
        self.check_name(host, what)
        key = (host.lower().rstrip(".").strip("[]"), port)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        if _address(key[0]) is not None:
            addresses: tuple[str, ...] = (key[0],)
        else:
            addresses = tuple(self.resolver(key[0], port))  # OSError when it does not resolve: not a refusal
        for address in addresses:
            network = self.denied_network_of(address)
            if network is not None:
                raise NetworkDenied(
                    f"{what}: host {host} resolves to {address}, in the denied network {network} "
                    f"({DENIED_SETTING} / {EXTRA_SETTING}); the operator never sends requests there"
                )
        if not addresses:
            raise OSError(f"host {host} resolves to no address")
        with self._lock:
            self._cache[key] = (time.monotonic(), addresses)
        return addresses

    def vet_url(self, url: str, what: str) -> tuple[str, ...]:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise NetworkDenied(f"{what}: {url!r} is not an http:// or https:// URL with a host")
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError:
            raise NetworkDenied(f"{what}: {url!r} has an invalid port") from None
        return self.vet(parsed.hostname, port, what)

    def check_url_statically(self, url: str, what: str) -> None:
        """The checks that need no DNS (a metadata name, a denied IP literal), for the admission webhook."""
        host = urlparse(url).hostname
        if host:
            self.check_name(host, what)
