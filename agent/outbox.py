"""The ordered, bounded queue of frames waiting for the server.

Frames wait here while the connection is down and are sent in order when it
is back, so nothing is lost to a reconnect. ``stream`` frames for the same
message that follow each other are merged into one frame (their tokens
concatenated in order): the relay's cost is per frame, not per token, so
this is where streaming throughput comes from. A merged frame is held back
at most ``window`` seconds after its first token; anything queued behind it
releases it at once, which keeps every frame in its original order.

The first stream frame after a quiet period (no stream frame for ``window``
seconds: a turn's first token, or a token after the model paused) is not
held back: nothing is coming to merge it with, and it is the token a user
waits for. Only a burst, tokens closer together than the window, is batched.

Not thread-safe by itself: the connection guards it with its lock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import msgspec

from transport.protocol import AgentToServer, Stream, encode_bytes


class OutboxFull(RuntimeError):
    """Too many frames are waiting for the server; the agent cannot keep up."""


@dataclass(eq=False)
class StreamBatch:
    """Consecutive tokens of one streamed message, sent as one frame."""

    message_id: str
    started: float
    tokens: list[str] = field(default_factory=list)
    chars: int = 0
    #: Sendable at once: it began after a quiet period.
    urgent: bool = False

    def add(self, tokens: list[str]) -> None:
        self.tokens.extend(tokens)
        self.chars += sum(len(token) for token in tokens)

    def frame(self) -> Stream:
        return Stream(message_id=self.message_id, tokens=self.tokens)


Entry = StreamBatch | AgentToServer


def encode_entry(entry: Entry) -> bytes:
    if isinstance(entry, StreamBatch):
        return encode_bytes(entry.frame())
    return encode_bytes(entry)


class Outbox:
    """FIFO of frames with stream coalescing and a size limit."""

    def __init__(self, max_entries: int, window: float, max_batch_chars: int) -> None:
        self._entries: deque[Entry] = deque()
        self._max_entries = max_entries
        self._window = window
        self._max_batch_chars = max_batch_chars
        self._last_stream: float | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def arrived(self, frame: AgentToServer, now: float) -> bool:
        """Note that ``frame`` arrived; True if it must not wait for a batch
        (any non-stream frame, and a stream frame after a quiet period)."""
        if not isinstance(frame, Stream):
            return True
        last, self._last_stream = self._last_stream, now
        return last is None or now - last >= self._window

    def put(self, frame: AgentToServer, now: float, urgent: bool = False) -> bool:
        """Queue ``frame`` (noted with ``arrived`` first; ``urgent``: what it
        answered); True if it became a new entry (False: merged)."""
        if isinstance(frame, Stream):
            tail = self._entries[-1] if self._entries else None
            if (
                isinstance(tail, StreamBatch)
                and tail.message_id == frame.message_id
                and tail.chars < self._max_batch_chars
            ):
                tail.add(frame.tokens)
                return False
            batch = StreamBatch(message_id=frame.message_id, started=now, urgent=urgent)
            batch.add(frame.tokens)
            entry: Entry = batch
        else:
            entry = frame
        if len(self._entries) >= self._max_entries:
            raise OutboxFull(
                f"{len(self._entries)} frames are already waiting for the server "
                f"(limit {self._max_entries}); dropping nothing, refusing new frames"
            )
        self._entries.append(entry)
        return True

    def take(self, now: float, flush: bool = False) -> tuple[Entry | None, float | None]:
        """Pop the head if it may be sent now.

        Returns ``(entry, None)`` when there is one to send, else
        ``(None, wait)`` where ``wait`` is how long until the held-back head
        becomes sendable, or None when the queue is empty.
        """
        if not self._entries:
            return None, None
        head = self._entries[0]
        if isinstance(head, StreamBatch) and len(self._entries) == 1 and not (flush or head.urgent):
            due = head.started + self._window
            if now < due:
                return None, due - now
        return self._entries.popleft(), None

    def requeue(self, entry: Entry) -> None:
        """Put back an entry whose send failed, ahead of everything else."""
        self._entries.appendleft(entry)

    def clear(self) -> int:
        dropped = len(self._entries)
        self._entries.clear()
        return dropped


class SentLog:
    """Frames handed to a socket but not yet acknowledged by the server, numbered.

    Each frame gets the next link number when it is written; it stays here,
    encoded, until a ``link_ack`` (or a ``link_resume``) covers it, so a
    connection that ends mid-write loses nothing: after the reconnect the
    server says what it has and the rest is written again, in order.
    """

    def __init__(self) -> None:
        self._frames: deque[tuple[int, bytes]] = deque()
        self._next = 1

    def __len__(self) -> int:
        return len(self._frames)

    def number(self, entry: Entry) -> bytes:
        n, self._next = self._next, self._next + 1
        frame = entry.frame() if isinstance(entry, StreamBatch) else entry
        data = encode_bytes(msgspec.structs.replace(frame, n=n))
        self._frames.append((n, data))
        return data

    def acked(self, received: int) -> None:
        while self._frames and self._frames[0][0] <= received:
            self._frames.popleft()

    def pending(self) -> list[bytes]:
        return [data for _, data in self._frames]
