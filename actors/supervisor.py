"""The SupervisorActor: root of the tree and owner of the session registry.

It spawns the TokenActor and the ContainerActor at start (and asks the latter
to sweep orphaned containers of this instance), creates one SessionActor per
session within the session limit, and routes terminate, delete and eviction.
A SessionActor that crashes reports its final view here: the session stays
visible in ``error`` with the reason in its history until it is evicted, its
container is removed, and every other session keeps running.

On stop it stops every session, then the ContainerActor (which removes every
container it still tracks and waits for that), then the TokenActor.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pykka

from actors.config import BerthConfig
from actors.container import ContainerActor
from actors.directory import Directory, SessionBoard
from actors.events import EventBus
from actors.messages import (
    CreateSession,
    Delete,
    DeleteSession,
    GetChildren,
    ReapOrphans,
    RemoveContainer,
    SessionChanged,
    SessionCrashed,
    SessionEntry,
    SessionEvicted,
    SessionsCounted,
    SessionSpec,
    SessionView,
    ShutdownTree,
    Terminate,
    TerminateSession,
)
from actors.outcome import Rejected
from actors.pool import PoolActor
from actors.runtime import ContainerRuntime
from actors.secret import Secret
from actors.session import SessionActor, SessionDeps
from actors.timers import ActorTimers, TimerFired, TimerService
from actors.token import Refresher, TokenActor
from transport.protocol import PERMISSION_MODES, SessionInfo, SessionStatus

log = logging.getLogger(__name__)

_BRANCH = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]{0,199}$")
_REPO = re.compile(r"^(https://|ssh://|git@)[\w.@:/~+-]+$")


@dataclass
class _Entry:
    info: SessionInfo
    agent_token: Secret
    ref: Any | None
    final_view: SessionView | None = None


@dataclass(frozen=True)
class _EvictTombstone:
    session_id: str


class SupervisorActor(pykka.ThreadingActor):
    def __init__(
        self,
        config: BerthConfig,
        timers: TimerService,
        runtime: ContainerRuntime,
        bus: EventBus,
        directory: Directory,
        pool_directory: Directory,
        board: SessionBoard,
        refresher: Refresher | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._timer_service = timers
        self._runtime = runtime
        self._bus = bus
        self._directory = directory
        self._pool_directory = pool_directory
        self._board = board
        self._pool: Any | None = None
        self._live_count = 0
        self._refresher = refresher
        self._environ = environ
        self._sessions: dict[str, _Entry] = {}

    def on_start(self) -> None:
        self._timers = ActorTimers(self._timer_service, self.actor_ref)
        self._token = TokenActor.start(
            self._config, self._refresher, self._environ, timers=self._timer_service, bus=self._bus
        )
        self._container = ContainerActor.start(self._config, self._runtime)
        self._container.tell(ReapOrphans(keep=frozenset()))
        if self._config.warm_pool_size > 0:
            self._pool = PoolActor.start(
                self._config, self._timer_service, self._container, self._pool_directory
            )
        self._deps = SessionDeps(
            config=self._config,
            timers=self._timer_service,
            supervisor=self.actor_ref,
            token=self._token,
            container=self._container,
            bus=self._bus,
            board=self._board,
            pool=self._pool,
        )

    def on_stop(self) -> None:
        self._timers.cancel_all()
        for entry in self._sessions.values():
            if entry.ref is not None:
                entry.ref.stop(block=True, timeout=30)
        if self._pool is not None:
            self._pool.stop(block=True, timeout=30)
        self._container.stop(block=True, timeout=120)
        self._token.stop(block=True, timeout=30)

    def on_receive(self, message: Any) -> Any:
        result = self._dispatch(message)
        if isinstance(message, _CHANGES_WHO_EXISTS):
            self._publish_directory()
        if self._pool is not None:
            live = sum(1 for e in self._sessions.values() if not e.info.status.is_final)
            if live != self._live_count:
                self._live_count = live
                self._pool.tell(SessionsCounted(live))
        return result

    def _publish_directory(self) -> None:
        self._directory.publish(
            {sid: SessionEntry(sid, e.ref, e.agent_token, e.final_view) for sid, e in self._sessions.items()}
        )

    def _dispatch(self, message: Any) -> Any:
        match message:
            case CreateSession(spec=spec):
                return self._create(spec)
            case TerminateSession(session_id=sid, reason=reason):
                return self._tell_session(sid, Terminate(reason))
            case DeleteSession(session_id=sid):
                return self._delete(sid)
            case SessionChanged(info=info):
                if info.id in self._sessions and self._sessions[info.id].ref is not None:
                    self._sessions[info.id].info = info
            case SessionEvicted(session_id=sid):
                self._sessions.pop(sid, None)
            case SessionCrashed():
                self._crashed(message)
            case TimerFired():
                fired = self._timers.accept(message)
                if isinstance(fired, _EvictTombstone):
                    self._sessions.pop(fired.session_id, None)
                    self._board.remove(fired.session_id)
            case GetChildren():
                return {"token": self._token, "container": self._container, "pool": self._pool}
            case ShutdownTree():
                for sid in list(self._sessions):
                    self._tell_session(sid, Terminate("Berth is shutting down"))
            case _:
                raise TypeError(f"SupervisorActor cannot handle {message!r}")
        return None

    def _create(self, spec: SessionSpec) -> str | Rejected:
        problem = _invalid(spec)
        if problem:
            return Rejected(problem, 400)
        limit = self._config.max_sessions
        live = sum(1 for e in self._sessions.values() if not e.info.status.is_final)
        if limit and live >= limit:
            return Rejected(
                f"Session limit reached ({live} of max {limit} live sessions): terminate or delete "
                "a session first, or raise max_sessions",
                429,
            )
        sid = uuid.uuid4().hex
        token = Secret(secrets.token_urlsafe(32))
        ref = SessionActor.start(sid, spec, token, self._deps)
        info = SessionInfo(id=sid, name=spec.name, status=SessionStatus.STARTING, created_at=time.time())
        self._sessions[sid] = _Entry(info=info, agent_token=token, ref=ref)
        return sid

    def _tell_session(self, sid: str, message: Any) -> Rejected | None:
        entry = self._sessions.get(sid)
        if entry is None:
            return Rejected(f"no session with id {sid!r}", 404)
        if entry.ref is not None:
            try:
                entry.ref.tell(message)
            except pykka.ActorDeadError:
                pass
        return None

    def _delete(self, sid: str) -> Rejected | None:
        entry = self._sessions.pop(sid, None)
        if entry is None:
            return Rejected(f"no session with id {sid!r}", 404)
        self._timers.cancel(f"evict:{sid}")
        if entry.ref is None:
            self._board.remove(sid)
            self._container.tell(RemoveContainer(sid))
            return None
        try:
            entry.ref.tell(Delete())
        except pykka.ActorDeadError:
            self._container.tell(RemoveContainer(sid))
        return None

    def _crashed(self, crash: SessionCrashed) -> None:
        entry = self._sessions.get(crash.session_id)
        if entry is None:
            return
        log.error("session %s crashed: %s", crash.session_id, crash.reason)
        entry.ref = None
        entry.final_view = crash.final_view
        entry.info = crash.final_view.info
        self._board.post(entry.info)
        self._container.tell(RemoveContainer(crash.session_id))
        self._timers.start(
            f"evict:{crash.session_id}", self._config.eviction_ttl, _EvictTombstone(crash.session_id)
        )


_CHANGES_WHO_EXISTS = (CreateSession, DeleteSession, SessionEvicted, SessionCrashed, TimerFired)


def _invalid(spec: SessionSpec) -> str | None:
    name = spec.name.strip()
    if not 1 <= len(name) <= 100 or not name.isprintable():
        return "name must be 1-100 printable characters"
    if spec.permission_mode not in PERMISSION_MODES:
        return f"unknown permission mode {spec.permission_mode!r}; use one of {', '.join(PERMISSION_MODES)}"
    if spec.repo_url is not None and not _REPO.match(spec.repo_url):
        return f"repo_url {spec.repo_url!r} is not an https://, ssh:// or git@ repository URL"
    if spec.branch is not None and not _BRANCH.match(spec.branch):
        return f"branch {spec.branch!r} contains invalid characters"
    return None
