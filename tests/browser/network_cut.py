"""A network between the browser and the test server that can go away, as a speaker's Wi-Fi does.

:class:`CuttableNetwork` is a TCP relay in front of the server: the page is loaded through it, so
its WebSocket goes through it too. :meth:`CuttableNetwork.cut` resets every connection on both
sides (each sees an abnormal close, 1006, as when a network drops) and refuses new ones for a
while, so the page's reconnection attempts fail until the network is back.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

__all__ = ["CuttableNetwork"]

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a TCP reset


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    with contextlib.suppress(OSError):
        sock.close()


class CuttableNetwork:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._down_until = 0.0
        self._closed = False
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, offline_s: float) -> None:
        """Reset every connection now and refuse new ones for ``offline_s`` seconds."""
        with self._lock:
            self._down_until = time.monotonic() + offline_s
            sockets, self._open = self._open, set()
            self.cuts += 1
        for sock in sockets:
            _reset(sock)

    def close(self) -> None:
        self._closed = True
        self.cut(0)
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> CuttableNetwork:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                _reset(client)  # (no network: the connection fails at once)
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._open.update((client, server))
            directions = [2]  # still relaying; both sockets are closed when neither is
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink, directions), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, directions: list[int]) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # (an orderly end is passed on as one)
        except OSError:
            _reset(sink)  # (a reset on one side is passed on as one)
        with self._lock:
            directions[0] -= 1
            if directions[0]:
                return
            self._open.difference_update((source, sink))
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.close()
