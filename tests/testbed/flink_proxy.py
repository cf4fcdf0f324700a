"""A fault-injecting HTTP proxy in front of the real Flink REST API.

Every request is forwarded to Flink unless a rule says otherwise: `hold` parks matching requests
until released (forwarded, or dropped as if the caller had died first), and `down` makes the
proxy close every connection without an answer, as an unreachable Flink would.

It can also play the authenticating, TLS-terminating proxy a Flink REST endpoint often sits
behind: `tls=(cert, key)` serves https, and `authorization` answers 401 to any request whose
Authorization header is not exactly that value (and never passes the header on to Flink).
"""

from __future__ import annotations

import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from testbed.procs import free_port

_HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "content-encoding",
    "authorization",
}


@dataclass
class _Hold:
    method: str
    pattern: re.Pattern[str]
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    drop: bool = False
    after_forward: bool = False  # forward to Flink first, then park the answer


class FlinkProxy:
    def __init__(self, target: str, tls: tuple[Path, Path] | None = None, authorization: str | None = None) -> None:
        self.target = target.rstrip("/")
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.down = False
        self.forwarded: list[tuple[str, str, int]] = []  # (method, path, status) of answered requests
        self.refused: list[tuple[str, str]] = []  # (method, path) answered 401
        self.authorization = authorization
        self._holds: list[_Hold] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.down:
                    self.close_connection = True
                    return
                if proxy.authorization is not None and self.headers.get("Authorization") != proxy.authorization:
                    with proxy._lock:
                        proxy.refused.append((self.command, self.path))
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="flink"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                hold = proxy._matching_hold(self.command, self.path)
                if hold is not None and not hold.after_forward:
                    hold.arrived.set()
                    hold.released.wait(timeout=300)
                    if hold.drop:
                        self.close_connection = True
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                try:
                    resp = requests.request(
                        self.command, proxy.target + self.path, data=body, headers=headers, timeout=120
                    )
                except requests.RequestException:
                    self.close_connection = True
                    return
                with proxy._lock:
                    proxy.forwarded.append((self.command, self.path, resp.status_code))
                if hold is not None and hold.after_forward:
                    hold.arrived.set()
                    hold.released.wait(timeout=300)
                    if hold.drop:
                        self.close_connection = True
                        return
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in _HOP_HEADERS:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="flink-proxy", daemon=True)
        self._thread.start()

    def _matching_hold(self, method: str, path: str) -> _Hold | None:
        with self._lock:
            for hold in self._holds:
                if hold.method == method and hold.pattern.search(path) and not hold.released.is_set():
                    return hold
        return None

    def hold(self, method: str, path_regex: str, after_forward: bool = False) -> _Hold:
        """Parks matching requests until `release` is called on the returned hold; with
        `after_forward`, Flink gets the request and only its answer is parked."""
        hold = _Hold(method, re.compile(path_regex), after_forward=after_forward)
        with self._lock:
            self._holds.append(hold)
        return hold

    def release(self, hold: _Hold, drop: bool) -> None:
        hold.drop = drop
        hold.released.set()
        with self._lock:
            if hold in self._holds:
                self._holds.remove(hold)

    def calls(self, method: str, path_regex: str) -> list[tuple[str, str, int]]:
        pattern = re.compile(path_regex)
        with self._lock:
            return [c for c in self.forwarded if c[0] == method and pattern.search(c[1])]

    def close(self) -> None:
        for hold in list(self._holds):
            self.release(hold, drop=True)
        self._server.shutdown()
        self._server.server_close()
