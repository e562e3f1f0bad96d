"""A TCP forwarder on 127.0.0.1 whose connections a test can cut (a network blip).

``swallow("down")`` (or ``"up"``) makes it read what one side sends and
forward none of it, as a link that dies with bytes in flight does: the
sender's writes succeed, the peer never sees them. ``cut`` ends that.
"""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.cuts = 0
        #: Directions ("down": to the proxy's client, "up": to the target) read but not forwarded.
        self._swallowing: set[str] = set()
        #: What was swallowed, per direction, since the last ``swallow``.
        self.swallowed: dict[str, bytes] = {"down": b"", "up": b""}
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._open += [client, upstream]
            for a, b, direction in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(target=self._pipe, args=(a, b, direction), daemon=True).start()

    def swallow(self, direction: str) -> None:
        """From now on, bytes going ``direction`` on open connections are dropped."""
        with self._lock:
            self._swallowing.add(direction)
            self.swallowed[direction] = b""

    def _pipe(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if direction in self._swallowing:
                        self.swallowed[direction] += data
                        continue
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Drop every connection in flight; new ones are still accepted."""
        with self._lock:
            dropped, self._open = self._open, []
            self.cuts += 1
        for s in dropped:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self._lock:  # only now: nothing read on the cut connections is forwarded
            self._swallowing.clear()

    def close(self) -> None:
        self._listener.close()
        self.cut()
