"""One owner per instance: a second server for the same instance refuses to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.instance_lock import InstanceLock, InstanceLocked
from tests.server_process import ServerProcess


def _serve(state: Path, instance: str = "shared") -> ServerProcess:
    return ServerProcess(
        "serve", "--state-dir", str(state), "--instance", instance, "--port", "0", "--runtime", "external"
    )


def test_a_second_server_with_the_same_instance_refuses_and_names_the_holder(tmp_path: Path) -> None:
    first = _serve(tmp_path)
    try:
        first.wait_serving()
        second = _serve(tmp_path)
        assert second.wait_exit() == 2
        err = "".join(second.stderr)
        assert f"pid {first.proc.pid}" in err and "instance 'shared'" in err
        assert "Traceback" not in err and err.count("\n") == 1
        assert first.proc.poll() is None, "the first server must keep running"
    finally:
        first.stop()


def test_another_instance_id_in_the_same_state_dir_starts(tmp_path: Path) -> None:
    first, other = _serve(tmp_path, "one"), _serve(tmp_path, "two")
    try:
        first.wait_serving()
        other.wait_serving()
    finally:
        first.stop()
        other.stop()


def test_the_lock_of_a_killed_server_does_not_block_its_restart(tmp_path: Path) -> None:
    first = _serve(tmp_path)
    first.wait_serving()
    first.kill9()
    again = _serve(tmp_path)
    try:
        again.wait_serving()
    finally:
        again.stop()


def test_the_lock_is_free_again_once_released(tmp_path: Path) -> None:
    lock = InstanceLock.acquire(tmp_path, "x")
    with pytest.raises(InstanceLocked):
        InstanceLock.acquire(tmp_path, "x")
    lock.release()
    InstanceLock.acquire(tmp_path, "x").release()


def test_a_server_with_a_corrupt_store_refuses_to_start_and_leaves_the_file(tmp_path: Path) -> None:
    store = tmp_path / "sessions-shared.sqlite3"
    store.write_bytes(b"SQLite format 3\x00" + b"\x07" * 8000)
    server = _serve(tmp_path)
    assert server.wait_exit() == 2
    err = "".join(server.stderr)
    assert str(store) in err and "move the file away" in err and err.count("\n") == 1, err
    assert store.read_bytes() == b"SQLite format 3\x00" + b"\x07" * 8000
