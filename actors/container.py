"""The ContainerActor: sole owner of the container runtime and session containers.

Blocking runtime calls run on a small worker pool so that one slow ``docker``
call never holds up other sessions; their outcomes come back to this actor as
messages, so the bookkeeping (which session owns which container, which start
is still in flight, which removal was asked for meanwhile) has one writer.

On stop: the exit watch is closed, every container still tracked is removed
(concurrently, waiting for all), and the worker pool is drained. A failure in
a runtime call is reported to the requester as a message, never raised here.

Engine outages: the exit watch subscribes again by itself; after every
subscription this actor lists its containers and reports the exits it missed
(each exit is reported once). A removal that fails is retried on a timer,
with backoff, until the engine confirms the container is gone.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka

from actors.claude_code import claude_code_env
from actors.config import BerthConfig
from actors.exit_output import why_it_stopped
from actors.guarded_start import GuardedStart
from actors.messages import (
    ActorRef,
    AdoptContainers,
    ChildFailed,
    ContainerExited,
    ContainerStarted,
    ContainerStartFailed,
    ListContainers,
    Probe,
    ReapOrphans,
    RemoveContainer,
    StartContainer,
    TransferContainer,
)
from actors.runtime import (
    LABEL_APP,
    LABEL_INSTANCE,
    LABEL_SESSION,
    Closeable,
    ContainerRecord,
    ContainerRuntime,
    ContainerSpec,
    RuntimeError_,
)
from actors.secret import Secret
from actors.settle import answer_probe
from actors.timers import ActorTimers, TimerFired, TimerService

log = logging.getLogger(__name__)

#: Inside /run/berth, a directory only root (the agent) may enter: whoever
#: owns the mount itself, the tool user cannot reach it (``agent.isolation``).
SECRETS_MOUNT = "/run/berth/secrets"

#: In a claimed pool container's secrets dir: the session it serves. Its label
#: still names the pool slot (labels cannot change), so this is how a restarted
#: server (or ContainerActor) finds the session's container and token (issue 9).
CLAIM_FILE = "session-id"


def claimed_by(secrets_dir: Path) -> str | None:
    """The session a claimed pool container serves, from its secrets dir; None if unclaimed."""
    try:
        return (secrets_dir / CLAIM_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class _StartDone:
    session_id: str
    container_id: str | None
    error: str | None


@dataclass(frozen=True)
class _ExitSeen:
    container_id: str
    session_id: str
    exit_code: int


@dataclass(frozen=True)
class _ExitDescribed:
    container_id: str
    exit_code: int
    why: str


@dataclass(frozen=True)
class _WatchResumed:
    pass


@dataclass(frozen=True)
class _Reconcile:
    records: tuple[ContainerRecord, ...]
    #: What was tracked before the list was asked for: only those can be judged by it.
    tracked: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class _RemoveFailed:
    session_id: str
    container_id: str
    secrets_dir: Path | None
    delay: float


@dataclass(frozen=True)
class _RetryRemove:
    session_id: str
    container_id: str
    secrets_dir: Path | None
    delay: float


@dataclass(frozen=True)
class _OrphansFound:
    records: tuple[ContainerRecord, ...]
    keep: frozenset[str]
    #: Track the kept sessions' containers again (after a restart of this actor).
    adopt: bool = False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RuntimeError_):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class ContainerActor(GuardedStart, pykka.ThreadingActor):
    def __init__(
        self,
        config: BerthConfig,
        runtime: ContainerRuntime,
        *,
        supervisor: ActorRef | None = None,
        executor: Callable[[int], Executor] | None = None,
        timers: TimerService | None = None,
    ) -> None:
        super().__init__()
        self._own_timer_service = timers is None
        self._timer_service = timers or TimerService()
        #: Exits already reported, by container id (the watch and a reconcile may both see one).
        self._exit_reported: set[str] = set()
        #: Removals waiting for their retry timer: container id -> (session id, secrets dir).
        self._retrying: dict[str, tuple[str, Path | None]] = {}
        self._config = config
        self._runtime = runtime
        self._supervisor = supervisor
        self._pool: Executor = (
            executor(config.container_workers)
            if executor is not None
            else ThreadPoolExecutor(config.container_workers, thread_name_prefix="berth-docker")
        )
        self.handled = 0
        self._containers: dict[str, str] = {}
        self._owners: dict[str, ActorRef] = {}
        self._starting: set[str] = set()
        self._remove_when_started: set[str] = set()
        self._secret_dirs: dict[str, Path] = {}
        #: Containers a worker created whose _StartDone is not handled yet;
        #: the only state shared with workers, so that stop can remove them.
        self._unannounced: dict[str, str] = {}
        self._unannounced_lock = threading.Lock()
        self._watch: Closeable | None = None
        self._stopping = threading.Event()
        self._labels = {LABEL_APP: "berth", LABEL_INSTANCE: config.instance_id}

    # ------------------------------------------------------------ lifecycle

    def _begin(self) -> None:
        self._timers = ActorTimers(self._timer_service, self.actor_ref)
        self._watch = self._runtime.watch_exits(
            self._labels,
            self._exit_seen,
            resumed=lambda: self._tell_self(_WatchResumed()),
            retry=self._config.engine_watch_retry,
            retry_max=self._config.engine_watch_retry_max,
        )

    def on_stop(self) -> None:
        with self._unannounced_lock:
            self._stopping.set()
        if self._watch is not None:
            self._watch.close()
        if hasattr(self, "_timers"):
            self._timers.cancel_all()
        if self._own_timer_service:
            self._timer_service.stop()
        if not self._config.stop_sessions_on_exit and self._containers:
            log.info("leaving %d session containers running for the next start", len(self._containers))
            self._containers.clear()
        pending = [
            self._pool.submit(self._remove_job, sid, cid, self._secret_dirs.pop(sid, None))
            for sid, cid in self._containers.items()
        ] + [
            self._pool.submit(self._remove_job, sid, cid, path) for cid, (sid, path) in self._retrying.items()
        ]
        wait(pending, timeout=60)
        self._containers.clear()
        self._pool.shutdown(wait=True, cancel_futures=False)
        with self._unannounced_lock:
            late, self._unannounced = dict(self._unannounced), {}
        for sid, container_id in late.items():
            self._remove_job(sid, container_id, self._secrets_dir(sid))

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Keep the containers (the replacement adopts them); end the threads."""
        log.error("the ContainerActor failed: %s: %s", getattr(exc_type, "__name__", exc_type), exc)
        with self._unannounced_lock:
            self._stopping.set()
        if self._watch is not None:
            self._watch.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._supervisor is not None:
            try:
                self._supervisor.tell(
                    ChildFailed("container", f"{getattr(exc_type, '__name__', exc_type)}: {exc}")
                )
            except pykka.ActorDeadError:
                pass

    def _exit_seen(self, container_id: str, labels: Any, exit_code: int) -> None:
        """Runs on the engine's event thread: hand over to the mailbox."""
        try:
            self.actor_ref.tell(_ExitSeen(container_id, labels.get(LABEL_SESSION, ""), exit_code))
        except pykka.ActorDeadError:
            pass

    # ------------------------------------------------------------ dispatch

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Probe):
            return answer_probe(self, self.handled)
        self.handled += 1
        match message:
            case StartContainer():
                self._start(message)
            case _StartDone():
                self._start_done(message)
            case RemoveContainer(session_id=sid):
                self._remove(sid)
            case TransferContainer():
                self._transfer(message)
            case _ExitSeen():
                self._exited(message)
            case _ExitDescribed():
                self._exit_described(message)
            case ReapOrphans(keep=keep):
                self._pool.submit(self._list_job, keep)
            case AdoptContainers(owners=owners):
                self._owners.update(owners)
                self._pool.submit(self._list_job, frozenset(owners), True)
            case _OrphansFound():
                self._reap(message)
            case _WatchResumed():
                self._reconcile_soon()
            case _Reconcile():
                self._reconcile(message)
            case _RemoveFailed():
                self._removal_failed(message)
            case TimerFired():
                retry = self._timers.accept(message)
                if isinstance(retry, _RetryRemove):
                    self._retrying.pop(retry.container_id, None)
                    self._pool.submit(
                        self._remove_job, retry.session_id, retry.container_id, retry.secrets_dir, retry.delay
                    )
            case ListContainers():
                return dict(self._containers)
            case _:
                raise TypeError(f"ContainerActor cannot handle {message!r}")
        return None

    # ------------------------------------------------------------ handlers

    def _start(self, msg: StartContainer) -> None:
        sid = msg.session_id
        self._owners[sid] = msg.reply_to
        try:
            secrets_dir = self._write_secrets(sid, msg.secrets)
        except OSError as exc:
            self._tell(sid, ContainerStartFailed(sid, f"could not write the secrets directory: {exc}"))
            return
        self._secret_dirs[sid] = secrets_dir
        own = msg.settings
        env = {
            "BERTH_SESSION_ID": sid,
            "BERTH_SERVER_URL": self._config.server_url,
            "BERTH_SECRETS_DIR": SECRETS_MOUNT,
            "BERTH_RUNNER": self._config.agent_runner,
            "BERTH_ORPHAN_TIMEOUT": str(self._config.agent_orphan_timeout),
            **claude_code_env(self._config),
            "BERTH_MAX_FRAME_BYTES": str(self._config.max_agent_frame_bytes),
            "BERTH_BACKOFF_CAP": str(self._config.agent_backoff_cap),
            "BERTH_PING_INTERVAL": str(self._config.agent_ping_interval),
            **dict(self._config.container_env),
            **msg.env,
            **dict(own.env if own else ()),
            # Last: no environment setting may run the tools as the agent by accident.
            **({"BERTH_TOOL_USER": self._config.tool_user} if self._config.tool_user else {}),
        }
        spec = ContainerSpec(
            name=f"berth-{self._config.instance_id}-{sid}",
            image=own.image if own else self._config.image,
            labels={**self._labels, LABEL_SESSION: sid},
            env=env,
            mounts={str(secrets_dir): (SECRETS_MOUNT, True)},
            network=self._config.container_network,
            user=self._config.container_user,
            memory=own.memory if own and own.memory else self._config.container_memory,
            pids_limit=own.pids_limit if own and own.pids_limit else self._config.container_pids_limit,
            command=self._config.container_command,
            capabilities=self._config.container_capabilities,
        )
        self._starting.add(sid)
        self._pool.submit(self._start_job, sid, spec)

    def _start_done(self, msg: _StartDone) -> None:
        sid = msg.session_id
        self._starting.discard(sid)
        with self._unannounced_lock:
            self._unannounced.pop(sid, None)
        if msg.container_id is None:
            self._remove_when_started.discard(sid)
            self._pool.submit(_remove_dir, self._secret_dirs.pop(sid, None))
            self._tell(sid, ContainerStartFailed(sid, msg.error or "unknown error"))
            return
        self._containers[sid] = msg.container_id
        if sid in self._remove_when_started:
            self._remove_when_started.discard(sid)
            self._remove(sid)
            return
        if not self._tell(sid, ContainerStarted(sid, msg.container_id)):
            self._remove(sid)

    def _remove(self, sid: str) -> None:
        self._owners.pop(sid, None)
        if sid in self._starting:
            self._remove_when_started.add(sid)
            return
        container_id = self._containers.pop(sid, None)
        # A session recovered after a restart may own a secrets dir this actor never wrote.
        secrets_dir = self._secret_dirs.pop(sid, None)
        if secrets_dir is None and self._secrets_dir(sid) not in self._secret_dirs.values():
            secrets_dir = self._secrets_dir(sid)  # not handed to another key (a pool transfer)
        self._exit_reported.discard(container_id or "")
        if container_id is None:
            self._pool.submit(_remove_dir, secrets_dir)
        else:
            self._pool.submit(self._remove_job, sid, container_id, secrets_dir)

    def _transfer(self, msg: TransferContainer) -> None:
        """A pooled container becomes a session's: same container, new owner."""
        container_id = self._containers.pop(msg.from_key, None)
        self._owners.pop(msg.from_key, None)
        if container_id is None:
            try:
                msg.owner.tell(ContainerStartFailed(msg.to_key, "the pooled container is gone"))
            except pykka.ActorDeadError:
                pass
            return
        self._containers[msg.to_key] = container_id
        self._owners[msg.to_key] = msg.owner
        if msg.from_key in self._secret_dirs:
            self._secret_dirs[msg.to_key] = self._secret_dirs.pop(msg.from_key)
            try:
                claim = {**msg.secrets, CLAIM_FILE: Secret(msg.to_key)}
                self._write_secrets_in(self._secret_dirs[msg.to_key], claim)
            except OSError as exc:  # the session runs; it only cannot survive a restart
                log.error("session %s: its pooled container's secrets dir: %s", msg.to_key, exc)
        self._tell(msg.to_key, ContainerStarted(msg.to_key, container_id))

    def _exited(self, msg: _ExitSeen) -> None:
        key = self._key_of(msg.container_id)
        if key is not None:
            self._report_exit(key, msg.container_id, msg.exit_code)

    def _report_exit(self, key: str, container_id: str, exit_code: int) -> None:
        """Once per container; a worker first reads why it stopped (``actors.exit_output``)."""
        if container_id in self._exit_reported:
            return
        self._exit_reported.add(container_id)
        if self._config.container_exit_log_lines and exit_code >= 0:
            self._pool.submit(self._describe_exit_job, container_id, exit_code)
        else:
            self._tell(key, ContainerExited(key, container_id, exit_code))

    def _exit_described(self, msg: _ExitDescribed) -> None:
        """To the container's owner now: a pool claim may have moved it meanwhile."""
        key = self._key_of(msg.container_id)
        if key is not None:
            self._tell(key, ContainerExited(key, msg.container_id, msg.exit_code, msg.why))

    def _key_of(self, container_id: str) -> str | None:
        """Whose container this is now (a session's, or a pool slot's)."""
        return next((key for key, cid in self._containers.items() if cid == container_id), None)

    def _reconcile_soon(self) -> None:
        self._pool.submit(self._reconcile_job, frozenset(self._containers.items()))

    def _reconcile(self, msg: _Reconcile) -> None:
        """After the watch (re)subscribed: report exits of tracked containers it missed."""
        by_id = {record.id: record for record in msg.records}
        for key, container_id in list(self._containers.items()):
            if (key, container_id) not in msg.tracked:
                continue
            record = by_id.get(container_id)
            if record is None:
                log.warning("the container of session %s is gone from the engine", key)
                self._report_exit(key, container_id, -1)
            elif not record.running:
                code = record.exit_code if record.exit_code is not None else -1
                self._report_exit(key, container_id, code)

    def _removal_failed(self, msg: _RemoveFailed) -> None:
        if self._stopping.is_set():
            return
        delay = msg.delay
        self._retrying[msg.container_id] = (msg.session_id, msg.secrets_dir)
        retry = _RetryRemove(
            msg.session_id,
            msg.container_id,
            msg.secrets_dir,
            min(delay * 2, self._config.container_remove_retry_max),
        )
        self._timers.start(f"remove:{msg.container_id}", delay, retry)

    def _reap(self, msg: _OrphansFound) -> None:
        if msg.adopt:
            for record in msg.records:
                label = record.labels.get(LABEL_SESSION, "")
                sid = claimed_by(self._secrets_dir(label)) or label  # a claimed pool container
                if sid in msg.keep and sid in self._owners and sid not in self._containers:
                    self._containers[sid] = record.id
                    self._secret_dirs[sid] = self._secrets_dir(label)
            self._reconcile_soon()
        # A recovered session deleted before its container was adopted keeps nothing.
        keep = msg.keep & set(self._owners) if msg.adopt else msg.keep
        live = keep | self._starting | set(self._containers)
        live_ids = set(self._containers.values())
        for record in msg.records:
            sid = record.labels.get(LABEL_SESSION, "")
            if sid not in live and record.id not in live_ids:
                log.info("removing orphaned container %s", record.name)
                self._pool.submit(self._remove_job, sid, record.id, None)
        root = self._config.secrets_root
        in_use = live | {path.name for path in self._secret_dirs.values()}
        if root.is_dir():
            for entry in root.iterdir():
                if entry.name not in in_use:
                    shutil.rmtree(entry, ignore_errors=True)

    def _tell(self, sid: str, message: Any) -> bool:
        owner = self._owners.get(sid)
        if owner is None:
            return False
        try:
            owner.tell(message)
        except pykka.ActorDeadError:
            self._owners.pop(sid, None)
            return False
        return True

    # ------------------------------------------------------------ worker jobs

    def _start_job(self, sid: str, spec: ContainerSpec) -> None:
        try:
            container_id: str | None = self._runtime.run(spec)
            error = None
        except Exception as exc:
            container_id, error = None, _describe(exc)
        if container_id is not None:
            with self._unannounced_lock:
                if self._stopping.is_set():
                    stop_now = True
                else:
                    stop_now = False
                    self._unannounced[sid] = container_id
            if stop_now:
                self._remove_job(sid, container_id, self._secrets_dir(sid))
                return
        self._tell_self(_StartDone(sid, container_id, error))

    def _remove_job(
        self, sid: str, container_id: str, secrets_dir: Path | None, delay: float | None = None
    ) -> None:
        """Remove; on failure ask for a retry (the secrets dir stays until the container is gone)."""
        delay = self._config.container_remove_retry if delay is None else delay
        try:
            self._runtime.remove(container_id, self._config.container_stop_timeout)
        except Exception as exc:
            if self._stopping.is_set():
                log.error(
                    "could not remove the container of session %s: %s; the next start with this "
                    "instance id removes it",
                    sid,
                    _describe(exc),
                )
            else:
                log.warning(
                    "could not remove the container of session %s: %s; retrying in %g s",
                    sid,
                    _describe(exc),
                    delay,
                )
                self._tell_self(_RemoveFailed(sid, container_id, secrets_dir, delay))
            return
        _remove_dir(secrets_dir)

    def _describe_exit_job(self, container_id: str, exit_code: int) -> None:
        """Never lets a failure to read the output hold back the exit itself."""
        try:
            output = self._runtime.last_output(container_id, self._config.container_exit_log_lines)
            why = why_it_stopped(output)
        except Exception as exc:
            log.warning("could not read why container %s stopped: %s", container_id[:12], _describe(exc))
            why = ""
        self._tell_self(_ExitDescribed(container_id, exit_code, why))

    def _reconcile_job(self, tracked: frozenset[tuple[str, str]]) -> None:
        try:
            records = tuple(self._runtime.list(self._labels))
        except Exception as exc:
            log.warning("could not list containers to reconcile exits: %s", _describe(exc))
            return
        self._tell_self(_Reconcile(records, tracked))

    def _list_job(self, keep: frozenset[str], adopt: bool = False) -> None:
        try:
            records = tuple(self._runtime.list(self._labels))
        except Exception as exc:
            log.warning("could not list containers to reap orphans: %s", _describe(exc))
            return
        self._tell_self(_OrphansFound(records, keep, adopt))

    def _tell_self(self, message: Any) -> None:
        try:
            self.actor_ref.tell(message)
        except pykka.ActorDeadError:
            pass

    # ------------------------------------------------------------ secrets

    def _secrets_dir(self, sid: str) -> Path:
        return self._config.secrets_root / sid

    def _write_secrets(self, sid: str, secrets: Any) -> Path:
        return self._write_secrets_in(self._secrets_dir(sid), secrets)

    def _write_secrets_in(self, directory: Path, secrets: Any) -> Path:
        directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.mkdir(mode=0o700, exist_ok=True)
        uid, gid = _parse_user(self._config.container_user)
        for name, secret in secrets.items():
            assert isinstance(secret, Secret)
            path = directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secret.reveal())
            _chown(path, uid, gid)
        _chown(directory, uid, gid)
        return directory


def _remove_dir(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def _parse_user(user: str | None) -> tuple[int, int] | tuple[None, None]:
    if not user:
        return None, None
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        return None, None
    return int(uid), int(gid) if gid.isdigit() else int(uid)


def _chown(path: Path, uid: int | None, gid: int | None) -> None:
    """Give the container's user its files; only root can, and only root needs to."""
    if uid is None or gid is None or os.geteuid() != 0:
        return
    os.chown(path, uid, gid)
