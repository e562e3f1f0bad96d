"""Restart recovery: the sessions in the store, back into a new tree.

The supervisor calls ``recover`` in ``on_start``, before it starts any child,
and starts one SessionActor per result (``Recovered.restored`` tells the
actor where it left off). For each stored session that was not evicted:

- its state is read back and its timers re-armed at their stored deadlines;
- a live session whose container still runs waits for its agent
  (``reconnecting``, within the grace period); the ContainerActor adopts the
  container by its labels (``AdoptContainers``);
- a container that exited while Berth was down ends the session with its
  exit code; a container that is gone ends it in ``error`` saying so;
- its journal gets the stored events back, so a client that resubscribes
  ``since: N`` gets exactly the events after N. Events a kill -9 lost (the
  last batch window) may already have been seen by a client: the new
  process numbers on from ``RESTART_SEQ_GAP`` past the last stored event,
  and a client that asks for anything inside that gap gets a snapshot.

The agent token is read back from the session's secrets dir (the agent's own
copy, mode 0600) and checked against the digest in the store. A session that
claimed a warm pool container finds both through the container's secrets
dir: its label names the pool slot, and the claim wrote the session's id and
token there (``actors.container.CLAIM_FILE``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from actors import effects as fx
from actors import messages as m
from actors.clock import Clock
from actors.config import BerthConfig
from actors.container import claimed_by
from actors.runtime import LABEL_APP, LABEL_INSTANCE, LABEL_SESSION, ContainerRecord, ContainerRuntime
from actors.secret import Secret
from actors.session_core import resume
from actors.session_state import ContainerPhase, Instant, SessionState
from actors.sqlite_store import SqliteStore
from actors.state_codec import SessionStateCodec
from actors.store_records import StoredSession, digest_matches
from transport.protocol import ChatMessage, SessionEvent

log = logging.getLogger(__name__)

#: How far the event numbers jump after a restart (see the module docstring).
RESTART_SEQ_GAP = 1_000_000


@dataclass(frozen=True)
class Restored:
    """Where a recovered SessionActor starts from, instead of ``start``."""

    state: SessionState
    effects: tuple[fx.Effect, ...]
    #: The stored events (the journal's replay log) and the history they hold.
    events: tuple[SessionEvent, ...]
    history: tuple[ChatMessage, ...]
    #: No event number in (start, end] exists: subscribers asking inside get a snapshot.
    seq_gap: tuple[int, int]
    #: Messages to run once started (an exit or loss found at recovery).
    then: tuple[Any, ...] = ()
    #: The highest agent link number whose frame's effects are stored, and its agent process.
    link_received: int = 0
    link_epoch: str = ""


@dataclass(frozen=True)
class Recovered:
    session_id: str
    agent_token: Secret
    restored: Restored


def recover(
    store: SqliteStore, config: BerthConfig, clock: Clock, runtime: ContainerRuntime
) -> list[Recovered]:
    """Every stored, not evicted session, ready to be started again."""
    codec = store.codec
    if not isinstance(codec, SessionStateCodec):
        return []
    stored = store.load()
    if not stored:
        return []
    records = _containers(runtime, config)
    claimed = _claimed_dirs(config.secrets_root)
    now = Instant(clock.now(), clock.wall())
    found = []
    for item in stored:
        try:
            decoded = codec.decode(item.state)
        except Exception as exc:
            log.error(
                "session %s in the store cannot be read back (%s); it is left as it is", item.session_id, exc
            )
            continue
        if decoded.state.gone:
            continue  # evicted: its transcript stays readable from the store
        deadlines = {name: now.mono + (wall - now.wall) for name, wall in decoded.wall_deadlines.items()}
        directory = claimed.get(item.session_id, config.secrets_root / item.session_id)
        found.append(_recovered(item, decoded.state, deadlines, records, directory, config, now))
    live = sum(1 for r in found if not r.restored.state.final)
    log.warning("recovered %d sessions from the store (%d live)", len(found), live)
    return found


def _recovered(
    item: StoredSession,
    state: SessionState,
    deadlines: dict[str, float],
    records: dict[str, ContainerRecord] | None,
    secrets_dir: Path,
    config: BerthConfig,
    now: Instant,
) -> Recovered:
    last = max([state.seq, *(e.seq for e in item.events)])
    state = replace(state, seq=last + RESTART_SEQ_GAP)
    new_state, effects = resume(state, now, deadlines)
    token = _agent_token(secrets_dir, item.token_digest)
    then: tuple[Any, ...] = ()
    if not new_state.final:
        then = _judge_container(new_state, records, token, secrets_dir.name)
    history = item.history[-config.history_limit :]
    restored = Restored(
        state=new_state,
        effects=effects,
        events=item.events,
        history=history,
        seq_gap=(last, last + RESTART_SEQ_GAP),
        then=then,
        link_received=item.link_received,
        link_epoch=item.link_epoch,
    )
    return Recovered(item.session_id, token or Secret(secrets.token_urlsafe(32)), restored)


def _judge_container(
    state: SessionState, records: dict[str, ContainerRecord] | None, token: Secret | None, label: str
) -> tuple[Any, ...]:
    """What became of the session's container (``label``: its ``berth.session``, a pool slot's
    for a claimed one) while Berth was down, as messages for the session."""
    sid = state.session_id
    if records is None:
        return ()  # the engine did not answer: the exit watch reconciles once it does
    record = records.get(label)
    if record is None:
        if state.container == ContainerPhase.NONE:
            return ()
        return (m.ContainerLost("Session container is gone: it was removed while Berth was not running"),)
    if not record.running:
        code = record.exit_code if record.exit_code is not None else -1
        return (m.ContainerExited(sid, record.id, code),)
    if token is None:
        return (
            m.ContainerLost("Session agent cannot be verified after the restart: its token file is gone"),
        )
    if state.container_id is None:
        return (m.ContainerStarted(sid, record.id),)
    return ()


def _containers(runtime: ContainerRuntime, config: BerthConfig) -> dict[str, ContainerRecord] | None:
    try:
        listed: Sequence[ContainerRecord] = runtime.list(
            {LABEL_APP: "berth", LABEL_INSTANCE: config.instance_id}
        )
    except Exception as exc:
        log.warning("cannot list containers at start (%s); exits are reconciled once the engine answers", exc)
        return None
    return {r.labels.get(LABEL_SESSION, ""): r for r in listed}


def _claimed_dirs(root: Path) -> dict[str, Path]:
    """Session id -> the secrets dir of the pool container it claimed."""
    found: dict[str, Path] = {}
    try:
        entries = list(root.iterdir()) if root.is_dir() else []
    except OSError as exc:
        log.warning("cannot list %s (%s); sessions from the warm pool cannot be verified", root, exc)
        return found
    for entry in entries:
        sid = claimed_by(entry)
        if sid is not None:
            found[sid] = entry
    return found


def _agent_token(directory: Path, digest: str | None) -> Secret | None:
    """The session's token as its agent has it, if it matches the stored digest."""
    try:
        value = (directory / "session-token").read_text().strip()
    except OSError:
        return None
    if digest is not None and not digest_matches(value, digest):
        log.error("the token file in %s does not match the store; that session's agent is refused", directory)
        return None
    return Secret(value)
