"""A second, private Docker engine the test owns: it stops and restarts it at will.

Its own socket, data root, exec root and pid file under one short temp dir
(unix socket paths are limited to 108 bytes); ``--live-restore`` so that its
containers keep running while it is down, the way a real engine upgrade goes.
Its one image, ``tiny:1``, is imported from a tarball of ``/bin/sleep`` and
the two libraries it needs: a few MB, imported in well under a second.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
from pathlib import Path

import docker

from tests.waiting import wait_until

IMAGE = "tiny:1"
SLEEP = ("/bin/sleep", "300")
_FILES = ("/bin/sleep", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2")


class PrivateDockerd:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bd", dir="/tmp"))
        self.socket = self.root / "d.sock"
        self.url = f"unix://{self.socket}"
        self.pidfile = self.root / "d.pid"
        self._log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - closed in cleanup()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "dockerd",
                f"--host={self.url}",
                f"--data-root={self.root / 'data'}",
                f"--exec-root={self.root / 'exec'}",
                f"--pidfile={self.pidfile}",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--live-restore",
                "--shutdown-timeout=1",
            ],
            stdout=self._log,
            stderr=self._log,
        )
        wait_until(self._answers, timeout=30, what="the private dockerd to answer")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"dockerd exited {self.proc.returncode}: see {self.root / 'dockerd.log'}")
        try:
            self.client().ping()
        except Exception:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=10)

    def load_image(self) -> None:
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            for path in _FILES:
                tar.add(os.path.realpath(path), arcname=path.lstrip("/"))
        self.client().api.import_image_from_data(data.getvalue(), repository="tiny", tag="1")

    def cleanup(self) -> None:
        client = self.client() if self.proc is not None else None
        if client is not None:
            for container in client.containers.list(all=True):
                container.remove(force=True)
        self.stop()
        self._log.close()
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(str(self.root))), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
