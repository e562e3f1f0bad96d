"""A real ``berth serve`` in a subprocess, as an operator runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent


class ServerProcess:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "transport.cli", *args],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    def wait_serving(self, timeout: float = 30) -> str:
        """The HTTP URL once the server says it serves (fails if it exits first)."""

        def serving() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"berth serve exited {self.proc.returncode}: {''.join(self.stderr)}")
            for line in self.stdout:
                found = re.search(r"serving on (http://\S+)", line)
                if found:
                    return found.group(1)
            return None

        url: str = wait_until(serving, timeout=timeout, what="berth serve to listen")  # type: ignore[assignment]
        return url

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def wait_exit(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill9()
