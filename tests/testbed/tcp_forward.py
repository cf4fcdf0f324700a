"""A TCP forwarder for the bed's node: pods reach the host only at its address on their bridge, while
the apiserver (and anything else of the bed) listens on 127.0.0.1. `TcpForwarder(listen, target)`
relays each connection byte for byte (TLS passes through untouched) until either side closes.

It binds only the address it is given (the bridge's host address), so it is reachable from this
machine's pods and from the host, and from nowhere else.
"""

from __future__ import annotations

import contextlib
import socket
import threading

_MAX_CONNECTIONS = 64


class TcpForwarder:
    def __init__(self, listen_host: str, target: tuple[str, int], listen_port: int = 0) -> None:
        self.target = target
        self._server = socket.create_server((listen_host, listen_port))
        self.address: tuple[str, int] = self._server.getsockname()[:2]
        self._slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"forward-{self.address[1]}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                client.close()
                continue
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            self._slots.release()
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets |= {client, upstream}
        done = threading.Event()

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                done.set()

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)
        done.wait()
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        with self._lock:
            self._sockets -= {client, upstream}
        self._slots.release()

    def close(self) -> None:
        """Stops listening and closes every relayed connection."""
        self._closed.set()
        self._server.close()
        with self._lock:
            for s in list(self._sockets):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
