"""HTTP for untrusted endpoints (Flink REST, jar servers): vetted addresses, a total deadline, capped bodies.

- `guarded_session(guard)` is a `requests.Session` whose connections are opened only to addresses the
  `NetGuard` vetted, and to exactly those: the name is resolved once, checked, and the socket connects
  to the checked address (the Host header and TLS server name stay the URL's host). So a check cannot
  be raced by DNS (rebinding), and every redirect hop is checked again when its connection opens.
- `total_deadline(seconds)`: requests made inside it are cut off when it passes, however slowly the
  other side drips its status line, headers or body (`requests`' own timeout is per read only). A
  single reaper thread shuts the in-flight sockets down at the deadline.
- `read_capped(response, limit)`: the body, or `BodyTooLarge` as soon as it exceeds `limit` bytes.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from flinkop.netguard import NetGuard, NetworkDenied


class BodyTooLarge(Exception):
    """An answer's body exceeded the size the operator reads."""


class DeadlinePassed(Exception):
    """A request inside `total_deadline` was cut off at the deadline."""


# -- the total deadline ------------------------------------------------------------------------


@dataclass(eq=False)
class _Scope:
    deadline: float
    sockets: list[socket.socket] = field(default_factory=list)
    expired: bool = False
    finished: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sock: socket.socket) -> None:
        with self.lock:
            if self.expired:
                _shut(sock)
            else:
                self.sockets.append(sock)

    def expire(self) -> None:
        with self.lock:
            if self.finished:
                return
            self.expired = True
            for sock in self.sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for an SSLSocket: a reader blocked in it returns at once.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Reaper:
    """One thread that expires scopes at their deadlines."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Scope]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, scope: _Scope) -> None:
        with self._cond:
            heapq.heappush(self._heap, (scope.deadline, next(self._counter), scope))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="flinkop-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, _, scope = self._heap[0]
                now = time.monotonic()
                if scope.finished:
                    heapq.heappop(self._heap)
                    continue
                if deadline > now:
                    self._cond.wait(deadline - now)
                    continue
                heapq.heappop(self._heap)
            scope.expire()


_REAPER = _Reaper()
_current_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("flinkop_deadline", default=None)


@contextmanager
def total_deadline(seconds: float) -> Iterator[_Scope]:
    """Requests made in this block (in this thread) end at the latest `seconds` from now. Check
    `scope.expired` when one fails: the failure was then the deadline's doing."""
    scope = _Scope(time.monotonic() + seconds)
    token = _current_scope.set(scope)
    _REAPER.watch(scope)
    try:
        yield scope
    finally:
        _current_scope.reset(token)
        with scope.lock:
            scope.finished = True
            scope.sockets.clear()


# -- connections to vetted addresses -----------------------------------------------------------


class _GuardedConnectionMixin:
    guard: NetGuard
    what: str
    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    _dns_host: str

    sock: socket.socket | None

    def request(self, *args: Any, **kwargs: Any) -> None:
        # A kept-alive connection is reused from the pool without connecting again: it joins the
        # deadline of the request it now serves here (a new one joins it in `_new_conn`).
        scope = _current_scope.get()
        if scope is not None and self.sock is not None:
            scope.add(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]

    def _new_conn(self) -> socket.socket:
        addresses = self.guard.vet(self._dns_host, self.port, self.what)  # NetworkDenied propagates as is
        scope = _current_scope.get()
        last: OSError | None = None
        for address in addresses:
            sock = None
            try:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                for opt in self.socket_options or ():
                    sock.setsockopt(*opt)
                if isinstance(self.timeout, (int, float)):
                    sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                if scope is not None:
                    scope.add(sock)
                sock.connect((address, self.port))
                peer = sock.getpeername()[0]
                if self.guard.denied_network_of(str(peer)) is not None:  # cannot happen; checked all the same
                    raise NetworkDenied(f"{self.what}: connected to {peer}, a denied address; closed unused")
                return sock
            except TimeoutError as exc:
                if sock is not None:
                    sock.close()
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from exc
            except NetworkDenied:
                if sock is not None:
                    sock.close()
                raise
            except OSError as exc:
                if sock is not None:
                    sock.close()
                last = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {last}")  # type: ignore[arg-type]


def _pool_classes(guard: NetGuard, what: str) -> dict[str, type[HTTPConnectionPool]]:
    attrs = {"guard": guard, "what": what}
    http_conn = type("GuardedHTTPConnection", (_GuardedConnectionMixin, HTTPConnection), attrs)
    https_conn = type("GuardedHTTPSConnection", (_GuardedConnectionMixin, HTTPSConnection), attrs)
    http_pool = type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
    https_pool = type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})
    return {"http": http_pool, "https": https_pool}


class GuardedAdapter(HTTPAdapter):
    def __init__(self, guard: NetGuard, what: str, **kwargs: Any) -> None:
        self.guard = guard
        self.what = what
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.guard, self.what)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        # A name check before anything else (through a proxy too: the proxy resolves on its own).
        self.guard.vet_url(str(request.url), self.what)
        return super().send(request, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:  # requests pickles adapters only when asked; keep it simple
        raise TypeError("a GuardedAdapter is not picklable")


def guarded_session(guard: NetGuard, what: str, pool_maxsize: int = 10) -> requests.Session:
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, GuardedAdapter(guard, what, pool_maxsize=pool_maxsize))
    return session


# -- capped bodies -----------------------------------------------------------------------------


def read_capped(response: requests.Response, limit: int) -> bytes:
    """The body of a streamed response, at most `limit` bytes (decoded); BodyTooLarge past that."""
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge(f"the answer is {int(length)} bytes, over the limit of {limit}")
    chunks = []
    size = 0
    for chunk in response.iter_content(chunk_size=1 << 16):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the answer is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
