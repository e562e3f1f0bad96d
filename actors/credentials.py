"""The Claude credentials file: reading it and writing a refreshed token back.

Format (written by the Claude CLI): ``{"claudeAiOauth": {"accessToken",
"refreshToken", "expiresAt" (Unix ms), "scopes", ...}, ...}``. Fields Berth
does not own are kept as they are on write-back.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.secret import Secret

CREDENTIALS_FILE = ".credentials.json"


class CredentialsError(Exception):
    """The credentials file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class OAuthCredentials:
    access_token: Secret
    refresh_token: Secret | None
    expires_at_ms: int | None


def read_credentials(path: Path) -> OAuthCredentials:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CredentialsError(
            f"No Claude credentials at {path}: log in with the Claude CLI (`claude login`) "
            "or set CLAUDE_CODE_OAUTH_TOKEN"
        ) from None
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"Cannot read Claude credentials at {path}: {exc}") from None
    oauth = raw.get("claudeAiOauth") if isinstance(raw, dict) else None
    if not isinstance(oauth, dict) or not isinstance(oauth.get("accessToken"), str):
        raise CredentialsError(f"{path} has no claudeAiOauth.accessToken: log in again with the Claude CLI")
    refresh = oauth.get("refreshToken")
    expires = oauth.get("expiresAt")
    return OAuthCredentials(
        access_token=Secret(oauth["accessToken"]),
        refresh_token=Secret(refresh) if isinstance(refresh, str) and refresh else None,
        expires_at_ms=int(expires) if isinstance(expires, int | float) else None,
    )


def write_refreshed(
    path: Path, access_token: Secret, refresh_token: Secret | None, expires_at_ms: int | None
) -> None:
    """Atomically update the token fields, re-reading the file just before."""
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        raw = {}
    oauth = raw.setdefault("claudeAiOauth", {})
    oauth["accessToken"] = access_token.reveal()
    if refresh_token is not None:
        oauth["refreshToken"] = refresh_token.reveal()
    if expires_at_ms is not None:
        oauth["expiresAt"] = expires_at_ms
    fd, tmp = tempfile.mkstemp(prefix=".credentials.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(raw, handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
