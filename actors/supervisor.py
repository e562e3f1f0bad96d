"""The SupervisorActor: root of the tree, owner of the session registry.

It starts the TokenActor, the ContainerActor and (with a warm pool) the
PoolActor behind ``ChildSlot``s, creates one SessionActor per session within
the session limit, and routes terminate, delete and eviction. It is the only
writer of the registry (``Directory``), and publishes it before answering the
request that changed it.

Failure policy: a child that dies reports ``ChildFailed``; its slot holds
what is told to it, and the supervisor starts a replacement after a backoff
(``child_restart_delay`` doubling up to ``child_restart_max_delay``). While
the token or container service is down, creates fail at once with 503
naming it; existing sessions keep running. A SessionActor that crashes
reports its final view: the session stays visible in ``error`` until it is
evicted, and its container is removed.

On stop it stops every session concurrently, then the pool, the container
service (which removes its containers) and the token service, each with a
timeout, and ends with a safety net that stops any actor of the tree still
alive. If the supervisor itself fails, it does the same.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import pykka

from actors import manager_token
from actors import messages as m
from actors.child_slot import ChildSlot
from actors.config import AGENT_RUNNERS, BerthConfig
from actors.container import ContainerActor
from actors.directory import Directory
from actors.events import EventBus
from actors.outcome import Rejected
from actors.pool import PoolActor
from actors.recovery import recover
from actors.runtime import LABEL_APP, LABEL_INSTANCE, ContainerRuntime
from actors.secret import Secret
from actors.session import SessionActor, SessionDeps
from actors.settle import answer_probe
from actors.sqlite_store import SqliteStore
from actors.store import NullStore, SessionStore
from actors.timers import ActorTimers, TimerFired, TimerService
from actors.token import Refresher, TokenActor
from transport.protocol import PERMISSION_MODES, SessionInfo, SessionStatus

log = logging.getLogger(__name__)

_BRANCH = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]{0,199}$")
_REPO = re.compile(r"^(https://|ssh://|git@)[\w.@:/~+-]+$")

#: Services without which no session can start.
ESSENTIAL = ("token", "container")


@dataclass
class _Entry:
    agent_token: Secret
    cell: m.InfoCell
    ref: Any | None
    final_view: m.SessionView | None = None
    manager_token: Secret | None = None


@dataclass(frozen=True)
class _EvictTombstone:
    session_id: str


@dataclass(frozen=True)
class _RestartChild:
    kind: str


class SupervisorActor(pykka.ThreadingActor):
    def __init__(
        self,
        config: BerthConfig,
        timers: TimerService,
        runtime: ContainerRuntime,
        bus: EventBus,
        directory: Directory,
        pool_directory: Directory,
        refresher: Refresher | None = None,
        environ: dict[str, str] | None = None,
        *,
        store: SessionStore | None = None,
        executor: Callable[[int], Executor] | None = None,
        ids: Callable[[], str] | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._timer_service = timers
        self._runtime = runtime
        self._bus = bus
        self._directory = directory
        self._pool_directory = pool_directory
        self._refresher = refresher
        self._environ = environ
        self._store: SessionStore = store or NullStore()
        self._executor = executor
        self._ids = ids or (lambda: uuid.uuid4().hex)
        self._sessions: dict[str, _Entry] = {}
        self._slots = {kind: ChildSlot(kind) for kind in ("token", "container", "pool")}
        self._down: dict[str, str] = {}
        self._restarts: dict[str, int] = {}
        self._live_count = 0
        #: Sessions that reported their end and are still listed: live = all − these,
        #: kept as a set so a create costs the same at 10 sessions and at 10,000.
        self._ended: set[str] = set()
        #: Sessions whose registry entry must be rewritten before the next answer.
        self._dirty: set[str] = set()
        self.handled = 0

    # ------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        self._timers = ActorTimers(self._timer_service, self.actor_ref)
        self._deps = SessionDeps(
            config=self._config,
            timers=self._timer_service,
            supervisor=self.actor_ref,
            token=self._slots["token"],
            container=self._slots["container"],
            bus=self._bus,
            pool=self._slots["pool"] if self._config.warm_pool_size > 0 else None,
            store=self._store,
            directory=self._directory,
        )
        self._recover()
        self._start_child("token")
        self._start_child("container")
        if self._config.warm_pool_size > 0:
            self._start_child("pool")
        self._publish_directory()

    def _recover(self) -> None:
        """Issue 9: the stored sessions come back first (actors.recovery); their
        children's slots hold what they tell until the children are installed."""
        if not isinstance(self._store, SqliteStore):
            return
        for found in recover(self._store, self._config, self._timer_service.clock, self._runtime):
            sid, state = found.session_id, found.restored.state
            cell = m.InfoCell(state.info)
            scoped = self._recovered_manager_token(sid, state.spec.manager, state.final)
            ref = SessionActor.start(
                sid,
                state.spec,
                found.agent_token,
                cell,
                self._deps,
                manager_token=scoped,
                restored=found.restored,
            )
            self._sessions[sid] = _Entry(
                agent_token=found.agent_token, cell=cell, ref=ref, manager_token=scoped
            )
            if state.info.status.is_final:
                self._ended.add(sid)

    def _recovered_manager_token(self, sid: str, manager: bool, final: bool) -> Secret | None:
        """Issue 11: a live manager's token is issued anew and written over its file."""
        if not manager:
            return None
        if final:
            return manager_token.issue()  # refused anyway: it only marks the session as a manager
        try:
            return manager_token.reissue(self._config.secrets_root / sid)
        except OSError as exc:
            log.error("manager %s: its new manager token cannot be written (%s); its tools get 401", sid, exc)
            return manager_token.issue()

    def on_stop(self) -> None:
        self._timers.cancel_all()
        self._stop_all()

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        log.error(
            "the supervisor failed (%s: %s): stopping the whole tree",
            getattr(exc_type, "__name__", exc_type),
            exc,
        )
        self._timers.cancel_all()
        self._stop_all()

    def _stop_all(self) -> None:
        sessions = [e.ref for e in self._sessions.values() if e.ref is not None]
        _stop_together(sessions, timeout=30)
        if self._slots["container"].ref is None:
            self._sweep_without_container_service()
        for kind, timeout in (("pool", 30.0), ("container", 120.0), ("token", 30.0)):
            ref = self._slots[kind].ref
            self._slots[kind].down()
            if ref is not None:
                _stop_together([ref], timeout)
        # Safety net: whatever died or hung before, nothing of this tree lives on.
        for ref in [*sessions, *(s.ref for s in self._slots.values() if s.ref is not None)]:
            if ref.is_alive():
                log.warning("%s outlived its stop; stopping it again", ref)
                _stop_together([ref], timeout=5)

    def _sweep_without_container_service(self) -> None:
        """Stopping while the container service is down: remove this instance's
        containers directly, so that none outlives the tree."""
        self._slots["container"].drain()
        labels = {LABEL_APP: "berth", LABEL_INSTANCE: self._config.instance_id}
        try:
            for record in self._runtime.list(labels):
                self._runtime.remove(record.id, self._config.container_stop_timeout)
        except Exception as exc:
            log.error("could not remove this instance's containers at stop: %s", exc)
        shutil.rmtree(self._config.secrets_root, ignore_errors=True)

    # ------------------------------------------------------------ children

    def _start_child(self, kind: str) -> None:
        config, timers = self._config, self._timer_service
        first: tuple[Any, ...] = ()
        ref: pykka.ActorRef[Any]
        if kind == "token":
            ref = TokenActor.start(
                config,
                self._refresher,
                self._environ,
                timers=timers,
                bus=self._bus,
                supervisor=self.actor_ref,
            )
            first = tuple(m.SubscribeTokens(e.ref) for e in self._sessions.values() if e.ref is not None)
        elif kind == "container":
            ref = ContainerActor.start(
                config, self._runtime, supervisor=self.actor_ref, executor=self._executor, timers=timers
            )
            if kind in self._restarts or self._sessions:  # a restarted child, or recovered sessions
                owners = {sid: e.ref for sid, e in self._sessions.items() if e.ref is not None}
                first = (m.AdoptContainers(owners),)
            else:
                first = (m.ReapOrphans(keep=frozenset()),)
        else:
            ref = PoolActor.start(
                config, timers, self._slots["container"], self._pool_directory, supervisor=self.actor_ref
            )
        self._slots[kind].install(ref, first)
        if kind == "token" and kind in self._restarts:
            for entry in self._sessions.values():
                _tell_quietly(entry.ref, m.TokenServiceRestarted())

    def _child_failed(self, kind: str, reason: str) -> None:
        slot = self._slots.get(kind)
        if slot is None or kind in self._down:
            return
        slot.down()
        attempts = self._restarts.get(kind, 0)
        self._restarts[kind] = attempts + 1
        delay = min(self._config.child_restart_delay * 2**attempts, self._config.child_restart_max_delay)
        self._down[kind] = f"it failed: {reason}; restarting in {delay:g} s"
        log.error("the %s service failed (%s); restarting it in %g s", kind, reason, delay)
        self._timers.start(f"restart:{kind}", delay, _RestartChild(kind))

    def _restart(self, kind: str) -> None:
        self._down.pop(kind, None)
        self._start_child(kind)
        log.info("the %s service was restarted", kind)

    # ------------------------------------------------------------ dispatch

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, m.Probe):
            return answer_probe(self, self.handled)
        self.handled += 1
        result = self._dispatch(message)
        if self._dirty:
            self._sync_directory()
        self._count_live()
        return result

    def _dispatch(self, message: Any) -> Any:
        match message:
            case m.CreateSession(spec=spec):
                return self._create(spec)
            case m.TerminateSession(session_id=sid, reason=reason):
                return self._tell_session(sid, m.Terminate(reason))
            case m.DeleteSession(session_id=sid):
                return self._delete(sid)
            case m.ForwardToSession(session_id=sid, message=forwarded):
                _tell_quietly(self._sessions[sid].ref if sid in self._sessions else None, forwarded)
            case m.SessionChanged(info=info):
                if info.status.is_final and info.id in self._sessions:
                    self._ended.add(info.id)
            case m.SessionEvicted(session_id=sid):
                self._forget(sid)
            case m.SessionCrashed():
                self._crashed(message)
            case m.ChildFailed(kind=kind, reason=reason):
                self._child_failed(kind, reason)
            case TimerFired():
                fired = self._timers.accept(message)
                if isinstance(fired, _EvictTombstone):
                    self._forget(fired.session_id)
                elif isinstance(fired, _RestartChild):
                    self._restart(fired.kind)
            case m.LookupSession(session_id=sid):
                return self._directory.get(sid)  # this message comes after the create's publish
            case m.GetChildren():
                return {kind: slot.ref for kind, slot in self._slots.items()}
            case m.ShutdownTree():
                if self._config.stop_sessions_on_exit:  # else they wait for the next start
                    for sid in list(self._sessions):
                        self._tell_session(sid, m.Terminate("Berth is shutting down"))
            case _:
                raise TypeError(f"SupervisorActor cannot handle {message!r}")
        return None

    def _sync_directory(self) -> None:
        """Write the entries that changed (created, crashed, deleted, evicted)."""
        for sid in self._dirty:
            e = self._sessions.get(sid)
            if e is None:
                self._directory.drop(sid)
            else:
                self._directory.put(
                    m.SessionEntry(sid, e.ref, e.agent_token, e.final_view, e.cell, e.manager_token)
                )
        self._dirty.clear()

    def _publish_directory(self) -> None:
        self._directory.publish(
            {
                sid: m.SessionEntry(sid, e.ref, e.agent_token, e.final_view, e.cell, e.manager_token)
                for sid, e in self._sessions.items()
            }
        )

    def _live(self) -> int:
        return len(self._sessions) - len(self._ended)

    def _recount_live(self) -> int:
        """At the limit only: a session whose end is shown but not yet reported
        (its SessionChanged still queued) must not refuse the next create."""
        self._ended.update(sid for sid, e in self._sessions.items() if e.cell.info.status.is_final)
        return self._live()

    def _forget(self, sid: str) -> _Entry | None:
        self._ended.discard(sid)
        self._dirty.add(sid)
        return self._sessions.pop(sid, None)

    def _count_live(self) -> None:
        if self._slots["pool"].ref is None:
            return
        live = self._live()
        if live != self._live_count:
            self._live_count = live
            self._slots["pool"].tell(m.SessionsCounted(live))

    # ------------------------------------------------------------ sessions

    def _create(self, spec: m.SessionSpec) -> str | Rejected:
        problem = _invalid(spec, self._config)
        if problem:
            return Rejected(problem, 400)
        for kind in ESSENTIAL:
            if kind in self._down:
                return Rejected(
                    f"Cannot start a session now: Berth's {kind} service is down ({self._down[kind]}). "
                    "Retry in a few seconds.",
                    503,
                )
        limit = self._config.max_sessions
        live = self._live()
        if limit and live >= limit:
            live = self._recount_live()
        if limit and live >= limit:
            return Rejected(
                f"Session limit reached ({live} of max {limit} live sessions): terminate or delete "
                "a session first, or raise max_sessions",
                429,
            )
        manager_problem = self._manager_problem(spec)  # manager sessions (issue 11)
        if manager_problem is not None:
            return manager_problem
        sid = self._ids()
        if sid in self._sessions:
            return Rejected(f"session id {sid!r} is taken", 409)
        token = Secret(secrets.token_urlsafe(32))
        new_manager_token = manager_token.issue() if spec.manager else None
        info = SessionInfo(
            id=sid, name=spec.name, status=SessionStatus.STARTING, created_at=self._timer_service.clock.wall()
        )
        cell = m.InfoCell(info)
        if isinstance(self._store, SqliteStore):
            self._store.remember_token(sid, token)  # its digest: what verifies the agent after a restart
        ref = SessionActor.start(sid, spec, token, cell, self._deps, manager_token=new_manager_token)
        self._sessions[sid] = _Entry(agent_token=token, cell=cell, ref=ref, manager_token=new_manager_token)
        self._dirty.add(sid)
        return sid

    def _manager_problem(self, spec: m.SessionSpec) -> Rejected | None:
        """A child needs a live manager to belong to; managers do not nest."""
        if spec.managed_by is None:
            return None
        if spec.manager:
            return Rejected("a manager's child cannot itself be a manager", 400)
        entry = self._sessions.get(spec.managed_by)
        if entry is None or entry.manager_token is None:
            return Rejected(f"no manager session with id {spec.managed_by!r}", 404)
        if entry.ref is None or entry.cell.info.status.is_final:
            return Rejected(f"manager session {spec.managed_by} has ended", 409)
        return None

    def _tell_session(self, sid: str, message: Any) -> Rejected | None:
        entry = self._sessions.get(sid)
        if entry is None:
            return Rejected(f"no session with id {sid!r}", 404)
        _tell_quietly(entry.ref, message)
        return None

    def _delete(self, sid: str) -> Rejected | None:
        entry = self._forget(sid)
        if entry is None:
            return Rejected(f"no session with id {sid!r}", 404)
        self._timers.cancel(f"evict:{sid}")
        if entry.ref is None or not _tell_quietly(entry.ref, m.Delete()):
            self._slots["container"].tell(m.RemoveContainer(sid))
        return None

    def _crashed(self, crash: m.SessionCrashed) -> None:
        entry = self._sessions.get(crash.session_id)
        if entry is None:
            return
        entry.ref = None
        entry.final_view = crash.final_view
        self._ended.add(crash.session_id)
        self._dirty.add(crash.session_id)
        self._sync_directory()  # before the cell, so a reader never sees "error" without the view
        entry.cell.info = crash.final_view.info
        self._slots["container"].tell(m.RemoveContainer(crash.session_id))
        self._timers.start(
            f"evict:{crash.session_id}", self._config.eviction_ttl, _EvictTombstone(crash.session_id)
        )


def _tell_quietly(ref: Any, message: Any) -> bool:
    if ref is None:
        return False
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


def _stop_together(refs: list[Any], timeout: float) -> None:
    """Stop actors concurrently; wait for each at most ``timeout`` in all."""
    futures = []
    for ref in refs:
        try:
            futures.append(ref.stop(block=False))
        except pykka.ActorDeadError:
            pass
    for future in futures:
        try:
            future.get(timeout=timeout)
        except (pykka.Timeout, pykka.ActorDeadError):
            log.warning("an actor did not stop within %g s", timeout)


def _invalid(spec: m.SessionSpec, config: BerthConfig) -> str | None:
    """The same bounds the transport applies, for host apps that call the API directly."""
    name = spec.name.strip()
    if not 1 <= len(name) <= config.max_name_chars or not name.isprintable():
        return f"name must be 1-{config.max_name_chars} printable characters"
    if spec.permission_mode not in PERMISSION_MODES:
        return f"unknown permission mode {spec.permission_mode!r}; use one of {', '.join(PERMISSION_MODES)}"
    if spec.runner is not None and spec.runner not in AGENT_RUNNERS:
        return f"unknown runner {_cut(spec.runner)!r}; use one of {', '.join(AGENT_RUNNERS)}"
    if spec.model is not None and len(spec.model) > config.max_model_chars:
        return f"model is {len(spec.model)} characters; the limit is {config.max_model_chars}"
    if spec.repo_url is not None and (
        len(spec.repo_url) > config.max_repo_url_chars or not _REPO.match(spec.repo_url)
    ):
        return (
            f"repo_url {_cut(spec.repo_url)!r} is not an https://, ssh:// or git@ repository URL "
            f"of at most {config.max_repo_url_chars} characters"
        )
    if spec.branch is not None and (
        len(spec.branch) > config.max_branch_chars or not _BRANCH.match(spec.branch)
    ):
        return (
            f"branch {_cut(spec.branch)!r} contains invalid characters or is over {config.max_branch_chars}"
        )
    return None


def _cut(text: str, keep: int = 80) -> str:
    return text if len(text) <= keep else f"{text[:keep]}…"
