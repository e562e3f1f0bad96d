"""The TokenActor: the single owner of the Claude OAuth credentials.

It answers "ensure fresh" requests with a ``TokenAnswer`` told back to the
requester, and broadcasts every new token (``TokenRefreshed``) and every
failure (``TokenRefreshFailed``) to its subscribers. Refreshing an expired
token is delegated to a ``Refresher`` (the seam for the OAuth refresh grant);
with none, an expired token is answered as "no token" with the reason.

On stop, subscribers are forgotten; nothing else is held.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import pykka

from actors.config import BerthConfig
from actors.credentials import CREDENTIALS_FILE, CredentialsError, OAuthCredentials, read_credentials
from actors.messages import (
    ActorRef,
    EnsureFreshToken,
    GetTokenStatus,
    SubscribeTokens,
    TokenAnswer,
    TokenRefreshed,
    TokenRefreshFailed,
    TokenStatus,
    UnsubscribeTokens,
)
from actors.secret import Secret

log = logging.getLogger(__name__)

ENV_TOKEN = "CLAUDE_CODE_OAUTH_TOKEN"
REFRESH_MARGIN_MS = 5 * 60 * 1000


class Refresher(Protocol):
    def refresh(self, credentials_path: Path) -> OAuthCredentials:
        """Run the refresh grant and persist the result; raise on failure."""
        ...


class TokenActor(pykka.ThreadingActor):
    def __init__(
        self,
        config: BerthConfig,
        refresher: Refresher | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self._path = config.claude_dir / CREDENTIALS_FILE if config.claude_dir else None
        env = os.environ if environ is None else environ
        self._env_token = Secret(env[ENV_TOKEN]) if env.get(ENV_TOKEN) else None
        self._refresher = refresher
        self._subscribers: list[ActorRef] = []
        self._current: Secret | None = None
        self._expires_at_ms: int | None = None
        self._last_error: str | None = None

    def on_receive(self, message: Any) -> Any:
        match message:
            case EnsureFreshToken(reply_to=reply_to):
                self._tell(reply_to, self._ensure_fresh())
            case SubscribeTokens(ref=ref):
                if ref not in self._subscribers:
                    self._subscribers.append(ref)
            case UnsubscribeTokens(ref=ref):
                if ref in self._subscribers:
                    self._subscribers.remove(ref)
            case GetTokenStatus():
                return self._status()
            case _:
                raise TypeError(f"TokenActor cannot handle {message!r}")
        return None

    def _ensure_fresh(self) -> TokenAnswer:
        if self._path is None:
            if self._env_token is None:
                return TokenAnswer(None, f"no credentials: set claude_dir or {ENV_TOKEN}")
            return TokenAnswer(self._env_token)
        try:
            creds = read_credentials(self._path)
        except CredentialsError as exc:
            return self._failed(str(exc))
        if _expiring(creds.expires_at_ms):
            if self._refresher is None:
                return self._failed("the OAuth token has expired and no refresher is configured")
            try:
                creds = self._refresher.refresh(self._path)
            except Exception as exc:
                return self._failed(f"token refresh failed: {exc}")
        self._adopt(creds)
        return TokenAnswer(creds.access_token)

    def _adopt(self, creds: OAuthCredentials) -> None:
        changed = self._current is not None and creds.access_token != self._current
        self._current, self._expires_at_ms = creds.access_token, creds.expires_at_ms
        self._last_error = None
        if changed:
            self._broadcast(TokenRefreshed(creds.access_token))

    def _failed(self, reason: str) -> TokenAnswer:
        if reason != self._last_error:
            self._broadcast(TokenRefreshFailed(reason))
        self._last_error = reason
        return TokenAnswer(None, reason)

    def _broadcast(self, message: TokenRefreshed | TokenRefreshFailed) -> None:
        for ref in list(self._subscribers):
            if not self._tell(ref, message):
                self._subscribers.remove(ref)

    @staticmethod
    def _tell(ref: ActorRef, message: Any) -> bool:
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def _status(self) -> TokenStatus:
        source = "file" if self._path else ("env" if self._env_token else "none")
        token = self._current or (self._env_token if self._path is None else None)
        return TokenStatus(
            source=source,
            masked_token=token.masked if token else None,
            expires_at_ms=self._expires_at_ms,
            last_error=self._last_error,
        )


def _expiring(expires_at_ms: int | None) -> bool:
    if expires_at_ms is None:
        return False
    return time.time() * 1000 >= expires_at_ms - REFRESH_MARGIN_MS
