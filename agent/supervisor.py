"""PID 1 of a session container: runs the agent as a worker and keeps it alive.

A worker killed by a signal (OOM killer, a stray ``kill -9``) is restarted:
the new worker reconnects as the same session, and the server, which kept
the session ``reconnecting`` and queued its messages, carries on. A worker
that exits on its own is not restarted: its exit code is the container's.
SIGTERM and SIGINT are forwarded to the worker, which takes its orderly
shutdown path. As PID 1 it also reaps orphaned processes (tools the model
ran), which would otherwise stay zombies.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)


class Supervisor:
    """Forks the worker (no second interpreter start-up: the agent's modules
    are already imported here, which saves ~100 ms of every session start)."""

    def __init__(self, env: Mapping[str, str], worker: Callable[[], int]) -> None:
        self._run_worker = worker
        self.pid_file = Path(env.get("BERTH_WORKER_PID_FILE") or "/tmp/berth-agent-worker.pid")
        self.restart_delay = float(env.get("BERTH_RESTART_DELAY") or 0.2)
        self.max_restarts = int(env.get("BERTH_MAX_RESTARTS") or 10)
        self.restart_window = float(env.get("BERTH_RESTART_WINDOW") or 300)
        self._worker: int | None = None
        self._stopping = False
        self._restarts: deque[float] = deque()

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._forward)
        while True:
            self._worker = self._fork_worker()
            self.pid_file.write_text(f"{self._worker}\n")
            code = self._wait_for_worker(self._worker)
            self._worker = None
            if self._stopping or code >= 0:
                return max(code, 0)
            if not self._may_restart():
                log.error("the agent worker keeps dying (signal %d); giving up", -code)
                return 1
            log.warning("the agent worker was killed by signal %d; restarting it", -code)
            time.sleep(self.restart_delay)

    def _fork_worker(self) -> int:
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            code = self._run_worker()
        except BaseException:
            log.exception("the agent worker failed")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _wait_for_worker(self, worker: int) -> int:
        """Reap every child until the worker ends; its exit code (negative: signal)."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 1
            if pid == worker:
                return os.waitstatus_to_exitcode(status)

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > self.restart_window:
            self._restarts.popleft()
        self._restarts.append(now)
        return len(self._restarts) <= self.max_restarts

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True
        if self._worker is not None:
            try:
                os.kill(self._worker, signum)
            except ProcessLookupError:
                pass
