"""One owner per instance: an exclusive lock file in the state dir.

Two servers with the same instance id and state dir would sweep each other's
containers and write one store; the second one refuses to start instead. The
lock is an ``flock`` on ``<state_dir>/instance-<id>.lock``, so the kernel drops
it when the owner dies (even by kill -9): a stale file never blocks a restart.
The file holds the owner's pid, which the refusal names.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class InstanceLocked(ValueError):
    """Another live process owns this instance id in this state dir."""


class InstanceLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_dir: Path, instance_id: str) -> InstanceLock:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = state_dir / f"instance-{instance_id}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InstanceLocked(
                f"instance '{instance_id}' in {state_dir} is already served by another Berth "
                f"(pid {holder}); stop that one, or give this one another --instance or --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Unlock; the file stays (removing it would race a starting server)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
