"""Bearer tokens: the clients' API token, its file, and constant-time comparison.

Authentication cannot be switched off by accident: a token file that is
missing, empty or too weak to guess-proof the server is refused at start
(``TokenFileError``, one line naming the fix), an empty token never matches
anything, and a generated token is written atomically (a temp file, mode
0600, renamed into place), so a crash or a full disk never leaves half a
token behind.
"""

from __future__ import annotations

import hmac
import math
import os
import secrets
import string
import tempfile
from pathlib import Path

from actors.secret import Secret

API_TOKEN_FILE = "api-token"
#: A token must carry at least this much entropy (estimated, see ``token_bits``).
MIN_TOKEN_BITS = 256
#: Fewer distinct characters than this is a pattern, not a random token.
MIN_DISTINCT_CHARS = 8
GENERATE_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"

_ALPHABETS = (
    frozenset(string.digits),
    frozenset(string.digits + "abcdef"),
    frozenset(string.digits + "ABCDEF"),
    frozenset(string.ascii_letters + string.digits + "-_"),
    frozenset(string.ascii_letters + string.digits + "+/="),
    frozenset(string.printable.strip()),
)


class TokenFileError(ValueError):
    """The API token file cannot be used; the message says what to do."""


def token_bits(token: str) -> float:
    """An upper estimate of a token's entropy: its length times the bits per
    character of the smallest usual alphabet (digits, hex, base64, printable
    ASCII) that holds it; 0 for a token of fewer than 8 distinct characters."""
    chars = set(token)
    if len(chars) < MIN_DISTINCT_CHARS:
        return 0.0
    for alphabet in _ALPHABETS:
        if chars <= alphabet:
            return len(token) * math.log2(len(alphabet))
    return len(token) * math.log2(len(_ALPHABETS[-1]))


def check_token(token: str, source: str) -> Secret:
    """``token`` as a Secret, or TokenFileError when it is empty or weak."""
    if not token:
        raise TokenFileError(f"the API token in {source} is empty; put a random token in it: {GENERATE_HINT}")
    if token_bits(token) < MIN_TOKEN_BITS:
        raise TokenFileError(
            f"the API token in {source} is too weak to protect the server (under {MIN_TOKEN_BITS} bits: "
            f"use at least 43 random URL-safe characters or 64 hex digits, e.g. {GENERATE_HINT})"
        )
    return Secret(token)


def read_token_file(path: Path) -> Secret:
    """The token an operator put in ``path`` (``--api-token-file``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenFileError(
            f"the API token file {path} does not exist; create it ({GENERATE_HINT} > {path}; "
            "chmod 600) or leave out --api-token-file to have one generated"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the API token file {path}: {_reason(exc)}") from None
    return check_token(text.strip(), str(path))


def load_or_create_api_token(state_dir: Path) -> tuple[Secret, bool]:
    """The API token from ``state_dir`` (mode 0600); True when just generated."""
    path = state_dir / API_TOKEN_FILE
    if path.exists():
        token = read_token_file(path)
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return token, False
    value = secrets.token_urlsafe(32)
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomically(path, value + "\n")
    except OSError as exc:
        raise TokenFileError(
            f"cannot write the API token to {path}: {_reason(exc)}; free space or fix the "
            "permissions of the state directory (--state-dir), or pass --api-token-file"
        ) from None
    return Secret(value), True


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


def bearer(header: str | None) -> str | None:
    if not header or not header.startswith("Bearer "):
        return None
    return header[len("Bearer ") :].strip() or None


def matches(given: str | None, expected: Secret) -> bool:
    """Constant-time; an empty or absent token on either side never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.reveal().encode())
