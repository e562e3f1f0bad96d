"""A manager session's scoped API token: issued at create, issued anew after a restart.

The token lives only in the server's memory and in the manager's secret file
(``manager-token`` in its secrets dir on the host, which its container sees
read-only). The store keeps nothing of it, not even a digest: a restarted
server cannot know the old token, so before it listens it issues a fresh one
and writes it over the file. The agent reads the file on every tool call, so
its next call carries the new token; the old one died with the old process.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from actors.secret import Secret

FILE_NAME = "manager-token"


def issue() -> Secret:
    return Secret(secrets.token_urlsafe(32))


def reissue(secrets_dir: Path) -> Secret:
    """A fresh token for a recovered manager, written over its file in ``secrets_dir``.

    Written beside the file and renamed over it, so the agent never reads half
    a token; mode 0600 and the old file's owner (the container's user). A dir
    that is gone is not recreated: that session's container is gone too."""
    token = issue()
    target = secrets_dir / FILE_NAME
    if not secrets_dir.is_dir():
        return token
    owner = target if target.exists() else secrets_dir
    staged = secrets_dir / f".{FILE_NAME}.new"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token.reveal())
    if os.geteuid() == 0:
        stat = owner.stat()
        os.chown(staged, stat.st_uid, stat.st_gid)
    os.replace(staged, target)
    return token
