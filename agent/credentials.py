"""The container-local Claude credentials file.

The server pushes short-lived access tokens (never a refresh token: only the
host refreshes, so a container can never rotate the host's refresh token and
log it out). The agent writes each one to ``$CLAUDE_CONFIG_DIR/.credentials.json``,
where the Claude Code CLI looks for a claude.ai login.

Checked against the real CLI (2.1.330, see ``docs/credentials.md``): before
every API request the CLI stats this file and re-reads it when its mtime
changed, so a rewritten token reaches a running CLI on its next request,
mid-turn included; after a 401 it re-reads it again before each retry. It
never writes the file back when there is no refresh token in it. Any token
in the CLI's environment (``CLAUDE_CODE_OAUTH_TOKEN``, ``ANTHROPIC_API_KEY``,
``ANTHROPIC_AUTH_TOKEN``) or an ``apiKeyHelper`` setting wins over the file,
so the runner must not hand the token to the CLI any other way.
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


def read_access_token(path: Path) -> str | None:
    """The access token in ``path``, or None if it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    oauth = data.get("claudeAiOauth") if isinstance(data, dict) else None
    token = oauth.get("accessToken") if isinstance(oauth, dict) else None
    return token if isinstance(token, str) and token else None


def write_access_token(path: Path, token: str, expires_at_ms: int | None, group: int | None = None) -> None:
    """Atomically replace ``path`` with credentials holding ``token``.

    Written to a temp file in the same directory (mode 0600) and renamed over
    the old file, so a reader sees the old or the new content, never half.
    The directory is created with mode 0700. The new file's mtime always
    differs from the old one's, even on a filesystem with coarse timestamps:
    the mtime is how the CLI notices a rewrite. ``expires_at_ms`` may be None
    (the CLI then never considers the token expired; it cannot refresh it
    anyway, having no refresh token).

    With ``group`` (the tool user's gid, when the CLI runs as another user
    than the agent) the file is 0640 in that group, and the directory is left
    as ``agent.isolation`` prepared it.
    """
    if group is None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
    try:
        previous_mtime: int | None = path.stat().st_mtime_ns
    except FileNotFoundError:
        previous_mtime = None
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
            if group is None:
                os.fchmod(tmp.fileno(), 0o600)
            else:
                os.fchown(tmp.fileno(), -1, group)
                os.fchmod(tmp.fileno(), 0o640)
            json.dump(payload, tmp)
            tmp.flush()
            # No fsync: the file lives only as long as its container and is
            # rewritten from memory on every token_update; an fsync on the
            # container's overlay filesystem cost tens of ms of every start.
            written = os.fstat(tmp.fileno())
        if previous_mtime is not None and written.st_mtime_ns <= previous_mtime:
            bumped = previous_mtime + 1_000_000  # 1 ms: the CLI compares mtimes in ms
            os.utime(tmp_name, ns=(written.st_atime_ns, bumped))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
