"""Tokens through the whole tree: sessions, the TokenActor and a real token endpoint.

The "#129 scenario" of the system Berth replaces: several sessions created at
once while the OAuth token has expired, with the token endpoint slow or
failing at first. Every agent must end up with a valid token, either in its
container's ``oauth-token`` secret file at start or pushed as ``token_update``
when it registers or when the token is refreshed.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from actors.api import Berth
from actors.clock import ManualClock
from tests.agent_double import attach, say
from tests.fake_link import FakeLink
from tests.oauth_server import OAuthServer, now_ms, write_credentials
from tests.stub_runtime import StubRuntime
from tests.waiting import wait_until
from transport import protocol as p

SESSIONS = 4
T = TypeVar("T")
R = TypeVar("R")


@pytest.fixture
def server() -> Iterator[OAuthServer]:
    with OAuthServer() as srv:
        yield srv


def start_tree(tree: Any, tmp_path: Path, server: OAuthServer, **overrides: Any) -> tuple[Berth, StubRuntime]:
    runtime = StubRuntime()
    settings: dict[str, Any] = {
        "claude_dir": tmp_path / ".claude",
        "claude_dir_root": tmp_path,
        "token_endpoint": server.url,
        "token_http_timeout": 5.0,
        "agent_runner": "sdk",
        **overrides,
    }
    return tree(runtime=runtime, environ={}, **settings), runtime


def create_at_once(berth: Berth, n: int, managed_by: str | None = None) -> list[str]:
    ids: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(n)

    def create(i: int) -> None:
        go.wait(timeout=5)
        sid = berth.create_session(name=f"s{i}", managed_by=managed_by)
        with lock:
            ids.append(sid)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(ids) == n
    return ids


def history(berth: Berth, sid: str) -> str:
    return "\n".join(m.content for m in berth.get_session(sid).history)


def tokens_pushed(link: FakeLink) -> list[str]:
    return [f.token for f in link.frames(p.TokenUpdate) if isinstance(f, p.TokenUpdate)]


def each(items: Iterable[T], check: Callable[[T], R], what: str) -> list[R]:
    """Wait until ``check(item)`` is true for every item; their values, in order."""
    return [wait_until(functools.partial(check, item), what=what) for item in items]


def test_129_sessions_created_while_the_token_is_expired_and_the_endpoint_is_slow_start_with_the_new_token(
    tree: Any, tmp_path: Path, server: OAuthServer
) -> None:
    write_credentials(tmp_path / ".claude", expires_at_ms=now_ms() - 60_000)
    release = server.hold()
    berth, runtime = start_tree(tree, tmp_path, server)
    server.wait_for_requests(1)  # the TokenActor noticed the expired token at start
    sids = create_at_once(berth, SESSIONS)
    assert all(runtime.by_session(sid) is None for sid in sids)  # nobody starts without a token
    assert berth.token_status().refreshing
    release.set()
    containers = each(sids, runtime.by_session, "every container")
    new_access = server.issued[0][0]
    assert [c.secrets_seen.get("oauth-token") for c in containers] == [new_access] * SESSIONS
    assert server.count == 1
    links = [attach(berth, sid) for sid in sids]
    each(links, tokens_pushed, "token_update on registration")
    assert all(set(tokens_pushed(link)) == {new_access} for link in links)


@pytest.mark.parametrize("managed", [False, True], ids=["sessions", "ten-managed-children"])
def test_129_sessions_created_while_the_endpoint_fails_at_first_all_end_up_with_a_valid_token(
    tree: Any, tmp_path: Path, server: OAuthServer, managed: bool
) -> None:
    write_credentials(tmp_path / ".claude", expires_at_ms=now_ms() - 60_000)
    server.fail_next(1, status=503)
    release = server.hold()
    clock = ManualClock()
    berth, runtime = start_tree(
        tree, tmp_path, server, clock=clock, token_retry_delay=5, token_refresh_cooldown=30
    )
    alerts: list[Any] = []
    berth.bus.subscribe(alerts.append)
    # Managed children (issue 11) get their token exactly as any session does.
    manager = berth.create_manager(name="boss") if managed else None
    count = 10 if managed else SESSIONS
    sids = create_at_once(berth, count, manager)  # they queue behind the held request, which then fails
    assert all(berth.get_session(sid).info.managed_by == manager for sid in sids)
    release.set()
    # no token: each session waits for its one retry
    each(sids, lambda sid: "retrying in 5 s" in history(berth, sid), "the retry note")
    assert "HTTP 503" in (berth.token_status().last_error or "")
    clock.advance(5)  # the retries: still in the cooldown, so the containers start without a token
    containers = each(sids, runtime.by_session, "every container")
    assert all("oauth-token" not in c.secrets_seen for c in containers)
    assert server.count == 1
    early = [attach(berth, sid) for sid in sids[:2]]  # two agents register before the refresh works
    clock.advance(25)  # the cooldown ends: the TokenActor retries on its own, and succeeds
    server.wait_for_requests(2)
    new_access = wait_until(lambda: server.issued, what="the new token")[0][0]
    each(early, lambda link: new_access in tokens_pushed(link), "token_update on refresh")
    late = [attach(berth, sid) for sid in sids[2:]]
    each(late, lambda link: new_access in tokens_pushed(link), "token_update on registration")
    for link in early + late:
        assert set(tokens_pushed(link)) == {new_access}  # never the expired token
    assert server.count == 2
    assert [a.status for a in alerts if isinstance(a, p.AuthAlert)] == ["refresh_failed", "refreshed"]
    assert berth.token_status().last_error is None


def test_a_proactive_refresh_is_pushed_to_every_live_session_with_a_connected_agent(
    tree: Any, tmp_path: Path, server: OAuthServer
) -> None:
    claude = tmp_path / ".claude"
    write_credentials(
        claude, access="sk-ant-oat01-valid-for-an-hour-0000", expires_at_ms=now_ms() + 3_600_000
    )
    clock = ManualClock()
    berth, runtime = start_tree(tree, tmp_path, server, clock=clock, token_check_interval=60)
    alerts: list[Any] = []
    berth.bus.subscribe(alerts.append)
    sids = create_at_once(berth, 3)
    for container in each(sids, runtime.by_session, "every container"):
        assert container.secrets_seen["oauth-token"] == "sk-ant-oat01-valid-for-an-hour-0000"
    links = {sid: attach(berth, sid) for sid in sids}
    each(links.values(), tokens_pushed, "the token on registration")
    for sid, link in links.items():
        say(berth, sid, link, p.Ready())
    each(sids, lambda sid: berth.get_session(sid).info.status == "idle", "idle")
    berth.terminate_session(sids[2])
    wait_until(lambda: berth.get_session(sids[2]).info.status == "terminated", what="terminated")
    # time passes: the token now expires within the margin
    write_credentials(claude, access="sk-ant-oat01-valid-for-an-hour-0000", expires_at_ms=now_ms() + 120_000)
    assert server.count == 0
    clock.advance(60)  # the periodic check
    server.wait_for_requests(1)
    new_access = wait_until(lambda: server.issued, what="the new token")[0][0]
    each(sids[:2], lambda sid: new_access in tokens_pushed(links[sid]), "token_update to live sessions")
    wait_until(lambda: [a for a in alerts if isinstance(a, p.AuthAlert)], what="the auth alert")
    assert [a.status for a in alerts if isinstance(a, p.AuthAlert)] == ["refreshed"]
    assert new_access not in tokens_pushed(links[sids[2]])  # a terminated session gets nothing


def test_a_refresh_failure_is_published_once_on_the_event_bus_asking_to_re_authenticate(
    tree: Any, tmp_path: Path, server: OAuthServer
) -> None:
    write_credentials(tmp_path / ".claude", expires_at_ms=now_ms() - 60_000)
    server.fail_status = 500
    release = server.hold()
    clock = ManualClock()
    berth, _ = start_tree(tree, tmp_path, server, clock=clock, token_refresh_cooldown=30)
    alerts: list[Any] = []
    berth.bus.subscribe(alerts.append)
    release.set()
    wait_until(lambda: berth.token_status().last_error, what="the first failure")
    for n in range(2, 5):
        clock.advance(31)
        berth.create_session(name=f"s{n}")  # each asks for a token again
        server.wait_for_requests(n)
        wait_until(lambda: not berth.token_status().refreshing, what="the attempt to end")
    failed = [a for a in alerts if isinstance(a, p.AuthAlert)]
    assert [a.status for a in failed] == ["refresh_failed"]
    assert "HTTP 500" in failed[0].message
    assert "re-authenticate with the claude cli" in failed[0].message.lower()
    server.fail_status = None
    clock.advance(31)
    berth.create_session(name="after")
    wait_until(
        lambda: len([a for a in alerts if isinstance(a, p.AuthAlert)]) == 2, what="the refreshed alert"
    )
    assert [a.status for a in alerts if isinstance(a, p.AuthAlert)] == ["refresh_failed", "refreshed"]
