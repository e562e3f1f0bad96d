"""The outbox: order, merging of stream frames, the hold-back window, the limit."""

from __future__ import annotations

import pytest

from agent.outbox import Outbox, OutboxFull, StreamBatch, encode_entry
from transport.protocol import AgentToServer, Result, SetupProgress, Stream, decode_agent_frame


def outbox(window: float = 0.005, limit: int = 100, batch_chars: int = 1000) -> Outbox:
    return Outbox(limit, window, batch_chars)


def drain(box: Outbox, now: float) -> list[AgentToServer]:
    out: list[AgentToServer] = []
    while True:
        entry, _ = box.take(now, flush=True)
        if entry is None:
            return out
        out.append(decode_agent_frame(encode_entry(entry)))


def test_stream_frames_of_one_message_are_merged_with_their_tokens_in_order():
    box = outbox()
    for token in ["a", "b", "c"]:
        box.put(Stream(message_id="m", tokens=[token]), now=0.0)
    assert drain(box, 0.0) == [Stream(message_id="m", tokens=["a", "b", "c"])]


def test_stream_frames_of_different_messages_are_not_merged():
    box = outbox()
    box.put(Stream(message_id="m1", tokens=["a"]), now=0.0)
    box.put(Stream(message_id="m2", tokens=["b"]), now=0.0)
    box.put(Stream(message_id="m1", tokens=["c"]), now=0.0)
    assert drain(box, 0.0) == [
        Stream(message_id="m1", tokens=["a"]),
        Stream(message_id="m2", tokens=["b"]),
        Stream(message_id="m1", tokens=["c"]),
    ]


def test_a_non_stream_frame_releases_the_pending_tokens_first_and_keeps_order():
    box = outbox(window=10.0)
    box.put(Stream(message_id="m", tokens=["a"]), now=0.0)
    box.put(Stream(message_id="m", tokens=["b"]), now=0.0)
    box.put(Result(result="done"), now=0.0)
    box.put(Stream(message_id="m", tokens=["c"]), now=0.0)
    first, _ = box.take(now=0.0)
    second, _ = box.take(now=0.0)
    assert isinstance(first, StreamBatch) and first.tokens == ["a", "b"]
    assert second == Result(result="done")
    entry, wait = box.take(now=0.0)
    assert entry is None and wait == pytest.approx(10.0)


def arrive(box: Outbox, frame: AgentToServer, now: float) -> None:
    """What the connection does with every frame: note it, then queue it."""
    box.put(frame, now, urgent=box.arrived(frame, now))


def test_a_lone_stream_batch_is_held_back_for_at_most_the_window():
    box = outbox(window=0.005)
    arrive(box, Stream(message_id="m", tokens=["first"]), now=0.999)
    box.take(now=0.999)
    arrive(box, Stream(message_id="m", tokens=["a"]), now=1.0)
    entry, wait = box.take(now=1.002)
    assert entry is None and wait == pytest.approx(0.003)
    entry, wait = box.take(now=1.005)
    assert isinstance(entry, StreamBatch) and wait is None


def test_the_first_token_of_a_turn_is_sendable_at_once():
    box = outbox(window=10.0)
    arrive(box, Stream(message_id="m", tokens=["hello"]), now=0.0)
    entry, wait = box.take(now=0.0)
    assert isinstance(entry, StreamBatch) and entry.tokens == ["hello"] and wait is None


def test_tokens_that_follow_the_first_closely_are_batched_for_the_window():
    box = outbox(window=0.005)
    arrive(box, Stream(message_id="m", tokens=["a"]), now=1.0)
    first, _ = box.take(now=1.0)
    arrive(box, Stream(message_id="m", tokens=["b"]), now=1.001)
    arrive(box, Stream(message_id="m", tokens=["c"]), now=1.002)
    held, wait = box.take(now=1.002)
    assert isinstance(first, StreamBatch) and first.tokens == ["a"]
    assert held is None and wait == pytest.approx(0.004)
    assert drain(box, 1.006) == [Stream(message_id="m", tokens=["b", "c"])]


def test_a_token_after_a_pause_longer_than_the_window_is_sendable_at_once():
    box = outbox(window=0.005)
    arrive(box, Stream(message_id="m", tokens=["a"]), now=1.0)
    box.take(now=1.0)
    arrive(box, Stream(message_id="m", tokens=["b"]), now=1.5)
    entry, wait = box.take(now=1.5)
    assert isinstance(entry, StreamBatch) and entry.tokens == ["b"] and wait is None


def test_tokens_that_join_a_first_token_still_queued_go_out_with_it_at_once():
    box = outbox(window=10.0)
    arrive(box, Stream(message_id="m", tokens=["a"]), now=0.0)
    arrive(box, Stream(message_id="m", tokens=["b"]), now=0.001)
    entry, wait = box.take(now=0.001)
    assert isinstance(entry, StreamBatch) and entry.tokens == ["a", "b"] and wait is None


def test_every_non_stream_frame_is_sendable_at_once():
    box = outbox(window=10.0)
    arrive(box, Stream(message_id="m", tokens=["a"]), now=0.0)
    assert box.arrived(Result(result="done"), now=0.001)


def test_non_stream_frames_are_never_held_back():
    box = outbox(window=10.0)
    box.put(SetupProgress(message="x"), now=0.0)
    assert box.take(now=0.0) == (SetupProgress(message="x"), None)


def test_a_batch_that_reached_its_size_cap_is_followed_by_a_new_one():
    box = outbox(batch_chars=4)
    for token in ["ab", "cd", "ef"]:
        box.put(Stream(message_id="m", tokens=[token]), now=0.0)
    assert drain(box, 0.0) == [
        Stream(message_id="m", tokens=["ab", "cd"]),
        Stream(message_id="m", tokens=["ef"]),
    ]


def test_putting_beyond_the_limit_raises_outbox_full_and_keeps_what_is_queued():
    box = outbox(limit=2)
    box.put(SetupProgress(message="1"), now=0.0)
    box.put(SetupProgress(message="2"), now=0.0)
    with pytest.raises(OutboxFull):
        box.put(SetupProgress(message="3"), now=0.0)
    assert len(box) == 2


def test_a_requeued_entry_is_sent_again_before_everything_else():
    box = outbox()
    box.put(SetupProgress(message="1"), now=0.0)
    box.put(SetupProgress(message="2"), now=0.0)
    entry, _ = box.take(now=0.0)
    assert entry is not None
    box.requeue(entry)
    assert drain(box, 0.0) == [SetupProgress(message="1"), SetupProgress(message="2")]
