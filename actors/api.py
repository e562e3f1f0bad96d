"""The embedding API: how a host Python app (and the server) drives Berth.

    from actors.api import Berth
    from actors.config import BerthConfig

    with Berth.start(BerthConfig(image="berth-session:latest")) as berth:
        sid = berth.create_session(name="fix the flaky test")
        berth.wait_for_status(sid, {"idle"}, timeout=60)
        with berth.subscribe(sid) as events:
            berth.send_message(sid, "hello")
            for event in events.iter(timeout=30):
                print(event)

Every call is an ``ask`` at the edge of the actor tree; refused commands raise
``BerthError`` (with an HTTP-like ``code``) naming the problem.
``shutdown()`` stops every actor and thread that Berth started; the sessions'
containers keep running for the next start to recover, unless
``stop_sessions_on_exit`` is set. If the program's main thread ends without a
``shutdown()``, Berth shuts itself down, so a forgotten call never keeps the
process alive.
"""

from __future__ import annotations

import hmac
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Executor
from types import TracebackType
from typing import Any

import pykka

from actors import messages as m
from actors.clock import Clock, ManualClock
from actors.config import BerthConfig
from actors.directory import Directory
from actors.durability import Durability
from actors.events import EventBus
from actors.history import EndedSessions
from actors.manager_events import PauseManager, ReportStep, ResumeManager
from actors.outcome import Rejected
from actors.process_tuning import tune_process
from actors.runtime import ContainerRuntime
from actors.settle import settle
from actors.sqlite_store import SqliteStore
from actors.store import SessionStore
from actors.supervisor import SupervisorActor
from actors.timers import TimerService
from actors.token import Refresher, validate_token_config
from transport.protocol import SessionEvent, SessionInfo, SessionUpdate, Snapshot

ASK_TIMEOUT = 30.0


class BerthError(Exception):
    """A refused request; ``code`` is the HTTP status that fits."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


class Subscription:
    """A queue of events; iterate it, and close it (or use ``with``)."""

    def __init__(self, unsubscribe: Any) -> None:
        self._queue: queue.SimpleQueue[SessionEvent | Snapshot | None] = queue.SimpleQueue()
        self._unsubscribe = unsubscribe
        self.closed = False

    def __call__(self, event: SessionEvent | Snapshot) -> None:
        self._queue.put(event)

    def get(self, timeout: float) -> SessionEvent | Snapshot:
        """The next event; raises TimeoutError when none comes in time."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no event within {timeout:g} s") from None
        if item is None:
            raise EOFError("subscription closed")
        return item

    def iter(self, timeout: float) -> Iterator[SessionEvent | Snapshot]:
        """Events until closed, or until none arrives for ``timeout`` seconds."""
        while True:
            try:
                yield self.get(timeout)
            except EOFError:
                return

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._unsubscribe(self)
            self._queue.put(None)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


#: Trees started and not yet shut down; the exit hook below stops them.
_running: set[Berth] = set()
_running_lock = threading.Lock()
_hook_registered = False


def _shut_down_at_exit(berth: Berth) -> None:
    """pykka's threads are not daemons, so a host that returns from its main thread
    without ``shutdown()`` would never exit. The interpreter joins non-daemon threads
    only after running threading's exit hooks (the one ``concurrent.futures`` uses for
    its workers), so Berth shuts its trees down there; ``atexit`` runs too late."""
    global _hook_registered
    with _running_lock:
        _running.add(berth)
        if _hook_registered:
            return
        _hook_registered = True
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(_shut_down_all)


def _shut_down_all() -> None:
    with _running_lock:
        left = list(_running)
    for berth in left:
        berth.shutdown()


class Berth:
    def __init__(
        self,
        supervisor: pykka.ActorRef[Any],
        timers: TimerService,
        bus: EventBus,
        directory: Directory,
        pool_directory: Directory,
        durability: Durability | None = None,
    ) -> None:
        self._durability = durability
        self._supervisor = supervisor
        self._directory = directory
        #: Pool slots waiting for a session (the agent endpoint authenticates them here).
        self.pool_directory = pool_directory
        self.timers = timers
        self.bus = bus
        #: Timers still armed when the tree stopped (0 unless something leaked).
        self.leftover_timers = 0
        self._shutdown_lock = threading.Lock()
        self._shut_down = False

    @classmethod
    def start(
        cls,
        config: BerthConfig | None = None,
        *,
        runtime: ContainerRuntime | None = None,
        clock: Clock | None = None,
        refresher: Refresher | None = None,
        environ: dict[str, str] | None = None,
        store: SessionStore | None = None,
        executor: Callable[[int], Executor] | None = None,
        ids: Callable[[], str] | None = None,
    ) -> Berth:
        """Start the tree; raises EngineUnavailable when no Docker engine answers.

        Raises ValueError (``ClaudeDirError`` for a bad ``claude_dir``) naming the
        problem and the fix before anything starts. Tests inject the clock, the
        container worker pool (``executor(workers)``) and the session ids; with a
        ``ManualClock``, ``clock.advance`` settles the tree after each timer.
        """
        config = validate_token_config(config or BerthConfig())
        tune_process(config)
        if runtime is None:
            from actors.docker_runtime import DockerRuntime

            runtime = DockerRuntime()
        timers = TimerService(clock)
        try:
            durability = Durability.open(config, timers.clock, store)
        except BaseException:
            timers.stop()
            raise
        try:
            bus = EventBus()
            directory, pool_directory = Directory(), Directory()
            supervisor = SupervisorActor.start(
                config,
                timers,
                runtime,
                bus,
                directory,
                pool_directory,
                refresher,
                environ,
                store=durability.store,
                executor=executor,
                ids=ids,
            )
            supervisor.ask(m.GetChildren(), timeout=ASK_TIMEOUT)  # on_start done: recovered sessions listed
        except BaseException:
            timers.stop()
            durability.close()
            raise
        berth = cls(supervisor, timers, bus, directory, pool_directory, durability)
        if isinstance(clock, ManualClock):
            timers.settle_hook = berth.settle
        _shut_down_at_exit(berth)
        return berth

    # ------------------------------------------------------------ sessions

    def create_session(self, name: str = "session", **fields: Any) -> str:
        return str(self._ask(self._supervisor, m.CreateSession(m.SessionSpec(name=name, **fields))))

    def list_sessions(self, include_ended: bool = False) -> list[SessionInfo]:
        """Every session's latest info, oldest first (read from the registry, no ask);
        ``include_ended`` adds the ended sessions already evicted (from the store)."""
        listed = self._directory.infos()
        ended = self._ended()
        if include_ended and ended is not None:
            known = {info.id for info in listed}
            extra = [info for info in ended.infos() if info.id not in known]
            listed = sorted([*listed, *extra], key=lambda info: info.created_at)
        return listed

    def _ended(self) -> EndedSessions | None:
        store = self._durability.store if self._durability is not None else None
        return EndedSessions(store) if isinstance(store, SqliteStore) else None

    def lookup(self, session_id: str) -> m.SessionEntry:
        """The session's actor (or final view) from the supervisor's published directory."""
        entry = self._directory.get(session_id)
        if entry is None:
            raise BerthError(f"no session with id {session_id!r}", 404)
        return entry

    def lookup_for_agent(self, session_id: str) -> m.SessionEntry:
        """As ``lookup``, but a miss is confirmed by the supervisor.

        A pooled agent is told its session id while the supervisor may still be
        creating that session: without the confirmation it would be refused
        (404) and exit, and the new session would end in error.
        """
        entry = self._directory.get(session_id)
        if entry is None:
            try:
                entry = self._ask(self._supervisor, m.LookupSession(session_id))
            except (pykka.ActorDeadError, pykka.Timeout):
                entry = None
        if entry is None:
            raise BerthError(f"no session with id {session_id!r}", 404)
        return entry

    def get_session(self, session_id: str) -> m.SessionView:
        ended = self._ended()
        if self._directory.get(session_id) is None and ended is not None:
            stored = ended.view(session_id)  # evicted: its transcript stays readable
            if stored is not None:
                return stored
        entry = self.lookup(session_id)
        if entry.ref is not None:
            try:
                view: m.SessionView = self._ask(entry.ref, m.GetView())
                return view
            except pykka.ActorDeadError:
                entry = self.lookup(session_id)  # it stopped meanwhile: read what it left
        return _final_view(entry)

    def terminate_session(self, session_id: str, reason: str = "terminated by user") -> None:
        self._ask(self._supervisor, m.TerminateSession(session_id, reason))

    def delete_session(self, session_id: str) -> None:
        ended = self._ended()
        if self._directory.get(session_id) is None and ended is not None and ended.forget(session_id):
            return
        self._ask(self._supervisor, m.DeleteSession(session_id))

    def send_message(self, session_id: str, content: str) -> None:
        self._command(session_id, m.SendUserMessage(content))

    def answer_approval(
        self, session_id: str, approval_id: str, allow: bool, message: str | None = None
    ) -> None:
        self._command(session_id, m.AnswerApproval(approval_id, allow, message))

    def answer_question(self, session_id: str, question_id: str, answers: Mapping[str, str]) -> None:
        self._command(session_id, m.AnswerQuestion(question_id, dict(answers)))

    def interrupt(self, session_id: str) -> None:
        self._command(session_id, m.InterruptTurn())

    def update_settings(
        self, session_id: str, name: str | None = None, permission_mode: str | None = None
    ) -> None:
        self._command(session_id, m.ChangeSettings(name, permission_mode))

    def set_model(self, session_id: str, model: str | None) -> None:
        self._command(session_id, m.ChangeModel(model))

    def request_models(self, session_id: str) -> None:
        self._command(session_id, m.RequestModels())

    # ------------------------------------------------------------ managers (docs/managers.md)

    def create_manager(self, name: str = "manager", **fields: Any) -> str:
        """A manager session: it gets a manager token scoped to itself and its children."""
        return self.create_session(name, manager=True, **fields)

    def report_step(self, session_id: str, step: str) -> None:
        self._command(session_id, ReportStep(step))

    def pause_manager(self, session_id: str, resume_at: float | None = None) -> None:
        """Pause auto-continue and event delivery; ``resume_at`` is Unix time within 24 h."""
        self._command(session_id, PauseManager(resume_at))

    def resume_manager(self, session_id: str) -> None:
        self._command(session_id, ResumeManager())

    def manager_for_token(self, token: str | None) -> str | None:
        """The live manager session whose manager token this is (constant-time compares)."""
        if not token:
            return None
        given = token.encode()
        found: m.SessionEntry | None = None
        for sid in self._directory.ids():
            entry = self._directory.get(sid)
            if entry is None or entry.manager_token is None or entry.ref is None:
                continue
            if hmac.compare_digest(given, entry.manager_token.reveal().encode()):
                found = entry
        if found is None or found.cell is None or found.cell.info.status.is_final:
            return None
        return found.session_id

    def children_of(self, manager_id: str) -> list[SessionInfo]:
        return [info for info in self._directory.infos() if info.managed_by == manager_id]

    def pool_status(self) -> dict[str, int]:
        """Counts of the warm pool's slots: ``slots``, ``ready``, ``claimed``, ``replaced``…"""
        pool = self._children()["pool"]
        if pool is None:
            return {
                "slots": 0,
                "ready": 0,
                "claimed": 0,
                "replaced": 0,
                "failed_starts": 0,
                "empty_claims": 0,
            }
        status: dict[str, int] = self._ask(pool, m.PoolStatus())
        return status

    def _children(self) -> dict[str, Any]:
        children: dict[str, Any] = self._ask(self._supervisor, m.GetChildren())
        return children

    def tell_command(self, session_id: str, command: Any, reply: Callable[[Rejected | None], None]) -> None:
        """Send a session command without waiting; ``reply`` gets the outcome
        (on the session's thread, so it must only queue or send)."""
        entry = self._directory.get(session_id)
        if entry is None:
            reply(Rejected(f"no session with id {session_id!r}", 404))
        elif entry.ref is None:
            reply(Rejected(f"session {session_id} has ended", 409))
        else:
            try:
                entry.ref.tell(m.Command(command, reply))
            except pykka.ActorDeadError:
                reply(Rejected(f"session {session_id} has ended", 409))

    def token_status(self) -> m.TokenStatus:
        status: m.TokenStatus = self._ask(self._children()["token"], m.GetTokenStatus())
        return status

    # ------------------------------------------------------------ events

    def subscribe(self, session_id: str | None = None, since: int | None = None) -> Subscription:
        """Events of one session (first a snapshot or the missed events), or of all."""
        if session_id is None:
            sub = Subscription(self.bus.unsubscribe)
            self.bus.subscribe(sub)
            return sub
        ref = self._live_ref(session_id)
        sub = Subscription(lambda s: _tell_quietly(ref, m.Unsubscribe(s)))
        self._ask(ref, m.Subscribe(sub, since))
        return sub

    def attach_sink(self, session_id: str, sink: m.EventSink, since: int | None = None) -> Callable[[], None]:
        """Feed one session's events to ``sink``; returns the function that detaches it."""
        entry = self.lookup(session_id)
        ref = entry.ref
        if ref is not None:
            try:
                self._ask(ref, m.Subscribe(sink, since))
                return lambda: _tell_quietly(ref, m.Unsubscribe(sink))
            except pykka.ActorDeadError:
                entry = self.lookup(session_id)  # it stopped meanwhile: read what it left
        sink(_snapshot_of(_final_view(entry)))
        return lambda: None

    def replay_kept(self, session_id: str, sink: Callable[[tuple[SessionEvent, ...]], None]) -> None:
        """Hand ``sink`` the events the session keeps, on its thread (``ReplayKept``);
        a session that has stopped hands nothing."""
        try:
            self._ask(self._live_ref(session_id), m.ReplayKept(sink))
        except (BerthError, pykka.ActorDeadError):
            pass

    def wait_for_status(self, session_id: str, statuses: Collection[str], timeout: float) -> m.SessionView:
        """Block until the session's status is one of ``statuses``."""
        deadline = time.monotonic() + timeout
        with self.subscribe() as events:
            view = self.get_session(session_id)
            while view.info.status not in statuses:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"session {session_id} is {view.info.status.value}, not {list(statuses)!r}, "
                        f"after {timeout:g} s (last reason: {view.info.status_reason})"
                    )
                try:
                    event = events.get(min(remaining, 0.5))
                except TimeoutError:
                    view = self.get_session(session_id)
                    continue
                if isinstance(event, SessionUpdate) and event.session_id == session_id:
                    view = self.get_session(session_id)
            return view

    # ------------------------------------------------------------ lifecycle

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no actor has a message to handle and no timer is due (tests)."""
        settle(self.timers.due, timeout)

    def shutdown(self, timeout: float = 120.0) -> None:
        with self._shutdown_lock:
            if not self._shut_down:
                self._shutdown(timeout)
                self._shut_down = True
                with _running_lock:
                    _running.discard(self)

    def _shutdown(self, timeout: float) -> None:
        if self._supervisor.is_alive():
            try:
                self._ask(self._supervisor, m.ShutdownTree())
                self._supervisor.stop(block=True, timeout=timeout)
            except pykka.ActorDeadError:
                pass
        self.leftover_timers = self.timers.pending()
        self.timers.stop()
        if self._durability is not None:
            self._durability.close()
            self._durability = None

    def __enter__(self) -> Berth:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    # ------------------------------------------------------------ helpers

    def _live_ref(self, session_id: str) -> pykka.ActorRef[Any]:
        entry = self.lookup(session_id)
        if entry.ref is None:
            raise BerthError(
                f"session {session_id} has ended ({entry.final_view and entry.final_view.info.status})", 409
            )
        return entry.ref

    def _command(self, session_id: str, message: Any) -> None:
        try:
            self._ask(self._live_ref(session_id), message)
        except pykka.ActorDeadError:
            raise BerthError(f"session {session_id} has ended", 409) from None
        self._wait_durable()

    def _wait_durable(self) -> None:
        """Issue 9: a command is answered only once the store holds it (one batch window)."""
        store = self._durability.store if self._durability is not None else None
        if isinstance(store, SqliteStore):
            store.flush()

    @staticmethod
    def _ask(ref: pykka.ActorRef[Any], message: Any) -> Any:
        result = ref.ask(message, timeout=ASK_TIMEOUT)
        if isinstance(result, Rejected):
            raise BerthError(result.reason, result.code)
        return result


def _final_view(entry: m.SessionEntry) -> m.SessionView:
    """What a session left behind: its final view, or its last posted info."""
    if entry.final_view is not None:
        return entry.final_view
    if entry.cell is None:
        raise BerthError(f"session {entry.session_id} has ended", 409)
    return m.SessionView(
        info=entry.cell.info, history=(), pending_approval=None, pending_question=None, seq=0
    )


def _snapshot_of(view: m.SessionView) -> Snapshot:
    return Snapshot(
        session_id=view.info.id,
        seq=view.seq,
        session=view.info,
        history=list(view.history),
        pending_approval=view.pending_approval,
        pending_question=view.pending_question,
    )


def _tell_quietly(ref: pykka.ActorRef[Any], message: Any) -> None:
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        pass
