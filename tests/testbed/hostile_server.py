"""A hostile HTTP endpoint on loopback, for Flink REST and jar-server abuse tests.

One server plays every misbehaviour at once, chosen by the first path segment, so one FlinkJob per
behaviour can point at it (`flinkRestUrl: http://127.0.0.1:PORT/slow`, `jar.uri: .../huge/job.jar`):

- `slow`: answers nothing for `slow_seconds`, then a valid-looking answer;
- `drip`: promises a body (Content-Length) and sends one byte a second, never finishing it;
- `huge`: a 100 MB body (JSON-looking without a length for REST paths, zeros with one for jars);
- `redirect`: 302 to `redirect_to` (another host) plus the rest of the path;
- `html`: an HTML page with status 200;
- `shape`: JSON of the wrong shape (a list where Flink answers an object, strings for numbers);
- `echo`: HTTP 500 whose error text repeats the request's Authorization header;
- `good`: serves the files in `files` (a real jar), 404 for anything else.

Every request is recorded (path and headers) so a test can assert what reached the server, and that
nothing did. It binds one loopback address only (127.0.0.1 by default, or e.g. 127.0.0.2).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HUGE_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class HostileServer:
    host: str = "127.0.0.1"
    slow_seconds: float = 60.0
    redirect_to: str = ""
    files: dict[str, Path] = field(default_factory=dict)  # /good/<name> -> file
    seen: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> HostileServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self) -> None:
                owner.seen.append(Seen(self.command, self.path, {k: v for k, v in self.headers.items()}))

            def do_GET(self) -> None:
                self._record()
                self._answer()

            def do_POST(self) -> None:
                self._record()
                length = int(self.headers.get("Content-Length") or 0)
                remaining = length
                while remaining > 0:  # read (and drop) an upload without holding it
                    chunk = self.rfile.read(min(remaining, 1 << 16))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                self._answer()

            do_PATCH = do_POST
            do_PUT = do_POST
            do_DELETE = do_GET

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _answer(self) -> None:
                parts = self.path.lstrip("/").split("/", 1)
                kind, rest = parts[0], (parts[1] if len(parts) > 1 else "")
                jar = self.path.endswith(".jar")
                try:
                    if kind == "slow":
                        owner._stop.wait(owner.slow_seconds)
                        self._send(200, b'{"jobs": []}')
                    elif kind == "drip":
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", "100000")
                        self.end_headers()
                        while not owner._stop.wait(1.0):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                    elif kind == "huge":
                        # A jar says its size; a REST answer does not (it ends when the connection
                        # closes), so only reading it with a cap stops it.
                        self.send_response(200)
                        self.send_header("Content-Type", "application/octet-stream" if jar else "application/json")
                        if jar:
                            self.send_header("Content-Length", str(HUGE_BYTES))
                        else:
                            self.send_header("Connection", "close")
                            self.close_connection = True
                        self.end_headers()
                        chunk = (b"\0" if jar else b" ") * (1 << 20)
                        if not jar:
                            self.wfile.write(b'{"jobs": [')
                        for _ in range(HUGE_BYTES // len(chunk)):
                            if owner._stop.is_set():
                                break
                            self.wfile.write(chunk)
                    elif kind == "redirect":
                        self.send_response(302)
                        self.send_header("Location", f"{owner.redirect_to}/{rest}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    elif kind == "html":
                        self._send(200, b"<html><body><h1>Welcome to nginx!</h1></body></html>", "text/html")
                    elif kind == "shape":
                        body = [1, 2, 3] if "overview" in rest or "config" in rest else {"files": "none", "jid": []}
                        self._send(200, json.dumps(body).encode())
                    elif kind == "echo":
                        told = self.headers.get("Authorization", "(none)")
                        body = {"errors": [f"Unauthorized request: header Authorization: {told} is not valid"]}
                        self._send(500, json.dumps(body).encode())
                    elif kind == "good" and rest in owner.files:
                        self._send(200, owner.files[rest].read_bytes(), "application/java-archive")
                    else:
                        self._send(404, b'{"errors": ["Not found."]}')
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the operator hung up: that is what the caps and deadlines are for

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="hostile-server", daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, path: str = "") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [s.path for s in list(self.seen)]

    def wait_for(self, prefix: str, timeout: float = 60.0) -> None:
        """Until a request under `prefix` arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.startswith(prefix) for p in self.paths()):
                return
            time.sleep(0.2)
        raise AssertionError(f"no request under {prefix} within {timeout:g} s; seen: {self.paths()[-20:]}")

    def close(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
