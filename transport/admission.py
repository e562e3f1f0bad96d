"""How many connections the server holds: in total and per peer address.

A connection is counted from ``accept`` until its socket is closed, whether
werkzeug's thread closes it (HTTP) or the I/O loop does (a WebSocket handed
over after its upgrade). Over a limit, the peer gets a one-line 503 and the
socket is closed before any thread is started for it.
"""

from __future__ import annotations

import resource
import socket
import threading
from collections import Counter


class Admission:
    def __init__(self, total: int, per_address: int) -> None:
        self._total = total
        self._per_address = per_address
        self._lock = threading.Lock()
        self._open: Counter[str] = Counter()
        self._count = 0

    def admit(self, address: str) -> str | None:
        """Count the connection in; else the reason it is refused."""
        with self._lock:
            if self._count >= self._total:
                return f"the server holds its maximum of {self._total} connections (max_connections)"
            if self._open[address] >= self._per_address:
                return (
                    f"{address} holds its maximum of {self._per_address} connections "
                    "(max_connections_per_address)"
                )
            self._open[address] += 1
            self._count += 1
            return None

    def release(self, address: str) -> None:
        with self._lock:
            if self._open[address] <= 1:
                self._open.pop(address, None)
            else:
                self._open[address] -= 1
            self._count -= 1

    def count(self) -> int:
        with self._lock:
            return self._count


def refuse(sock: socket.socket, reason: str) -> None:
    """A best-effort 503 naming the limit; never waits for the peer."""
    body = ('{"error": "' + reason.replace('"', "'") + '"}').encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        sock.setblocking(False)
        sock.send(head + body)
    except OSError:
        pass


def raise_fd_limit(wanted: int) -> int:
    """Lift this process's open-file soft limit towards ``wanted`` (up to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
