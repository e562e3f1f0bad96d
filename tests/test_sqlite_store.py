"""The SQLite session store: what survives, what is never written, what is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from actors.secret import Secret
from actors.sqlite_store import SqliteStore
from actors.store_file import StoreUnavailable
from actors.store_reader import load_sessions
from actors.store_records import digest_matches
from tests.waiting import wait_until
from transport.protocol import ChatMessage, MessageAdded, SessionInfo, SessionStatus, StreamTokens

TOKEN = "session-token-abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class _State:
    """Shaped like the session core's state: plain values, Structs, a token."""

    session_id: str
    info: SessionInfo
    history: tuple[ChatMessage, ...] = ()
    deadlines: tuple[tuple[str, float], ...] = ()
    token: Secret | None = None
    ended: bool = False
    deleted: bool = False


def _state(sid: str = "s1", **fields: object) -> _State:
    info = SessionInfo(id=sid, name="n", status=SessionStatus.IDLE, created_at=1.0)
    return _State(session_id=sid, info=info, token=Secret(TOKEN), **fields)  # type: ignore[arg-type]


def _message(sid: str, seq: int, at: float | None = None) -> MessageAdded:
    stamp = float(seq) if at is None else at
    msg = ChatMessage(id=f"m{seq}", kind="user", content=f"hello {seq}", timestamp=stamp)
    return MessageAdded(session_id=sid, seq=seq, message=msg)


def _store(path: Path, **options: object) -> SqliteStore:
    return SqliteStore(path, flush_interval=0.01, **options)  # type: ignore[arg-type]


def test_a_saved_session_and_its_events_come_back_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = _store(path)
    hist = (ChatMessage(id="m1", kind="user", content="hi", timestamp=2.0),)
    store.save_session(_state(history=hist, deadlines=(("grace", 123.5),)))
    for seq in range(1, 4):
        store.append_event("s1", _message("s1", seq))
    store.append_event("s1", StreamTokens(session_id="s1", seq=4, message_id="a", tokens=["x", "y"]))
    store.close()

    again = _store(path)
    try:
        [stored] = again.load()
        state = stored.decode(_State)
        assert state.history == hist and state.deadlines == (("grace", 123.5),)
        assert state.token is None
        assert [e.seq for e in stored.events] == [1, 2, 3, 4]
        assert stored.events[3] == StreamTokens(session_id="s1", seq=4, message_id="a", tokens=["x", "y"])
        assert stored.ended_at is None
    finally:
        again.close()


def test_the_session_token_is_never_written_only_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = _store(path)
    store.save_session(_state())
    store.remember_token("s1", Secret(TOKEN))
    store.close()
    for file in tmp_path.iterdir():
        assert TOKEN.encode() not in file.read_bytes(), file
    [stored] = SqliteStore(path).load()
    assert stored.token_digest is not None
    assert digest_matches(TOKEN, stored.token_digest)
    assert not digest_matches(TOKEN + "x", stored.token_digest)
    assert not digest_matches(None, stored.token_digest)
    assert path.stat().st_mode & 0o077 == 0


def test_a_secret_anywhere_else_in_the_state_is_refused_not_stored(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = _store(path)
    store.save_session(_state(deadlines=(("grace", Secret(TOKEN)),)))
    assert store.flush()
    assert store.write_errors == 1
    assert store.load() == []
    store.close()
    assert TOKEN.encode() not in path.read_bytes()


def test_a_write_is_committed_within_the_batch_window_without_the_caller_waiting(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3", flush_interval=0.05)
    try:
        began = time.monotonic()
        for seq in range(1, 501):
            store.append_event("s1", _message("s1", seq))
        queued = time.monotonic() - began
        store.save_session(_state())
        wait_until(lambda: store.load(), timeout=5, what="the batch to be committed")
        assert queued < 0.05
        assert len(store.load()[0].events) == 500
    finally:
        store.close()


def test_forget_removes_the_session_and_its_events(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.sqlite3")
    try:
        store.save_session(_state("a"))
        store.save_session(_state("b"))
        store.append_event("a", _message("a", 1))
        store.forget("a")
        assert store.flush()
        assert [s.session_id for s in store.load()] == ["b"]
        assert store.load("b")[0].session_id == "b" and store.load("a") == []
    finally:
        store.close()


def test_saving_a_deleted_session_removes_it(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.sqlite3")
    try:
        store.save_session(_state("a"))
        store.remember_token("a", Secret(TOKEN))
        store.append_event("a", _message("a", 1))
        assert store.flush() and store.load()
        store.save_session(_state("a", deleted=True))
        assert store.flush()
        assert store.load() == []
    finally:
        store.close()


def test_only_the_last_event_limit_events_are_kept_for_replay_but_the_whole_history_is(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path / "s.sqlite3", event_limit=10)
    try:
        for seq in range(1, 26):
            store.append_event("s1", _message("s1", seq))
        for seq in range(26, 30):
            store.append_event("s1", StreamTokens(session_id="s1", seq=seq, message_id="a", tokens=["x"]))
        store.save_session(_state())
        assert store.flush()
        [stored] = store.load()
        assert [e.seq for e in stored.events] == list(range(20, 30))
        assert [m.id for m in stored.history] == [f"m{seq}" for seq in range(1, 26)], "history is kept whole"
    finally:
        store.close()


def test_ended_sessions_are_purged_once_the_retention_has_passed(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "s.sqlite3"
    store = _store(path, retention=60.0, clock=lambda: now[0])
    store.save_session(_state("ended", ended=True))
    store.save_session(_state("live"))
    assert store.flush()
    now[0] += 30
    store.save_session(_state("ended", ended=True))
    assert store.flush()
    assert {s.session_id: s.ended_at for s in store.load()} == {"ended": 1000.0, "live": None}
    store.close()
    now[0] += 31
    reopened = _store(path, retention=60.0, clock=lambda: now[0])
    try:
        assert [s.session_id for s in reopened.load()] == ["live"]
    finally:
        reopened.close()


def test_a_corrupt_store_file_is_refused_with_one_line_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = _store(path)
    store.save_session(_state())
    store.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    path.write_bytes(bytes(data))
    with pytest.raises(StoreUnavailable) as caught:
        _store(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "move the file away" in message
    assert path.read_bytes() == bytes(data)


def test_a_file_that_is_not_a_database_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    path.write_bytes(b"my notes, not a database\n" * 100)
    with pytest.raises(StoreUnavailable, match="not usable: file is not a database"):
        _store(path)
    assert path.read_bytes() == b"my notes, not a database\n" * 100


def test_another_programs_sqlite_database_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "s.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE theirs (x)")
    with pytest.raises(StoreUnavailable, match="not a Berth store"):
        _store(path)


def test_an_unwritable_store_file_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    _store(path).close()
    before = path.read_bytes()
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o400)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            _store(path)
        assert "readonly" in str(caught.value) and "\n" not in str(caught.value)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    assert path.read_bytes() == before


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from actors.sqlite_store import SqliteStore
    from tests.test_sqlite_store import _message, _state
    store = SqliteStore(Path(sys.argv[1]), flush_interval=float(sys.argv[2]))
    store.save_session(_state())
    seq = 0
    while True:
        seq += 1
        store.append_event("s1", _message("s1", seq, time.time()))
        if seq == 100:
            print("writing", flush=True)
        time.sleep(0.0005)
    """
)


def _committed(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def test_a_kill_9_loses_at_most_the_last_batch_window(tmp_path: Path) -> None:
    """The writer adds an event every ~0.5 ms, each stamped with the time it was handed over."""
    path = tmp_path / "s.sqlite3"
    window = 0.05
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(window)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"writing\n"
        wait_until(lambda: _committed(path) > 500, timeout=10, what="several committed batches")
        killed_at = time.time()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    store = SqliteStore(path)
    try:
        [stored] = store.load()
    finally:
        store.close()
    seqs = [e.seq for e in stored.events]
    assert seqs == list(range(1, len(seqs) + 1)), "a gap or a duplicate"
    last = stored.events[-1]
    assert isinstance(last, MessageAdded)
    lost = killed_at - last.message.timestamp
    # The window, plus one commit and scheduling on a shared CI machine.
    print(f"kill -9 lost the last {lost * 1000:.0f} ms of writes")
    assert lost < window + 0.15, f"lost the last {lost * 1000:.0f} ms"


def test_a_session_over_its_share_of_the_write_queue_waits_but_another_session_does_not(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path / "s.sqlite3", queue_bytes=64 * 1024)
    store.save_session(_state("a"))
    store.save_session(_state("b"))
    stalled, release = threading.Event(), threading.Event()

    def slow_disk() -> None:  # the writer is held up until the end of the test
        stalled.set()
        release.wait(30)

    store.when_durable(slow_disk)
    assert stalled.wait(5)

    def tokens(sid: str, seq: int, size: int) -> StreamTokens:
        return StreamTokens(session_id=sid, seq=seq, message_id="m", tokens=["x" * size])

    def flood() -> None:  # 160 KB for a 64 KB queue
        for seq in range(1, 21):
            store.append_event("a", tokens("a", seq, 8000))

    def quiet() -> None:  # 5.5 KB more: over the bound, but far below b's share
        for seq in range(1, 6):
            store.append_event("b", tokens("b", seq, 1000))

    flooding, talking = threading.Thread(target=flood), threading.Thread(target=quiet)
    try:
        flooding.start()
        wait_until(lambda: store.queued_bytes() > 56 * 1024, timeout=5, what="session a to fill the queue")
        talking.start()
        talking.join(timeout=5)
        assert not talking.is_alive(), "session b waited for the disk behind session a's bytes"
        assert flooding.is_alive(), "session a went over the queue's bound without waiting"
    finally:
        release.set()
        flooding.join(timeout=10)
        talking.join(timeout=10)
        store.close()
    reopened = _store(tmp_path / "s.sqlite3")
    try:
        stored = {s.session_id: [e.seq for e in s.events] for s in reopened.load()}
    finally:
        reopened.close()
    assert stored == {"a": list(range(1, 21)), "b": list(range(1, 6))}


def test_the_events_of_agent_frames_are_committed_only_with_the_link_position_that_names_them(
    tmp_path: Path,
) -> None:
    """A crash between the two would make the restarted server name an older position,
    and the agent's resend would be applied twice (issue 9): they commit together."""
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path, flush_interval=2.0)
    try:
        store.save_session(_state())
        assert store.flush()
        store.begin_link_frames("s1")
        store.append_event("s1", _message("s1", 1))
        committed = threading.Event()
        store.when_durable(committed.set, urgent=True)
        assert not committed.wait(0.3), "the frame's event was committed without its link position"
        assert load_sessions(path)[0].events == ()
        store.note_link_received("s1", "agent-1", 7)
        assert committed.wait(5)
        [stored] = load_sessions(path)
        assert [e.seq for e in stored.events] == [1]
        assert (stored.link_epoch, stored.link_received) == ("agent-1", 7)
    finally:
        store.close()


def test_frames_whose_position_never_comes_hold_the_commit_for_one_window_at_most(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path, flush_interval=0.05)
    try:
        store.save_session(_state())
        store.begin_link_frames("s1")
        store.append_event("s1", _message("s1", 1))
        assert store.flush(timeout=5)
        assert [e.seq for e in load_sessions(path)[0].events] == [1]
    finally:
        store.close()
