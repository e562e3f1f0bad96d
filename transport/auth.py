"""Bearer tokens: the clients' API token and constant-time comparison."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from actors.secret import Secret

API_TOKEN_FILE = "api-token"


def load_or_create_api_token(state_dir: Path) -> tuple[Secret, bool]:
    """The API token from ``state_dir`` (mode 0600); True when just generated."""
    path = state_dir / API_TOKEN_FILE
    if path.exists():
        value = path.read_text().strip()
        if value:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return Secret(value), False
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return Secret(value), True


def bearer(header: str | None) -> str | None:
    if not header or not header.startswith("Bearer "):
        return None
    return header[len("Bearer ") :].strip() or None


def matches(given: str | None, expected: Secret) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.reveal().encode())
