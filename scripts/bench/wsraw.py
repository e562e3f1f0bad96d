"""A minimal WebSocket client on a raw socket, for benchmark load generators.

websocket-client's pure-Python receive path tops out near 9k messages/s on
this machine, which would make the *client* the bottleneck of a relay
benchmark. This client does only what the benchmarks need: the opening
handshake, masked text frames out, unfragmented or fragmented frames in,
pong answers to pings, and a close. It never validates UTF-8 and never
decodes JSON itself; callers decide what to decode.

``RawWebSocket`` is blocking (one connection, one thread). ``parse_frames``
is shared with ``AgentSwarm`` (many non-blocking connections, one thread).
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class HandshakeRefused(ConnectionError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"WebSocket handshake refused: HTTP {status}: {text[:200]}")
        self.status = status


class Closed(ConnectionError):
    """The peer closed the connection (close frame or EOF)."""


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return payload
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


def encode_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A client frame (masked, FIN set)."""
    n = len(payload)
    head = bytes((0x80 | opcode,))
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 65536:
        head += bytes((0x80 | 126,)) + _U16.pack(n)
    else:
        head += bytes((0x80 | 127,)) + _U64.pack(n)
    key = os.urandom(4)
    return head + key + _mask(payload, key)


def encode_server_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A server frame (unmasked, FIN set): for the bare floor servers."""
    n = len(payload)
    head = bytes((0x80 | opcode,))
    if n < 126:
        head += bytes((n,))
    elif n < 65536:
        head += bytes((126,)) + _U16.pack(n)
    else:
        head += bytes((127,)) + _U64.pack(n)
    return head + payload


def parse_frames(buf: bytearray) -> tuple[list[tuple[int, bool, bytes]], int]:
    """Complete frames at the start of ``buf``: ([(opcode, fin, payload)], bytes used).

    Frames from a server are unmasked; a masked frame is unmasked anyway.
    """
    frames: list[tuple[int, bool, bytes]] = []
    pos, size = 0, len(buf)
    while size - pos >= 2:
        b0, b1 = buf[pos], buf[pos + 1]
        n = b1 & 0x7F
        head = 2
        if n == 126:
            if size - pos < 4:
                break
            n = _U16.unpack_from(buf, pos + 2)[0]
            head = 4
        elif n == 127:
            if size - pos < 10:
                break
            n = _U64.unpack_from(buf, pos + 2)[0]
            head = 10
        masked = b1 & 0x80
        if masked:
            head += 4
        if size - pos < head + n:
            break
        payload = bytes(buf[pos + head : pos + head + n])
        if masked:
            payload = _mask(payload, bytes(buf[pos + head - 4 : pos + head]))
        frames.append((b0 & 0x0F, bool(b0 & 0x80), payload))
        pos += head + n
    return frames, pos


def handshake_request(host: str, port: int, path: str, headers: Iterable[str]) -> tuple[bytes, str]:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def check_handshake_response(head: bytes) -> None:
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if status != 101:
        raise HandshakeRefused(status, head.decode("latin-1", "replace"))


class RawWebSocket:
    """One blocking client connection."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        headers: Iterable[str] = (),
        timeout: float = 10.0,
        rcvbuf: int = 256 * 1024,
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._rcvbuf = rcvbuf
        request, _key = handshake_request(host, port, path, headers)
        self.sock.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in data:
            if time.monotonic() > deadline:
                raise TimeoutError("WebSocket handshake timed out")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Closed("connection closed during the handshake")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        check_handshake_response(head)
        self.buf = bytearray(rest)
        self._ready: deque[bytes] = deque()
        self._close_payload: bytes | None = None
        self._fragments: list[bytes] = []
        self._fragment_op = OP_TEXT

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def send_text(self, payload: bytes) -> None:
        self.sock.sendall(encode_frame(payload, OP_TEXT))

    def _fill(self) -> None:
        if self._close_payload is not None:
            payload = self._close_payload
            code = _U16.unpack_from(payload)[0] if len(payload) >= 2 else None
            raise Closed(f"closed by the peer (code {code}, {payload[2:].decode(errors='replace')!r})")
        chunk = self.sock.recv(self._rcvbuf)
        if not chunk:
            raise Closed("connection closed by the peer")
        self.buf += chunk
        frames, used = parse_frames(self.buf)
        if used:
            del self.buf[:used]
        for opcode, fin, payload in frames:
            if opcode == OP_PING:
                self.sock.sendall(encode_frame(payload, OP_PONG))
            elif opcode == OP_PONG:
                continue
            elif opcode == OP_CLOSE:
                self._close_payload = payload
            elif opcode == OP_CONT:
                self._fragments.append(payload)
                if fin:
                    self._ready.append(b"".join(self._fragments))
                    self._fragments = []
            elif not fin:
                self._fragment_op, self._fragments = opcode, [payload]
            else:
                self._ready.append(payload)

    def recv_many(self) -> list[bytes]:
        """Every complete data message available (at least one); ``Closed`` after a close."""
        while not self._ready:
            self._fill()
        out = list(self._ready)
        self._ready.clear()
        return out

    def recv(self) -> bytes:
        """One data message."""
        while not self._ready:
            self._fill()
        return self._ready.popleft()

    def close(self, code: int = 1000) -> None:
        try:
            self.sock.sendall(encode_frame(_U16.pack(code), OP_CLOSE))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
