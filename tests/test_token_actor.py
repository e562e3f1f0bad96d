"""The TokenActor against a real HTTP token endpoint on 127.0.0.1, with manual time.

Wall time (for ``expiresAt``) is derived from the same ``ManualClock`` that
drives the cooldowns and the periodic check, so no test sleeps.
"""

from __future__ import annotations

import json
import logging
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors.clock import ManualClock
from actors.config import BerthConfig
from actors.events import EventBus
from actors.messages import (
    EnsureFreshToken,
    GetTokenStatus,
    SubscribeTokens,
    TokenAnswer,
    TokenRefreshed,
    TokenRefreshFailed,
    TokenStatus,
)
from actors.timers import TimerService
from actors.token import TokenActor
from tests.oauth_server import OLD_ACCESS, OLD_REFRESH, OAuthServer, write_credentials
from tests.waiting import wait_until
from transport.protocol import AuthAlert

MINUTE_MS = 60_000


class Probe(pykka.ThreadingActor):
    """Records every message told to it (a stand-in for a session)."""

    def __init__(self, got: list[Any], lock: threading.Lock) -> None:
        super().__init__()
        self._got, self._lock = got, lock

    def on_receive(self, message: Any) -> None:
        with self._lock:
            self._got.append(message)


@dataclass
class Inbox:
    ref: Any
    lock: threading.Lock
    got: list[Any]

    def of(self, kind: type) -> list[Any]:
        with self.lock:
            return [m for m in self.got if isinstance(m, kind)]

    def answers(self) -> list[TokenAnswer]:
        return self.of(TokenAnswer)


@dataclass
class Rig:
    """One TokenActor with its timers, bus, credentials file and token endpoint."""

    tmp: Path
    server: OAuthServer
    clock: ManualClock = field(default_factory=ManualClock)
    alerts: list[Any] = field(default_factory=list)
    started: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.timers = TimerService(self.clock)
        self.bus = EventBus()
        self.bus.subscribe(self.alerts.append)
        self.claude_dir = self.tmp / ".claude"
        self.ref: Any = None

    def wall_ms(self) -> float:
        return self.clock.now() * 1000

    def credentials(self, expires_in_ms: float | None, **kw: Any) -> Path:
        expires = None if expires_in_ms is None else self.wall_ms() + expires_in_ms
        return write_credentials(self.claude_dir, expires_at_ms=expires, **kw)

    def start(self, environ: dict[str, str] | None = None, **overrides: Any) -> Any:
        settings: dict[str, Any] = {
            "state_dir": self.tmp / "state",
            "claude_dir": self.claude_dir,
            "token_endpoint": self.server.url,
            "token_http_timeout": 5.0,
            **overrides,
        }
        config = BerthConfig(**settings)
        self.ref = TokenActor.start(
            config, environ=environ or {}, timers=self.timers, bus=self.bus, wall_ms=self.wall_ms
        )
        self.started.append(self.ref)
        return self.ref

    def probe(self, subscribe: bool = False) -> Inbox:
        got: list[Any] = []
        lock = threading.Lock()
        ref = Probe.start(got, lock)
        self.started.append(ref)
        if subscribe:
            self.ref.tell(SubscribeTokens(ref))
        return Inbox(ref, lock, got)

    def ensure(self, inbox: Inbox) -> TokenAnswer:
        """Ask for a fresh token as a session does, and wait for the answer."""
        before = len(inbox.answers())
        self.ref.tell(EnsureFreshToken(inbox.ref))
        wait_until(lambda: len(inbox.answers()) > before, what="a TokenAnswer")
        return inbox.answers()[before]

    def status(self) -> TokenStatus:
        status: TokenStatus = self.ref.ask(GetTokenStatus(), timeout=5)
        return status

    def settled(self) -> TokenStatus:
        """The status once no refresh is in flight."""

        def idle() -> TokenStatus | None:
            status = self.status()
            return None if status.refreshing else status

        status = wait_until(idle, what="no refresh in flight")
        assert status is not None
        return status

    def fresh_token(self) -> TokenAnswer:
        """Ask until the answer carries a token (a refresh may be running or about to)."""

        def ask() -> TokenAnswer | None:
            answer = self.ensure(self.probe())
            return answer if answer.token is not None else None

        answer = wait_until(ask, what="a fresh token")
        assert answer is not None
        return answer

    def file(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.claude_dir / ".credentials.json").read_text())
        return data

    def alerts_of(self, status: str) -> list[AuthAlert]:
        return [a for a in self.alerts if isinstance(a, AuthAlert) and a.status == status]


@pytest.fixture
def server() -> Iterator[OAuthServer]:
    with OAuthServer() as srv:
        yield srv


@pytest.fixture
def rig(tmp_path: Path, server: OAuthServer) -> Iterator[Rig]:
    baseline = set(threading.enumerate())
    rig = Rig(tmp_path, server)
    yield rig
    for ref in reversed(rig.started):
        ref.stop(block=True, timeout=30)
    assert rig.timers.pending() == 0, "timers still armed after the TokenActor stopped"
    rig.timers.stop()
    server.close()
    assert pykka.ActorRegistry.get_all() == [], "actors left running"
    wait_until(
        lambda: not [t for t in threading.enumerate() if t not in baseline and t.is_alive()],
        what="threads to end",
    )


# ---------------------------------------------------------------- when to refresh


def test_a_token_far_from_expiry_is_answered_without_a_refresh(rig: Rig, server: OAuthServer) -> None:
    rig.credentials(expires_in_ms=60 * MINUTE_MS)
    rig.start()
    answer = rig.ensure(rig.probe())
    assert answer.token is not None and answer.token.reveal() == OLD_ACCESS
    assert server.count == 0


def test_a_token_without_a_known_expiry_is_never_refreshed(rig: Rig, server: OAuthServer) -> None:
    rig.credentials(expires_in_ms=None)
    rig.start(token_check_interval=10)
    inbox = rig.probe()
    assert rig.ensure(inbox).token.reveal() == OLD_ACCESS
    rig.clock.advance(3600)
    assert rig.ensure(inbox).token.reveal() == OLD_ACCESS
    assert server.count == 0


def test_a_token_expiring_within_the_margin_is_refreshed_before_it_is_handed_out(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=4 * MINUTE_MS)  # within the default 5 min margin
    rig.start()
    answer = rig.ensure(rig.probe())
    assert server.count == 1
    assert answer.token.reveal() == server.issued[0][0]


def test_the_environment_token_is_used_without_a_claude_dir_and_never_refreshed(
    rig: Rig, server: OAuthServer
) -> None:
    rig.start(environ={"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-from-the-environment-0000"}, claude_dir=None)
    answer = rig.ensure(rig.probe())
    assert answer.token.reveal() == "sk-ant-oat01-from-the-environment-0000"
    rig.clock.advance(3600)
    assert rig.status().source == "env"
    assert server.count == 0
    assert rig.timers.pending() == 0  # nothing to check periodically


def test_no_claude_dir_and_no_environment_token_answers_no_token_with_the_fix(rig: Rig) -> None:
    rig.start(claude_dir=None)
    answer = rig.ensure(rig.probe())
    assert answer.token is None and "CLAUDE_CODE_OAUTH_TOKEN" in (answer.reason or "")


def test_a_missing_credentials_file_answers_no_token_with_the_login_hint(
    rig: Rig, server: OAuthServer
) -> None:
    rig.start()
    answer = rig.ensure(rig.probe())
    assert answer.token is None
    assert "No Claude credentials" in (answer.reason or "") and "log in" in (answer.reason or "")
    assert rig.status().last_error == answer.reason
    assert server.count == 0


# ---------------------------------------------------------------- single flight


def test_concurrent_requests_share_one_refresh_and_all_get_the_new_token(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=-MINUTE_MS)  # already expired
    release = server.hold()
    rig.start()
    server.wait_for_requests(1)  # the start-up check is already refreshing
    inboxes = [rig.probe() for _ in range(8)]
    go = threading.Barrier(len(inboxes))

    def ask(inbox: Inbox) -> None:
        go.wait(timeout=5)
        rig.ref.tell(EnsureFreshToken(inbox.ref))

    askers = [threading.Thread(target=ask, args=(inbox,)) for inbox in inboxes]
    for t in askers:
        t.start()
    for t in askers:
        t.join(timeout=5)
    wait_until(lambda: rig.status().refreshing, what="the refresh to be in flight")
    assert all(not inbox.answers() for inbox in inboxes)  # all queued behind the one refresh
    release.set()
    for inbox in inboxes:
        wait_until(inbox.answers, what="every requester to be answered")
    assert server.count == 1
    new_access = server.issued[0][0]
    assert [inbox.answers()[0].token.reveal() for inbox in inboxes] == [new_access] * len(inboxes)


def test_requests_that_arrive_during_a_request_triggered_refresh_join_it(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=60 * MINUTE_MS)
    rig.start()
    rig.credentials(expires_in_ms=-1)  # the token expires after the start-up check
    release = server.hold()
    first, second = rig.probe(), rig.probe()
    rig.ref.tell(EnsureFreshToken(first.ref))
    server.wait_for_requests(1)
    rig.ref.tell(EnsureFreshToken(second.ref))
    release.set()
    wait_until(lambda: first.answers() and second.answers(), what="both answers")
    assert first.answers()[0].token == second.answers()[0].token
    assert first.answers()[0].token.reveal() == server.issued[0][0]
    assert server.count == 1


def test_a_status_ask_and_a_subscription_are_served_while_the_refresh_request_is_held(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=-MINUTE_MS)
    release = server.hold()
    rig.start()
    server.wait_for_requests(1)
    status = rig.status()  # answered while the endpoint holds the request
    assert status.refreshing and status.source == "file"
    subscriber = rig.probe(subscribe=True)
    waiting = rig.probe()
    rig.ref.tell(EnsureFreshToken(waiting.ref))
    assert rig.status().refreshing
    release.set()
    wait_until(lambda: subscriber.of(TokenRefreshed), what="the broadcast to the new subscriber")
    wait_until(waiting.answers, what="the queued request to be answered")
    assert waiting.answers()[0].token.reveal() == server.issued[0][0]


def test_a_request_for_a_token_that_is_fresh_again_is_answered_while_a_refresh_is_held(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=-MINUTE_MS)
    release = server.hold()
    rig.start()
    server.wait_for_requests(1)
    # meanwhile the Claude CLI refreshes on its own: the file holds a fresh token
    rig.credentials(expires_in_ms=60 * MINUTE_MS, access="sk-ant-oat01-fresh-from-the-cli-0000")
    answer = rig.ensure(rig.probe())
    assert answer.token.reveal() == "sk-ant-oat01-fresh-from-the-cli-0000"
    assert rig.status().refreshing  # the held request is still in flight
    release.set()
    rig.settled()


# ---------------------------------------------------------------- the request and the write-back


def test_the_refresh_request_is_a_form_post_with_grant_type_refresh_token_and_the_client_id(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=-1)
    rig.start()
    server.wait_for_requests(1)
    request = server.requests[0]
    assert request.path == "/v1/oauth/token"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "grant_type": "refresh_token",
        "refresh_token": OLD_REFRESH,
        "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    }


def test_a_refresh_writes_back_the_new_tokens_and_expiry_keeping_every_other_field_with_mode_0600(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=-1, mcpOAuth={"some-server": {"token": "kept"}})
    rig.start()
    rig.settled()
    access, refresh = server.issued[0]
    data = rig.file()
    oauth = data["claudeAiOauth"]
    assert oauth["accessToken"] == access
    assert oauth["refreshToken"] == refresh  # rotated
    assert oauth["expiresAt"] == int(rig.wall_ms() + 3600 * 1000)
    assert oauth["scopes"] == ["user:inference", "user:profile"] and oauth["subscriptionType"] == "max"
    assert data["mcpOAuth"] == {"some-server": {"token": "kept"}}
    mode = stat.S_IMODE((rig.claude_dir / ".credentials.json").stat().st_mode)
    assert mode == 0o600
    assert [p.name for p in rig.claude_dir.iterdir()] == [".credentials.json"]  # no temp file left


def test_the_next_refresh_uses_the_rotated_refresh_token(rig: Rig, server: OAuthServer) -> None:
    rig.credentials(expires_in_ms=-1)
    rig.start(token_refresh_cooldown=30)
    rig.settled()
    rig.clock.advance(3600)  # the new token now expires too
    rig.ensure(rig.probe())
    assert [r.form["refresh_token"] for r in server.requests] == [OLD_REFRESH, server.issued[0][1]]


# ---------------------------------------------------------------- failures and the cooldown


def test_during_the_cooldown_after_a_failure_an_expired_token_gets_no_token_at_once_with_the_reason(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=-1)
    server.fail_next(1, status=503)
    rig.start(token_refresh_cooldown=30)
    failed = rig.settled()
    assert failed.last_error and "HTTP 503" in failed.last_error
    inbox = rig.probe()
    for _ in range(3):
        answer = rig.ensure(inbox)
        assert answer.token is None
        assert "HTTP 503" in (answer.reason or "") and "no new refresh attempt" in (answer.reason or "")
    rig.clock.advance(29)
    assert rig.ensure(inbox).token is None
    assert server.count == 1
    status = rig.status()
    assert "HTTP 503" in (status.last_error or "") and status.retry_in == pytest.approx(1)


def test_after_the_cooldown_a_request_refreshes_again(rig: Rig, server: OAuthServer) -> None:
    rig.credentials(expires_in_ms=-1)
    server.fail_next(1, status=500)
    rig.start(token_refresh_cooldown=30, token_check_interval=3600)
    rig.settled()
    rig.clock.advance(31)  # (the one automatic retry also runs now; either way one new request)
    answer = rig.fresh_token()
    assert answer.token.reveal() == server.issued[0][0]
    assert server.count == 2


def test_during_the_cooldown_a_token_that_has_not_expired_yet_is_still_handed_out(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=2 * MINUTE_MS)  # inside the margin, still valid
    server.fail_next(1, status=500)
    rig.start(token_refresh_cooldown=30)
    rig.settled()
    answer = rig.ensure(rig.probe())
    assert answer.token is not None and answer.token.reveal() == OLD_ACCESS
    assert "HTTP 500" in (answer.reason or "")
    assert server.count == 1


def test_repeated_failures_are_broadcast_once_and_a_success_ends_the_episode(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=-1)
    server.fail_status = 500
    rig.start(token_refresh_cooldown=30, token_check_interval=3600)
    subscriber = rig.probe(subscribe=True)
    inbox = rig.probe()
    rig.settled()
    for n in range(2, 6):
        rig.clock.advance(31)
        rig.ensure(inbox)
        server.wait_for_requests(n)
        rig.settled()
    assert server.count >= 5
    assert len(subscriber.of(TokenRefreshFailed)) <= 1 and len(rig.alerts_of("refresh_failed")) == 1
    alert = rig.alerts_of("refresh_failed")[0]
    assert "HTTP 500" in alert.message and "Claude CLI" in alert.message
    server.fail_status = None
    rig.clock.advance(31)
    assert rig.ensure(inbox).token.reveal() == server.issued[0][0]
    wait_until(lambda: subscriber.of(TokenRefreshed), what="the refresh broadcast")
    assert len(rig.alerts_of("refreshed")) == 1
    assert rig.status().last_error is None
    # a later failure is a new episode: broadcast again, once
    server.fail_status = 502
    rig.clock.advance(3600)
    rig.ensure(inbox)
    rig.clock.advance(31)
    rig.ensure(inbox)
    wait_until(lambda: len(rig.alerts_of("refresh_failed")) == 2, what="the second episode's alert")
    rig.settled()
    assert len(rig.alerts_of("refresh_failed")) == 2


def test_the_failure_broadcast_reaches_subscribers_once(rig: Rig, server: OAuthServer) -> None:
    rig.credentials(expires_in_ms=60 * MINUTE_MS)
    rig.start(token_refresh_cooldown=30, token_check_interval=3600)
    subscriber = rig.probe(subscribe=True)
    rig.credentials(expires_in_ms=-1)
    server.fail_status = 500
    inbox = rig.probe()
    for _ in range(3):
        rig.ensure(inbox)
        rig.settled()
        rig.clock.advance(31)
    wait_until(lambda: server.count >= 3, what="three attempts")
    rig.settled()
    failures = subscriber.of(TokenRefreshFailed)
    assert len(failures) == 1 and "HTTP 500" in failures[0].reason


def test_a_rejected_refresh_token_is_not_tried_again_until_the_cli_writes_a_new_one(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=-1)
    server.fail_next(
        1, status=400, body=json.dumps({"error": "invalid_grant", "error_description": "revoked"})
    )
    rig.start(token_refresh_cooldown=30, token_check_interval=60)
    rig.settled()
    assert rig.timers.pending() == 1  # only the periodic check: no retry of a rejected token
    rig.clock.advance(120)
    answer = rig.ensure(rig.probe())
    assert answer.token is None and "invalid_grant" in (answer.reason or "")
    assert "Re-authenticate with the Claude CLI" in (answer.reason or "")
    assert server.count == 1
    # the user logs in again: a new refresh token in the file is tried
    rig.credentials(expires_in_ms=-1, refresh="sk-ant-ort01-after-a-new-login-000000")
    answer = rig.ensure(rig.probe())
    assert answer.token.reveal() == server.issued[0][0]
    assert server.requests[-1].form["refresh_token"] == "sk-ant-ort01-after-a-new-login-000000"


def test_a_file_without_a_refresh_token_fails_once_and_asks_the_user_to_re_authenticate(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=-1, refresh=None)
    rig.start(token_refresh_cooldown=30)
    subscriber = rig.probe(subscribe=True)
    for _ in range(3):
        answer = rig.ensure(rig.probe())
        assert answer.token is None and "no refresh token" in (answer.reason or "")
        rig.clock.advance(31)
    assert server.count == 0
    assert len(rig.alerts_of("refresh_failed")) == 1
    assert "Re-authenticate with the Claude CLI" in rig.alerts_of("refresh_failed")[0].message
    assert not subscriber.of(TokenRefreshed)


def test_a_token_the_cli_writes_to_the_file_is_broadcast_and_ends_a_failure_episode(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=-1)
    server.fail_status = 500
    rig.start(token_refresh_cooldown=30)
    subscriber = rig.probe(subscribe=True)
    rig.settled()
    rig.credentials(expires_in_ms=60 * MINUTE_MS, access="sk-ant-oat01-written-by-the-cli-0000")
    answer = rig.ensure(rig.probe())  # no cooldown wait: the file holds a fresh token
    assert answer.token.reveal() == "sk-ant-oat01-written-by-the-cli-0000"
    wait_until(lambda: subscriber.of(TokenRefreshed), what="the broadcast of the CLI's token")
    assert subscriber.of(TokenRefreshed)[0].token.reveal() == "sk-ant-oat01-written-by-the-cli-0000"
    assert rig.status().last_error is None and rig.status().retry_in is None
    assert server.count == 1


# ---------------------------------------------------------------- proactive refresh


def test_the_periodic_check_refreshes_ahead_of_expiry_without_any_request(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=7 * MINUTE_MS)
    rig.start(token_check_interval=60, token_refresh_margin=300)
    subscriber = rig.probe(subscribe=True)
    assert server.count == 0
    rig.clock.advance(60)  # 6 min left: not yet
    rig.clock.advance(60)  # 5 min left: inside the margin
    second_check_ms = rig.wall_ms()
    wait_until(lambda: subscriber.of(TokenRefreshed), what="a proactive refresh")
    assert server.count == 1
    assert subscriber.of(TokenRefreshed)[0].token.reveal() == server.issued[0][0]
    # the refresh ran at the second check, not the first
    assert rig.file()["claudeAiOauth"]["expiresAt"] == int(second_check_ms + 3600 * 1000)
    assert rig.alerts_of("refreshed")


def test_a_failed_proactive_refresh_is_retried_once_after_the_cooldown(rig: Rig, server: OAuthServer) -> None:
    rig.credentials(expires_in_ms=-1)
    server.fail_next(2, status=500)
    rig.start(token_refresh_cooldown=30, token_check_interval=3600)
    rig.settled()
    assert server.count == 1
    rig.clock.advance(29)
    assert rig.settled() and server.count == 1
    rig.clock.advance(1)  # the cooldown ends: the one retry
    server.wait_for_requests(2)
    rig.settled()
    assert rig.timers.pending() == 1  # the periodic check only: the retry is not retried
    rig.clock.advance(300)
    assert rig.settled() and server.count == 2
    rig.clock.advance(3600 - 330)  # the periodic check: now it succeeds
    server.wait_for_requests(3)
    assert rig.settled().last_error is None
    assert rig.file()["claudeAiOauth"]["accessToken"] == server.issued[0][0]


def test_a_successful_retry_ends_the_failure_and_is_broadcast(rig: Rig, server: OAuthServer) -> None:
    rig.credentials(expires_in_ms=-1)
    server.fail_next(1, status=500)
    rig.start(token_refresh_cooldown=30, token_check_interval=3600)
    subscriber = rig.probe(subscribe=True)
    rig.settled()
    rig.clock.advance(30)
    wait_until(lambda: subscriber.of(TokenRefreshed), what="the retry's broadcast")
    assert server.count == 2
    assert rig.status().last_error is None


# ---------------------------------------------------------------- secrets and shutdown


def test_no_token_string_appears_in_logs_or_in_reprs(
    rig: Rig, server: OAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rig.credentials(expires_in_ms=-1)
    echo = json.dumps({"error": "server_error", "error_description": f"bad token {OLD_REFRESH}"})
    server.fail_next(1, status=500, body=echo)
    rig.start(token_refresh_cooldown=30)
    subscriber = rig.probe(subscribe=True)
    inbox = rig.probe()
    failed = rig.ensure(inbox)
    rig.clock.advance(31)
    fresh = rig.fresh_token()
    wait_until(lambda: subscriber.of(TokenRefreshed), what="the broadcast")
    access, refresh = server.issued[0]
    assert refresh is not None
    shown = "\n".join(
        [
            caplog.text,
            repr(failed),
            repr(fresh),
            str(fresh),
            repr(rig.status()),
            repr(subscriber.got),
            repr(rig.alerts),
            repr(failed.reason),
        ]
    )
    for secret in (OLD_ACCESS, OLD_REFRESH, access, refresh):
        assert secret not in shown
    assert "bad token" in (failed.reason or "")  # the description is kept, the token masked
    assert "refreshed" in caplog.text


def test_stopping_during_a_refresh_keeps_the_rotated_token_and_answers_the_waiters(
    rig: Rig, server: OAuthServer
) -> None:
    rig.credentials(expires_in_ms=-1)
    release = server.hold()
    rig.start()
    server.wait_for_requests(1)
    waiting = rig.probe()
    rig.ref.tell(EnsureFreshToken(waiting.ref))
    wait_until(lambda: rig.status().refreshing, what="the refresh in flight")
    stopper = threading.Thread(target=rig.ref.stop, kwargs={"block": True, "timeout": 30})
    stopper.start()
    wait_until(lambda: waiting.answers(), what="the waiter to be told")
    assert waiting.answers()[0].token is None and "stopped" in (waiting.answers()[0].reason or "")
    release.set()
    stopper.join(timeout=10)
    assert not stopper.is_alive()
    assert rig.file()["claudeAiOauth"]["refreshToken"] == server.issued[0][1]
    assert not [t for t in threading.enumerate() if t.name.startswith("berth-token-refresh")]
