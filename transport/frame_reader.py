"""Splits what a peer sent into WebSocket messages, the common frames without wsproto.

wsproto's frame parser is pure Python and general: about 6.5 µs per small
frame on this machine, most of the server's time when an agent streams one
token per frame. Nearly every frame a peer sends is the simple kind: final,
masked, no extension bits, text or binary, whole within one read or two.
Those are cut out here (header, unmask with one integer XOR, UTF-8 check:
about 0.6 µs each). Everything else goes to the connection's wsproto state
machine, which stays the authority on the protocol:

- a control frame (ping, pong, close) is handed to wsproto whole, once all of
  it arrived, so wsproto is always at a frame boundary and its events come
  out in the order the frames came in;
- anything unusual (a fragment, a bad header, an unmasked frame, invalid
  UTF-8) hands wsproto every byte from that frame on, for good: it fragments,
  validates and closes with the right code, as it did for every frame before.

A frame whose header announces more than ``max_message_size`` is refused
before its payload is buffered (``TooBig``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from wsproto.connection import Connection as WsprotoConnection
from wsproto.events import Event

_TEXT, _BINARY = 0x1, 0x2
_CONTROL = frozenset((0x8, 0x9, 0xA))
#: First bytes of the frames cut out here: FIN set, no extension bits, and a
#: text, binary, close, ping or pong opcode (so no fragment, no unknown opcode).
_PLAIN_FIRST_BYTES = frozenset(0x80 | opcode for opcode in (_TEXT, _BINARY, *_CONTROL))
_from_bytes = int.from_bytes


@dataclass(frozen=True)
class TooBig:
    """A frame's header announced more than the message size limit."""

    size: int


Item = str | bytes | Event | TooBig


class FrameReader:
    """Holds at most one incomplete frame between reads; ``feed`` then ``events``."""

    def __init__(self, ws: WsprotoConnection, max_message_size: int) -> None:
        self._ws = ws
        self._max = max_message_size
        self._buf = bytearray()
        self._pos = 0
        self._handed_over = False

    def feed(self, data: bytes) -> None:
        if self._handed_over:
            self._ws.receive_data(data)
            return
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def events(self) -> Iterator[Item]:
        """The messages and wsproto events of every complete frame buffered, in order;
        lazy, so a caller may stop after a budget and resume in a later turn."""
        while not self._handed_over:
            item = self._next()
            if item is None:
                if not self._handed_over:
                    return
                break
            if isinstance(item, bytearray):  # a whole control frame: wsproto answers it
                self._ws.receive_data(bytes(item))
                yield from self._ws.events()
            else:
                yield item
        yield from self._ws.events()

    def _next(self) -> Item | bytearray | None:
        buf, pos = self._buf, self._pos
        available = len(buf) - pos
        if available < 2:
            return None
        b0, b1 = buf[pos], buf[pos + 1]
        opcode, size = b0 & 0x0F, b1 & 0x7F
        if b0 not in _PLAIN_FIRST_BYTES or not b1 & 0x80:
            self._hand_over()  # a fragment, extension bits, an unknown opcode, or unmasked
            return None
        start = pos + 6
        if size == 126:
            if available < 4:
                return None
            size = (buf[pos + 2] << 8) | buf[pos + 3]
            start = pos + 8
        elif size == 127:
            if available < 10:
                return None
            size = _from_bytes(buf[pos + 2 : pos + 10], "big")
            start = pos + 14
        if opcode in _CONTROL:
            if size > 125:
                self._hand_over()
                return None
        elif size > self._max:
            self._handed_over = True  # the connection is closed next; nothing more is parsed
            return TooBig(size)
        stop = start + size
        if stop > len(buf):
            return None
        if opcode in _CONTROL:
            self._pos = stop
            return buf[pos:stop]
        payload = _unmask(buf, start, stop)
        if opcode == _BINARY:
            self._pos = stop
            return payload
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            self._hand_over()  # wsproto closes with 1007
            return None
        self._pos = stop
        return text

    def _hand_over(self) -> None:
        """From this frame on, every byte goes to wsproto (its events follow)."""
        self._handed_over = True
        rest = bytes(self._buf[self._pos :])
        self._buf = bytearray()
        self._pos = 0
        self._ws.receive_data(rest)


#: For payloads up to this size the repeated key comes from a table: the key
#: times ``_ONES[words]`` is the key repeated ``words`` times, and ``_LOW[size]``
#: cuts it to the payload (one multiply, one XOR, one AND: ~40 % less than
#: building the repeated key as bytes).
_TABLE_SIZE = 256
_ONES = [sum(1 << (32 * i) for i in range(words)) for words in range((_TABLE_SIZE >> 2) + 2)]
_LOW = [(1 << (8 * size)) - 1 for size in range(_TABLE_SIZE + 1)]


def _unmask(buf: bytearray, start: int, stop: int) -> bytes:
    size = stop - start
    key = _from_bytes(buf[start - 4 : start], "little")
    if size <= _TABLE_SIZE:
        repeated, low = key * _ONES[(size + 3) >> 2], _LOW[size]
    else:
        words = (size + 3) >> 2
        repeated, low = key * (((1 << (32 * words)) - 1) // 0xFFFFFFFF), (1 << (8 * size)) - 1
    return ((_from_bytes(buf[start:stop], "little") ^ repeated) & low).to_bytes(size, "little")
