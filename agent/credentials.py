"""The container-local Claude credentials file.

The server pushes short-lived access tokens (never a refresh token: only the
host refreshes, so a container can never rotate the host's refresh token and
log it out). The agent writes each one where the Claude Code CLI looks for
credentials, so a CLI that re-reads the file picks up a pushed token without
a restart. Whether and when the CLI re-reads it is to be verified against the
real CLI; this module only guarantees the file is complete and private.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

SCOPES = ["user:inference"]


def default_credentials_path(env: dict[str, str] | None = None) -> Path:
    """``$CLAUDE_CONFIG_DIR/.credentials.json``, else ``~/.claude/.credentials.json``."""
    source = os.environ if env is None else env
    config_dir = source.get("CLAUDE_CONFIG_DIR")
    base = Path(config_dir) if config_dir else Path.home() / ".claude"
    return base / ".credentials.json"


def write_access_token(path: Path, token: str, expires_at_ms: int | None) -> None:
    """Atomically replace ``path`` with credentials holding ``token``.

    Written to a temp file in the same directory (mode 0600) and renamed over
    the old file, so a reader sees the old or the new content, never half.
    The directory is created with mode 0700.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    payload = {
        "claudeAiOauth": {
            "accessToken": token,
            "expiresAt": expires_at_ms,
            "scopes": SCOPES,
        }
    }
    fd, tmp_name = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            os.fchmod(tmp.fileno(), 0o600)
            json.dump(payload, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
