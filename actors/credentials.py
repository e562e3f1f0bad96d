"""The Claude credentials file: where it may be, reading it, writing a refreshed token back.

Format (written by the Claude CLI): ``{"claudeAiOauth": {"accessToken",
"refreshToken", "expiresAt" (Unix ms), "scopes", ...}, ...}``. Fields Berth
does not own are kept as they are on write-back.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.secret import Secret

log = logging.getLogger(__name__)

CREDENTIALS_FILE = ".credentials.json"
CLAUDE_DIR_NAME = ".claude"
MAX_PATH_CHARS = 500


class CredentialsError(Exception):
    """The credentials file is missing, unreadable or malformed."""


class ClaudeDirError(ValueError):
    """A configured ``claude_dir`` that Berth refuses to read credentials from."""


@dataclass(frozen=True)
class OAuthCredentials:
    access_token: Secret
    refresh_token: Secret | None
    expires_at_ms: int | None


def check_claude_dir(claude_dir: Path | str, root: Path | str | None = None) -> Path:
    """The absolute form of ``claude_dir`` once it passes every check; else ClaudeDirError.

    The directory must be named ``.claude``, lie (after resolving symlinks and
    ``..``) under ``root`` (default: the user's home), hold no NUL byte and be
    at most ``MAX_PATH_CHARS`` long. It need not exist yet (the user may log in
    with the Claude CLI later), but if it exists it must be a directory.
    """
    raw = os.fspath(claude_dir)
    _check_path_text("claude_dir", raw)
    root_text = os.fspath(root) if root is not None else str(Path.home())
    _check_path_text("claude_dir_root", root_text)
    path = Path(os.path.abspath(os.path.expanduser(raw)))
    example = Path(os.path.abspath(os.path.expanduser(root_text))) / CLAUDE_DIR_NAME
    if path.name != CLAUDE_DIR_NAME:
        raise ClaudeDirError(
            f"claude_dir {_show(raw)} must point to a {CLAUDE_DIR_NAME} directory (the one holding "
            f"{CREDENTIALS_FILE}): pass e.g. {example}"
        )
    resolved_root = Path(os.path.realpath(os.path.expanduser(root_text)))
    resolved = Path(os.path.realpath(path))
    if not resolved.is_relative_to(resolved_root):
        where = "" if resolved == path else f" (it resolves to {_show(str(resolved))})"
        hint = "the user's home" if root is None else "claude_dir_root"
        raise ClaudeDirError(
            f"claude_dir {_show(raw)} is outside the allowed root {resolved_root}{where}: use a "
            f"{CLAUDE_DIR_NAME} directory under {hint}, or set claude_dir_root to a directory "
            "that contains it"
        )
    if path.exists() and not path.is_dir():
        raise ClaudeDirError(f"claude_dir {_show(raw)} exists but is not a directory")
    return path


def _check_path_text(name: str, raw: str) -> None:
    if "\x00" in raw:
        raise ClaudeDirError(f"{name} contains a NUL byte: pass a plain path such as ~/{CLAUDE_DIR_NAME}")
    if not raw.strip():
        raise ClaudeDirError(f"{name} is empty: pass a path such as ~/{CLAUDE_DIR_NAME}, or leave it unset")
    if len(raw) > MAX_PATH_CHARS:
        raise ClaudeDirError(
            f"{name} is {len(raw)} characters long (at most {MAX_PATH_CHARS}): pass the path of "
            f"your {CLAUDE_DIR_NAME} directory, e.g. ~/{CLAUDE_DIR_NAME}"
        )


def _show(raw: str) -> str:
    return repr(raw if len(raw) <= 120 else raw[:100] + "…")


def read_credentials(path: Path) -> OAuthCredentials:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CredentialsError(
            f"No Claude credentials at {path}: log in with the Claude CLI (`claude login`) "
            "or set CLAUDE_CODE_OAUTH_TOKEN"
        ) from None
    except (OSError, ValueError) as exc:
        # A JSON error message quotes the text around the fault: never show it.
        detail = exc.strerror if isinstance(exc, OSError) else "it is not valid JSON"
        raise CredentialsError(f"Cannot read Claude credentials at {path}: {detail}") from None
    oauth = raw.get("claudeAiOauth") if isinstance(raw, dict) else None
    access = oauth.get("accessToken") if isinstance(oauth, dict) else None
    if not isinstance(oauth, dict) or not isinstance(access, str) or not access:
        raise CredentialsError(f"{path} has no claudeAiOauth.accessToken: log in again with the Claude CLI")
    refresh = oauth.get("refreshToken")
    return OAuthCredentials(
        access_token=Secret(access),
        refresh_token=Secret(refresh) if isinstance(refresh, str) and refresh else None,
        expires_at_ms=_millis(oauth.get("expiresAt")),
    )


def _millis(value: object) -> int | None:
    """``expiresAt`` as Unix ms, or None when absent or not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value)


def write_refreshed(
    path: Path, access_token: Secret, refresh_token: Secret | None, expires_at_ms: int | None
) -> None:
    """Atomically update the token fields, re-reading the file just before.

    Only ``accessToken``, ``refreshToken`` (when a new one is given) and
    ``expiresAt`` change; every other field, in ``claudeAiOauth`` or beside it,
    is kept as the Claude CLI left it. ``expires_at_ms=None`` removes
    ``expiresAt`` (the server did not say; an old value would look expired).
    The new file (mode 0600) replaces the old by rename, next to the real file
    when ``path`` is a symlink, so the link stays.
    """
    target = Path(os.path.realpath(path))
    try:
        raw: Any = json.loads(target.read_text())
    except FileNotFoundError:
        raw = {}
    except (OSError, ValueError):
        log.warning("%s was unreadable before the write-back; only the token fields are written", target)
        raw = {}
    if not isinstance(raw, dict):
        raw = {}
    oauth = raw.get("claudeAiOauth")
    if not isinstance(oauth, dict):
        oauth = raw["claudeAiOauth"] = {}
    oauth["accessToken"] = access_token.reveal()
    if refresh_token is not None:
        oauth["refreshToken"] = refresh_token.reveal()
    if expires_at_ms is not None:
        oauth["expiresAt"] = expires_at_ms
    else:
        oauth.pop("expiresAt", None)
    fd, tmp = tempfile.mkstemp(prefix=".credentials.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(raw, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
