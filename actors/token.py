"""The TokenActor: the single owner of the Claude OAuth credentials.

Sources: ``<claude_dir>/.credentials.json`` (``claudeAiOauth.accessToken``,
``refreshToken``, ``expiresAt`` in Unix ms), re-read on every request so a
login or refresh by the Claude CLI is seen at once; or, with no claude_dir,
the ``CLAUDE_CODE_OAUTH_TOKEN`` environment token (no expiry known, never
refreshed).

``EnsureFreshToken(reply_to)`` is answered with a ``TokenAnswer`` told to
``reply_to``. A token that expires within ``token_refresh_margin`` is
refreshed first, with these rules:

- **One refresh in flight.** The HTTP call runs on a worker thread owned by
  this actor (at most one exists); its result comes back as a message.
  Requests that arrive meanwhile queue their ``reply_to`` and all get that
  one result; status asks, subscriptions and requests for a token that is
  still fresh are served meanwhile.
- **Cooldown.** No new attempt for ``token_refresh_cooldown`` after the last
  one. A request in a cooldown is answered at once: with the current token if
  it has not actually expired yet, else "no token" with the reason (also in
  ``TokenStatus.last_error``). A refresh token the endpoint rejected (HTTP
  400/401) is not tried again; a new one in the file (a CLI login) is.
- **Proactive refresh.** At start and every ``token_check_interval`` the
  actor re-reads the file and refreshes a token within the margin; a failed
  attempt (not a rejected refresh token) is retried once when the cooldown
  ends, without waiting for a session to ask.
- **Broadcasts.** Every new token (refreshed here, or written by the CLI) is
  told to subscribers as ``TokenRefreshed`` and published on the event bus as
  ``AuthAlert("refreshed")``. A failure is told as ``TokenRefreshFailed`` and
  published as ``AuthAlert("refresh_failed")`` once per failure episode; a
  new token ends the episode.

Time: cooldowns and checks use the timer service's clock (a ``ManualClock``
in tests); ``expiresAt`` is compared with ``wall_ms()`` (injectable).

On stop: timers are cancelled, queued requesters are told "no token", and a
refresh still in flight is waited for (at most the HTTP timeout) so that a
rotated refresh token reaches the file before the process exits.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pykka

from actors.clock import Clock, SystemClock
from actors.config import BerthConfig
from actors.credentials import (
    CREDENTIALS_FILE,
    ClaudeDirError,
    CredentialsError,
    OAuthCredentials,
    check_claude_dir,
    read_credentials,
)
from actors.events import EventBus
from actors.guarded_start import GuardedStart
from actors.messages import (
    ActorRef,
    ChildFailed,
    EnsureFreshToken,
    GetTokenStatus,
    Probe,
    SubscribeTokens,
    TokenAnswer,
    TokenRefreshed,
    TokenRefreshFailed,
    TokenStatus,
    UnsubscribeTokens,
)
from actors.refresh import OAuthClient, OAuthRefresher, RefreshError, check_endpoint, scrub, wall_clock_ms
from actors.secret import Secret
from actors.settle import answer_probe
from actors.timers import ActorTimers, TimerFired, TimerService
from transport.protocol import AuthAlert

log = logging.getLogger(__name__)

ENV_TOKEN = "CLAUDE_CODE_OAUTH_TOKEN"
REAUTH_HINT = (
    "Re-authenticate with the Claude CLI on the Berth host; sessions get the new token automatically."
)


class Refresher(Protocol):
    def refresh(self, credentials_path: Path) -> OAuthCredentials:
        """Run the refresh grant and persist the result; raise on failure.

        Runs on the TokenActor's worker thread. A ``RefreshError`` message is
        shown as is (it must hold no token); other exceptions are scrubbed.
        """
        ...


def validate_token_config(config: BerthConfig) -> BerthConfig:
    """``config`` with ``claude_dir`` made absolute, or a ValueError naming the problem and the fix.

    ``Berth.start`` calls this before any actor starts.
    """
    for name in ("token_refresh_margin", "token_refresh_cooldown"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0 seconds")
    for name in ("token_check_interval", "token_http_timeout"):
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be > 0 seconds")
    check_endpoint(config.token_endpoint)
    client_id = config.token_client_id
    if not client_id or not client_id.isprintable() or len(client_id) > 200:
        raise ValueError("token_client_id must be 1-200 printable characters (the OAuth client id)")
    if config.claude_dir is None:
        return config
    try:
        claude_dir = check_claude_dir(config.claude_dir, config.claude_dir_root)
    except ClaudeDirError:
        raise
    except (OSError, ValueError) as exc:
        raise ClaudeDirError(f"claude_dir cannot be used: {exc}") from None
    return dataclasses.replace(config, claude_dir=claude_dir)


# ---------------------------------------------------------------- private messages


@dataclass(frozen=True)
class _RefreshDone:
    """Told by the worker thread: the outcome of refresh attempt ``attempt``."""

    attempt: int
    credentials: OAuthCredentials | None
    error: str | None = None
    permanent: bool = False


@dataclass(frozen=True)
class _CheckDue:
    """The periodic check (a timer)."""


@dataclass(frozen=True)
class _RetryDue:
    """The one retry after a failed attempt, when its cooldown ends (a timer)."""


@dataclass
class _Flight:
    attempt: int
    kind: str  # "request" | "proactive" | "retry"
    refresh_token: Secret
    waiters: list[ActorRef] = dataclasses.field(default_factory=list)


class TokenActor(GuardedStart, pykka.ThreadingActor):
    def __init__(
        self,
        config: BerthConfig,
        refresher: Refresher | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        timers: TimerService | None = None,
        bus: EventBus | None = None,
        wall_ms: Callable[[], float] | None = None,
        supervisor: ActorRef | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._supervisor = supervisor
        self.handled = 0
        self._path = config.claude_dir / CREDENTIALS_FILE if config.claude_dir else None
        env = os.environ if environ is None else environ
        self._env_token = Secret(env[ENV_TOKEN]) if env.get(ENV_TOKEN) else None
        self._timer_service = timers
        self._clock: Clock = timers.clock if timers is not None else SystemClock()
        self._wall_ms = wall_ms or wall_clock_ms
        self._refresher: Refresher = refresher or OAuthRefresher(
            OAuthClient(config.token_endpoint, config.token_client_id, config.token_http_timeout),
            self._wall_ms,
        )
        self._bus = bus
        self._subscribers: list[ActorRef] = []
        self._current: Secret | None = None
        self._expires_at_ms: int | None = None
        self._last_error: str | None = None
        self._attempts = 0
        self._flight: _Flight | None = None
        #: The last worker thread: waited for on stop (it may be writing the file).
        self._worker: threading.Thread | None = None
        #: Clock time before which no refresh attempt starts (the cooldown).
        self._not_before: float | None = None
        #: In a failure episode (its broadcast has gone out).
        self._failing = False
        #: The refresh token the endpoint rejected (None: the file had none): not tried again.
        self._dead_refresh = False
        self._rejected: Secret | None = None
        self._timers: ActorTimers | None = None

    # ------------------------------------------------------------ lifecycle

    def _begin(self) -> None:
        if self._timer_service is not None:
            self._timers = ActorTimers(self._timer_service, self.actor_ref)
        if self._path is not None:
            self._read(initial=True)
            self._arm_check()
            self._check("proactive")

    def on_stop(self) -> None:
        self._release("the token service stopped")
        worker = self._worker
        if worker is not None and worker.is_alive() and worker is not threading.current_thread():
            worker.join(timeout=self._config.token_http_timeout + 1)
            if worker.is_alive():
                log.warning("a token refresh still in flight at shutdown was abandoned")

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        reason = f"{getattr(exc_type, '__name__', exc_type)}: {exc}"
        log.error("the TokenActor failed: %s", reason)
        self._release("the token service failed")
        if self._supervisor is not None:
            self._tell(self._supervisor, ChildFailed("token", reason))

    def _release(self, why: str) -> None:
        if self._timers is not None:
            self._timers.cancel_all()
        if self._flight is not None:
            waiters, self._flight.waiters = self._flight.waiters, []
            for ref in waiters:
                self._tell(ref, TokenAnswer(None, why))
        self._subscribers.clear()

    # ------------------------------------------------------------ dispatch

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Probe):
            return answer_probe(self, self.handled)
        self.handled += 1
        match message:
            case EnsureFreshToken(reply_to=reply_to):
                self._ensure_fresh(reply_to)
            case SubscribeTokens(ref=ref):
                if ref not in self._subscribers:
                    self._subscribers.append(ref)
            case UnsubscribeTokens(ref=ref):
                if ref in self._subscribers:
                    self._subscribers.remove(ref)
            case GetTokenStatus():
                return self._status()
            case _RefreshDone():
                self._refresh_done(message)
            case TimerFired():
                fired = self._timers.accept(message) if self._timers is not None else None
                if fired is not None:
                    self.on_receive(fired)
            case _CheckDue():
                self._arm_check()
                self._check("proactive")
            case _RetryDue():
                self._check("retry")
            case _:
                raise TypeError(f"TokenActor cannot handle {message!r}")
        return None

    # ------------------------------------------------------------ ensure fresh

    def _ensure_fresh(self, reply_to: ActorRef) -> None:
        if self._path is None:
            if self._env_token is None:
                reason = f"no OAuth credentials: set claude_dir or {ENV_TOKEN}"
                self._tell(reply_to, TokenAnswer(None, reason))
            else:
                self._tell(reply_to, TokenAnswer(self._env_token))
            return
        creds = self._read()
        if creds is None:
            self._tell(reply_to, TokenAnswer(None, self._last_error))
            return
        if not self._expiring(creds.expires_at_ms):
            self._tell(reply_to, TokenAnswer(creds.access_token))
            return
        if self._flight is not None:
            self._flight.waiters.append(reply_to)
            return
        blocked = self._blocked(creds)
        if blocked is not None:
            self._tell(reply_to, self._fallback(blocked))
            return
        self._start_refresh(creds, "request", reply_to)

    def _check(self, kind: str) -> None:
        """Refresh ahead of expiry when allowed (the periodic check and the retry)."""
        if self._path is None or self._flight is not None:
            return
        creds = self._read()
        if creds is None or not self._expiring(creds.expires_at_ms) or self._blocked(creds) is not None:
            return
        self._start_refresh(creds, kind, None)

    def _blocked(self, creds: OAuthCredentials) -> str | None:
        """Why no refresh attempt may start now, or None."""
        if self._dead_refresh and creds.refresh_token == self._rejected:
            return self._last_error or f"the refresh token cannot be used. {REAUTH_HINT}"
        now = self._clock.now()
        if self._not_before is not None and now < self._not_before:
            wait = self._not_before - now
            what = self._last_error or "a refresh has just run"
            return f"{what} (no new refresh attempt for {wait:.0f} s)"
        return None

    def _fallback(self, reason: str) -> TokenAnswer:
        """No fresh token: the current one while it has not actually expired, else none."""
        if self._current is not None and not self._expired(self._expires_at_ms):
            return TokenAnswer(self._current, reason)
        return TokenAnswer(None, reason)

    # ------------------------------------------------------------ the refresh

    def _start_refresh(self, creds: OAuthCredentials, kind: str, reply_to: ActorRef | None) -> None:
        assert self._path is not None and self._flight is None
        if creds.refresh_token is None:
            reason = f"{self._path} has no refresh token, so the expiring OAuth token cannot be refreshed"
            self._failed(reason, permanent=True, kind=kind, refresh_token=None)
            if reply_to is not None:
                self._tell(reply_to, self._fallback(self._last_error or reason))
            return
        self._attempts += 1
        attempt = self._attempts
        secrets = (creds.access_token, creds.refresh_token)
        worker = threading.Thread(
            target=_refresh_worker,
            args=(self._refresher, self._path, attempt, self.actor_ref, secrets),
            name=f"berth-token-refresh-{attempt}",
            daemon=True,
        )
        self._flight = _Flight(attempt, kind, creds.refresh_token)
        if reply_to is not None:
            self._flight.waiters.append(reply_to)
        self._worker = worker
        log.info("refreshing the OAuth token (%s, attempt %d)", kind, attempt)
        worker.start()

    def _refresh_done(self, done: _RefreshDone) -> None:
        flight = self._flight
        if flight is None or flight.attempt != done.attempt:
            return
        self._flight = None
        self._not_before = self._clock.now() + self._config.token_refresh_cooldown
        if done.credentials is None:
            reason = done.error or "the token refresh failed"
            self._failed(
                reason, permanent=done.permanent, kind=flight.kind, refresh_token=flight.refresh_token
            )
            answer = self._fallback(self._last_error or reason)
        else:
            self._adopt(done.credentials)
            self._end_failure_episode()
            answer = TokenAnswer(done.credentials.access_token)
        for ref in flight.waiters:
            self._tell(ref, answer)

    def _failed(self, reason: str, *, permanent: bool, kind: str, refresh_token: Secret | None) -> None:
        cooldown = self._config.token_refresh_cooldown
        self._not_before = self._clock.now() + cooldown
        if permanent:
            self._dead_refresh, self._rejected = True, refresh_token
            reason = f"{reason}. {REAUTH_HINT}"
        self._last_error = reason
        log.warning("OAuth token refresh failed (%s): %s", kind, reason)
        if not permanent and kind != "retry" and self._timers is not None:
            self._timers.start("retry", cooldown, _RetryDue())
        if self._failing:
            return
        self._failing = True
        self._broadcast(TokenRefreshFailed(reason))
        advice = "" if permanent else f" If it keeps failing, {REAUTH_HINT[0].lower()}{REAUTH_HINT[1:]}"
        message = f"OAuth token refresh failed: {reason.rstrip('.')}.{advice}"
        self._publish(AuthAlert(status="refresh_failed", message=message))

    def _end_failure_episode(self) -> None:
        self._failing = False
        self._dead_refresh, self._rejected = False, None
        self._last_error = None
        if self._timers is not None:
            self._timers.cancel("retry")

    # ------------------------------------------------------------ the file

    def _read(self, initial: bool = False) -> OAuthCredentials | None:
        assert self._path is not None
        try:
            creds = read_credentials(self._path)
        except CredentialsError as exc:
            self._last_error = str(exc)
            return None
        if not self._failing:
            self._last_error = None
        self._adopt(creds, initial)
        return creds

    def _adopt(self, creds: OAuthCredentials, initial: bool = False) -> None:
        """Take the file's (or a refresh's) token; a new, unexpired one is broadcast."""
        previous = self._current
        self._current, self._expires_at_ms = creds.access_token, creds.expires_at_ms
        if initial or creds.access_token == previous or self._expired(creds.expires_at_ms):
            return
        if self._flight is None and self._failing:
            # A token we did not fetch: the CLI logged in or refreshed. The episode is over.
            self._end_failure_episode()
            self._not_before = None
        until = (
            datetime.fromtimestamp(creds.expires_at_ms / 1000, UTC).isoformat(timespec="seconds")
            if creds.expires_at_ms is not None
            else "an unknown time"
        )
        log.info("new OAuth token %s, valid until %s", creds.access_token.masked, until)
        self._broadcast(TokenRefreshed(creds.access_token))
        self._publish(
            AuthAlert(status="refreshed", message=f"The OAuth token was refreshed; valid until {until}.")
        )

    # ------------------------------------------------------------ time

    def _expiring(self, expires_at_ms: int | None) -> bool:
        if expires_at_ms is None:
            return False
        return self._wall_ms() >= expires_at_ms - self._config.token_refresh_margin * 1000

    def _expired(self, expires_at_ms: int | None) -> bool:
        return expires_at_ms is not None and self._wall_ms() >= expires_at_ms

    def _arm_check(self) -> None:
        if self._timers is not None:
            self._timers.start("check", self._config.token_check_interval, _CheckDue())

    # ------------------------------------------------------------ out

    def _broadcast(self, message: TokenRefreshed | TokenRefreshFailed) -> None:
        for ref in list(self._subscribers):
            if not self._tell(ref, message):
                self._subscribers.remove(ref)

    def _publish(self, alert: AuthAlert) -> None:
        if self._bus is not None:
            self._bus.publish(alert)

    @staticmethod
    def _tell(ref: ActorRef, message: Any) -> bool:
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def _status(self) -> TokenStatus:
        source = "file" if self._path else ("env" if self._env_token else "none")
        token = self._current if self._path is not None else self._env_token
        now = self._clock.now()
        retry_in = self._not_before - now if self._not_before is not None and now < self._not_before else None
        return TokenStatus(
            source=source,
            masked_token=token.masked if token else None,
            expires_at_ms=self._expires_at_ms,
            last_error=self._last_error,
            refreshing=self._flight is not None,
            retry_in=retry_in,
        )


def _refresh_worker(
    refresher: Refresher, path: Path, attempt: int, owner: ActorRef, secrets: tuple[Secret, ...]
) -> None:
    """The worker thread: one refresh, its outcome told back to the TokenActor."""
    done: _RefreshDone
    try:
        done = _RefreshDone(attempt, refresher.refresh(path))
    except RefreshError as exc:
        done = _RefreshDone(attempt, None, scrub(str(exc), secrets), exc.permanent)
    except CredentialsError as exc:
        done = _RefreshDone(attempt, None, scrub(str(exc), secrets))
    except Exception as exc:  # the seam: any failure of a refresher is a failed refresh
        done = _RefreshDone(
            attempt, None, scrub(f"token refresh error: {type(exc).__name__}: {exc}", secrets)
        )
    try:
        owner.tell(done)
    except pykka.ActorDeadError:
        log.debug("refresh attempt %d finished after the TokenActor stopped", attempt)
