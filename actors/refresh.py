"""The OAuth refresh-token grant over HTTP, and the TokenActor's default refresher.

``OAuthClient.refresh_grant`` POSTs ``grant_type=refresh_token``,
``refresh_token`` and ``client_id`` (form-encoded) to the token endpoint with
the standard library's urllib and a timeout, and returns the new access token,
the rotated refresh token (if the server rotated it) and ``expires_in``.

``OAuthRefresher`` is what the TokenActor runs on its worker thread: re-read
the credentials file, run the grant, write the result back atomically (see
``credentials.write_refreshed``) and return it. The write-back happens right
there, on the worker, so a rotated refresh token is persisted even when the
actor stops while the request is in flight (losing it would log the host out).

No token ever appears in an exception message or a log line: error bodies are
reduced to the OAuth ``error``/``error_description`` fields, cut short, and
scrubbed of anything that looks like a token.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from actors.credentials import OAuthCredentials, read_credentials, write_refreshed
from actors.secret import Secret, mask

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
_DETAIL_CHARS = 200
_TOKENISH = re.compile(r"sk-ant-[A-Za-z0-9_\-]+|[A-Za-z0-9_\-]{32,}")
#: OAuth errors that mean the refresh token (or client) is not accepted: retrying cannot help.
_PERMANENT_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


class RefreshError(Exception):
    """The refresh grant failed; the message is safe to show (it holds no token).

    ``permanent`` means the endpoint rejected the refresh token or the client:
    only re-authenticating with the Claude CLI helps.
    """

    def __init__(self, message: str, *, status: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent


@dataclass(frozen=True)
class TokenGrant:
    access_token: Secret
    refresh_token: Secret | None
    expires_in: float | None


def wall_clock_ms() -> float:
    return time.time() * 1000


def scrub(text: str, secrets: Iterable[Secret] = ()) -> str:
    """``text`` with the given secrets, and anything that looks like a token, masked."""
    for secret in secrets:
        value = secret.reveal()
        if value:
            text = text.replace(value, secret.masked)
    return _TOKENISH.sub(lambda m: mask(m.group(0)), text)


def check_endpoint(url: str) -> None:
    """Raise ValueError unless ``url`` is https, or http to a loopback address (tests)."""
    if "\x00" in url or any(ch.isspace() for ch in url):
        raise ValueError("token_endpoint must be a plain URL without spaces or NUL bytes")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    raise ValueError(
        f"token_endpoint {url[:200]!r} must be an https:// URL (http:// is allowed for 127.0.0.1 "
        "and localhost only): the refresh token must not cross a network in clear text"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A token endpoint that redirects is misconfigured: fail instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class OAuthClient:
    """The refresh-token grant against one endpoint; safe to use from any one thread."""

    def __init__(self, endpoint: str, client_id: str, timeout: float) -> None:
        check_endpoint(endpoint)
        self.endpoint = endpoint
        self.client_id = client_id
        self.timeout = timeout
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        host = urllib.parse.urlsplit(endpoint).hostname or ""
        if _is_loopback(host):
            handlers.append(urllib.request.ProxyHandler({}))  # never send loopback through a proxy
        self._opener = urllib.request.build_opener(*handlers)

    def refresh_grant(self, refresh_token: Secret) -> TokenGrant:
        body = urllib.parse.urlencode(
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token.reveal(),
                "client_id": self.client_id,
            }
        ).encode()
        request = urllib.request.Request(
            self.endpoint,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                "User-Agent": "berth-token-refresh",
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
                raw = _read_bounded(response)
        except urllib.error.HTTPError as exc:
            detail = _error_detail(_read_bounded(exc), (refresh_token,))
            error_code = detail[0]
            raise RefreshError(
                f"Token refresh failed (HTTP {exc.code}){': ' + detail[1] if detail[1] else ''}",
                status=exc.code,
                permanent=exc.code in (400, 401) or error_code in _PERMANENT_ERRORS,
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise RefreshError(
                f"Token refresh failed: cannot reach {self.endpoint}: {scrub(str(reason), (refresh_token,))}"
            ) from None
        return _grant(status, raw)


def _read_bounded(stream: IO[bytes] | Any) -> bytes:
    try:
        data: bytes = stream.read(MAX_RESPONSE_BYTES + 1)
    except Exception:
        return b""
    return data[:MAX_RESPONSE_BYTES]


def _grant(status: int, raw: bytes) -> TokenGrant:
    # A 2xx body carries tokens: it is never quoted in an error.
    try:
        payload = json.loads(raw)
    except ValueError:
        raise RefreshError(
            f"Token refresh failed: the endpoint answered {status} with a body that is not JSON"
        ) from None
    if not isinstance(payload, dict):
        raise RefreshError(
            f"Token refresh failed: the endpoint answered {status} with a JSON {type(payload).__name__}"
        )
    access = payload.get("access_token")
    if not isinstance(access, str) or not access:
        raise RefreshError(f"Token refresh failed: the endpoint answered {status} without an access_token")
    rotated = payload.get("refresh_token")
    expires_in = payload.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        expires_in = None
    return TokenGrant(
        access_token=Secret(access),
        refresh_token=Secret(rotated) if isinstance(rotated, str) and rotated else None,
        expires_in=float(expires_in) if expires_in is not None else None,
    )


def _error_detail(raw: bytes, secrets: Iterable[Secret]) -> tuple[str | None, str]:
    """The OAuth ``error`` code and a short, scrubbed description of an error body."""
    text = raw.decode("utf-8", "replace")
    code: str | None = None
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):  # {"error": {"type": ..., "message": ...}} (Anthropic API style)
            code = error.get("type") if isinstance(error.get("type"), str) else None
            description = error.get("message")
        else:
            code = error if isinstance(error, str) else None
            description = payload.get("error_description")
        parts = [p for p in (code, description if isinstance(description, str) else None) if p]
        text = ": ".join(parts)
    text = " ".join(text.split())
    if len(text) > _DETAIL_CHARS:
        text = text[:_DETAIL_CHARS] + "…"
    return code, scrub(text, secrets)


class OAuthRefresher:
    """The default ``Refresher``: re-read the file, run the grant, write the result back."""

    def __init__(self, client: OAuthClient, wall_ms: Callable[[], float] = wall_clock_ms) -> None:
        self._client = client
        self._wall_ms = wall_ms

    def refresh(self, credentials_path: Path) -> OAuthCredentials:
        current = read_credentials(credentials_path)
        if current.refresh_token is None:
            raise RefreshError(
                f"{credentials_path} has no refresh token: re-authenticate with the Claude CLI",
                permanent=True,
            )
        asked_at = self._wall_ms()
        grant = self._client.refresh_grant(current.refresh_token)
        expires_at = int(asked_at + grant.expires_in * 1000) if grant.expires_in is not None else None
        write_refreshed(credentials_path, grant.access_token, grant.refresh_token, expires_at)
        log.info(
            "OAuth token refreshed (%s)%s; written to %s",
            grant.access_token.masked,
            ", refresh token rotated" if grant.refresh_token is not None else "",
            credentials_path,
        )
        return OAuthCredentials(grant.access_token, grant.refresh_token or current.refresh_token, expires_at)
