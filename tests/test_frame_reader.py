"""The frame reader against wsproto itself: same bytes in, same messages out."""

from __future__ import annotations

import os
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, Pong, TextMessage

from transport.frame_reader import FrameReader, TooBig

LIMIT = 1 << 20


def _client_bytes(events: list[Event]) -> bytes:
    """What a client (masking, as RFC 6455 requires) puts on the wire for ``events``."""
    client = Connection(ConnectionType.CLIENT)
    return b"".join(client.send(event) for event in events)


def _normalised(items: list[Any]) -> list[tuple[str, Any]]:
    """Whole messages, pings and closes, however they were cut into events."""
    out: list[tuple[str, Any]] = []
    parts: list[Any] = []
    for item in items:
        if isinstance(item, (str, bytes)):
            out.append(("message", item))
        elif isinstance(item, Message):
            parts.append(item.data)
            if item.message_finished:
                joined = "".join(parts) if isinstance(item, TextMessage) else b"".join(parts)
                out.append(("message", joined))
                parts = []
        elif isinstance(item, Ping):
            out.append(("ping", bytes(item.payload)))
        elif isinstance(item, Pong):
            out.append(("pong", bytes(item.payload)))
        elif isinstance(item, CloseConnection):
            out.append(("close", item.code))
            break
        elif isinstance(item, TooBig):
            out.append(("too big", item.size))
            break
    return out


def _through_reader(data: bytes, cuts: list[int], limit: int = LIMIT) -> list[tuple[str, Any]]:
    reader = FrameReader(Connection(ConnectionType.SERVER), limit)
    items: list[Any] = []
    start = 0
    for cut in sorted({*cuts, len(data)}):
        reader.feed(data[start:cut])
        items.extend(reader.events())
        start = cut
    return _normalised(items)


def _through_wsproto(data: bytes) -> list[tuple[str, Any]]:
    server = Connection(ConnectionType.SERVER)
    server.receive_data(data)
    return _normalised(list(server.events()))


_text = st.text(max_size=300)
_event = st.one_of(
    _text.map(lambda text: TextMessage(data=text)),
    st.binary(max_size=300).map(lambda data: BytesMessage(data=data)),
    st.binary(max_size=125).map(lambda data: Ping(payload=data)),
    st.binary(max_size=125).map(lambda data: Pong(payload=data)),
    st.lists(_text, min_size=2, max_size=4).map(
        lambda parts: [TextMessage(data=p, message_finished=i == len(parts) - 1) for i, p in enumerate(parts)]
    ),
)


def _flat(drawn: list[Any]) -> list[Event]:
    return [event for item in drawn for event in (item if isinstance(item, list) else [item])]


@settings(max_examples=300, deadline=None)
@given(st.lists(_event, max_size=12), st.lists(st.integers(min_value=0, max_value=4000), max_size=8))
def test_messages_cut_anywhere_come_out_as_wsproto_reads_them(drawn: list[Any], cuts: list[int]) -> None:
    data = _client_bytes(_flat(drawn))
    assert _through_reader(data, [c for c in cuts if c < len(data)]) == _through_wsproto(data)


def test_every_byte_read_on_its_own_still_gives_whole_messages() -> None:
    events: list[Event] = [TextMessage(data="héllo"), Ping(payload=b"p"), BytesMessage(data=b"\x00" * 70_000)]
    data = _client_bytes(events)
    assert _through_reader(data, list(range(len(data)))) == [
        ("message", "héllo"),
        ("ping", b"p"),
        ("message", b"\x00" * 70_000),
    ]


def _masked_frame(first_byte: int, payload: bytes, mask: bool = True) -> bytes:
    size = len(payload)
    length = bytes([size | (0x80 if mask else 0)]) if size < 126 else bytes([126 | (0x80 if mask else 0)])
    if size >= 126:
        length += struct.pack("!H", size)
    if not mask:
        return bytes([first_byte]) + length + payload
    key = os.urandom(4)
    return bytes([first_byte]) + length + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_text_that_is_not_utf8_is_closed_with_1007_after_the_messages_before_it() -> None:
    data = _client_bytes([TextMessage(data="fine")]) + _masked_frame(0x81, b"\xff\xfe")
    assert _through_reader(data, []) == [("message", "fine"), ("close", 1007)]


def test_an_unmasked_frame_from_a_peer_is_a_protocol_error() -> None:
    data = _client_bytes([TextMessage(data="fine")]) + _masked_frame(0x81, b"plain", mask=False)
    assert _through_reader(data, []) == [("message", "fine"), ("close", 1002)]


def test_a_frame_announcing_more_than_the_limit_is_refused_before_its_payload_arrives() -> None:
    header = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + os.urandom(4)
    reader = FrameReader(Connection(ConnectionType.SERVER), LIMIT)
    reader.feed(header)
    assert [item for item in reader.events()] == [TooBig(size=1 << 40)]


def test_a_message_just_at_the_limit_is_taken() -> None:
    data = _client_bytes([BytesMessage(data=b"x" * 1000)])
    assert _through_reader(data, [3, 500], limit=1000) == [("message", b"x" * 1000)]
