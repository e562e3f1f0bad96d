"""The input channel: rule 6 (close ends every reader, never a None item)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from agent.channel import ChannelClosed, ChannelEnded, InputChannel
from tests.agent.helpers import wait_until

pytestmark = pytest.mark.timeout(20)


def in_thread(fn, *args) -> Future[Any]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    return future


class LoopThread:
    """An event loop running in its own thread, so a test can block meanwhile."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.stop()


def wait_until_blocked(channel: InputChannel[Any], count: int = 1) -> None:
    wait_until(lambda: channel.waiting_readers >= count, what=f"{count} readers to block")


def test_a_reader_gets_the_items_in_the_order_they_were_pushed():
    channel: InputChannel[int] = InputChannel()
    for i in range(5):
        channel.push(i)
    channel.close()
    assert list(channel) == [0, 1, 2, 3, 4]


def test_items_pushed_before_close_are_still_delivered_then_the_stream_ends():
    channel: InputChannel[str] = InputChannel()
    channel.push("a")
    channel.push("b")
    channel.close()
    assert channel.get() == "a"
    assert channel.get() == "b"
    with pytest.raises(ChannelEnded):
        channel.get()


def test_pushing_after_close_raises_channel_closed():
    channel: InputChannel[str] = InputChannel()
    channel.close()
    with pytest.raises(ChannelClosed):
        channel.push("late")


def test_closing_the_channel_wakes_a_reader_blocked_in_another_thread_with_end_of_stream():
    channel: InputChannel[str] = InputChannel()
    reader = in_thread(list, channel)
    wait_until_blocked(channel)
    channel.close()
    assert reader.result(timeout=5) == []


def test_closing_the_channel_wakes_a_blocked_async_reader_with_end_of_stream(loop_thread):
    channel: InputChannel[str] = InputChannel()

    async def read_all() -> list[str]:
        return [item async for item in channel]

    reader = loop_thread.submit(read_all())
    wait_until_blocked(channel)
    channel.close()
    assert reader.result(timeout=5) == []


def test_closing_wakes_every_waiting_reader_sync_and_async(loop_thread):
    channel: InputChannel[str] = InputChannel()

    async def read_all() -> list[str]:
        return [item async for item in channel]

    readers = [in_thread(list, channel), in_thread(list, channel), loop_thread.submit(read_all())]
    wait_until_blocked(channel, 3)
    channel.close()
    assert [r.result(timeout=5) for r in readers] == [[], [], []]


def test_a_push_from_another_thread_wakes_a_blocked_async_reader(loop_thread):
    channel: InputChannel[str] = InputChannel()
    reader = loop_thread.submit(channel.aget())
    wait_until_blocked(channel)
    in_thread(channel.push, "hello").result(timeout=5)
    assert reader.result(timeout=5) == "hello"


def test_concurrent_readers_each_get_distinct_items(loop_thread):
    channel: InputChannel[int] = InputChannel()

    async def read_all() -> list[int]:
        return [item async for item in channel]

    readers = [in_thread(list, channel) for _ in range(3)] + [
        loop_thread.submit(read_all()) for _ in range(2)
    ]
    wait_until_blocked(channel, 5)
    for i in range(1000):
        channel.push(i)
    channel.close()
    results = [r.result(timeout=10) for r in readers]
    delivered = [item for result in results for item in result]
    assert sorted(delivered) == list(range(1000))
    assert all(result == sorted(result) for result in results)


def test_a_cancelled_async_reader_does_not_swallow_an_item(loop_thread):
    channel: InputChannel[str] = InputChannel()
    cancelled = loop_thread.submit(channel.aget())
    wait_until_blocked(channel)
    cancelled.cancel()
    with pytest.raises(Exception):  # noqa: B017 - CancelledError from either module
        cancelled.result(timeout=5)
    channel.push("kept")
    assert loop_thread.submit(channel.aget()).result(timeout=5) == "kept"


def test_get_with_a_timeout_raises_timeout_error_when_nothing_arrives():
    channel: InputChannel[str] = InputChannel()
    with pytest.raises(TimeoutError):
        channel.get(timeout=0.01)


def test_an_async_reader_after_close_sees_the_end_of_the_stream_at_once():
    channel: InputChannel[str] = InputChannel()
    channel.push("last")
    channel.close()

    async def read_all() -> list[str]:
        return [item async for item in channel]

    assert asyncio.run(read_all()) == ["last"]
