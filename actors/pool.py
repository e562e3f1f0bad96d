"""The PoolActor: pre-started containers whose agents wait to be given a session.

Docker's container start is most of a cold session's wait. The pool keeps up
to ``warm_pool_size`` containers running, each with an agent connected on
``/agent/pool/<slot>`` (authenticated by a per-slot pool token). A new
session claims one: the pool sends the agent an ``assign`` frame with the
session's id and secrets over that authenticated socket, hands the container
to the session through the ContainerActor, and starts a replacement
``warm_pool_refill_delay`` later (a replacement starting at once would take
the CPU from the claimed session's first prompt). A claimed container is
never reused; a pooled container that dies is replaced;
pooled containers plus live sessions never exceed the session limit.

On stop its timers are cancelled and its unclaimed containers removed.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import pykka

from actors.config import BerthConfig
from actors.directory import Directory
from actors.guarded_start import GuardedStart
from actors.messages import (
    ActorRef,
    AgentDetached,
    AgentLink,
    ChildFailed,
    ClaimContainer,
    ContainerExited,
    ContainerStarted,
    ContainerStartFailed,
    FromAgent,
    FromAgentBatch,
    PoolAgentAttached,
    PoolEmpty,
    PoolStatus,
    Probe,
    RemoveContainer,
    SessionEntry,
    SessionsCounted,
    StartContainer,
    TransferContainer,
)
from actors.secret import Secret
from actors.settle import answer_probe
from actors.timers import ActorTimers, TimerFired, TimerService

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    token: Secret
    container_id: str | None = None
    link: AgentLink | None = None

    @property
    def claimable(self) -> bool:
        return self.container_id is not None and self.link is not None


@dataclass(frozen=True)
class _Refill:
    pass


#: The timer that holds new pooled containers back for a while after a claim.
_HOLD = "claim-hold"


@dataclass
class _Stats:
    claimed: int = 0
    replaced: int = 0
    failed_starts: int = 0
    empty_claims: int = 0


class PoolActor(GuardedStart, pykka.ThreadingActor):
    def __init__(
        self,
        config: BerthConfig,
        timers: TimerService,
        container: Any,
        directory: Directory,
        *,
        supervisor: ActorRef | None = None,
    ):
        super().__init__()
        self._config = config
        self._supervisor = supervisor
        self.handled = 0
        self._timer_service = timers
        self._container = container
        self._directory = directory
        self._slots: dict[str, _Slot] = {}
        self._live_sessions = 0
        #: Pooled containers lost since a pooled agent last connected.
        self._losses = 0
        self._stats = _Stats()

    def _begin(self) -> None:
        self._timers = ActorTimers(self._timer_service, self.actor_ref)
        self._fill()

    def on_stop(self) -> None:
        self._timers.cancel_all()
        for key, slot in self._slots.items():
            if slot.link is not None:
                slot.link.close(4004, "pool shutting down")
            self._container.tell(RemoveContainer(key))
        self._slots.clear()
        self._publish()

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Give the slots' containers back; the replacement starts new ones."""
        reason = f"{getattr(exc_type, '__name__', exc_type)}: {exc}"
        log.error("the PoolActor failed: %s", reason)
        self.on_stop()
        if self._supervisor is not None:
            _tell(self._supervisor, ChildFailed("pool", reason))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Probe):
            return answer_probe(self, self.handled)
        self.handled += 1
        match message:
            case ClaimContainer():
                self._claim(message)
            case PoolAgentAttached(slot=key, link=link):
                self._attached(key, link)
            case AgentDetached(link_id=link_id):
                for slot in self._slots.values():
                    if slot.link is not None and slot.link.link_id == link_id:
                        slot.link = None
            case FromAgent() | FromAgentBatch():
                pass
            case ContainerStarted(session_id=key, container_id=cid):
                if key in self._slots:
                    self._slots[key].container_id = cid
            case ContainerStartFailed(session_id=key, reason=reason):
                self._lost(key, f"start failed: {reason}", retry_later=True)
            case ContainerExited(session_id=key, exit_code=code, why=why):
                self._lost(key, f"exited with code {code}{f' ({why})' if why else ''}", retry_later=False)
            case SessionsCounted(live=live):
                self._live_sessions = live
                self._fill()
            case TimerFired():
                if isinstance(self._timers.accept(message), _Refill):
                    self._fill()
            case PoolStatus():
                return self._status()
            case _:
                raise TypeError(f"PoolActor cannot handle {message!r}")
        return None

    def _claim(self, claim: ClaimContainer) -> None:
        key = next((k for k, slot in self._slots.items() if slot.claimable), None)
        if key is None:
            self._stats.empty_claims += 1
            _tell(claim.reply_to, PoolEmpty(claim.session_id))
            return
        slot = self._slots.pop(key)
        assert slot.link is not None
        slot.link.send(claim.assignment)
        # The session's token joins the slot's secrets dir: after a restart the server
        # reads it back from there to let the agent in again, as for a cold start.
        token = {"session-token": Secret(claim.assignment.session_token)}
        self._container.tell(TransferContainer(key, claim.session_id, claim.reply_to, token))
        self._stats.claimed += 1
        self._publish()
        hold = self._config.warm_pool_refill_delay
        if hold > 0 and _HOLD not in self._timers.armed():
            self._timers.start(_HOLD, hold, _Refill())
        self._fill()

    def _attached(self, key: str, link: AgentLink) -> None:
        slot = self._slots.get(key)
        if slot is None:
            link.close(4004, "no such pool slot")
            return
        if slot.link is not None:
            slot.link.close(4003, "replaced by a newer connection")
        slot.link = link
        self._losses = 0  # a pooled agent came up: containers work again

    def _lost(self, key: str, why: str, retry_later: bool) -> None:
        slot = self._slots.pop(key, None)
        if slot is None:
            return
        log.warning("pooled container %s lost: %s; replacing it", key, why)
        if slot.link is not None:
            slot.link.close(4004, "pooled container lost")
        self._container.tell(RemoveContainer(key))
        self._publish()
        if retry_later:
            self._stats.failed_starts += 1
        else:
            self._stats.replaced += 1
        self._losses += 1
        if self._losses == 1 and not retry_later:
            self._fill()
            return
        # Containers that keep dying before their agent connects (a broken image,
        # a full disk) must not be replaced in a tight loop: back off, capped.
        delay = min(self._config.pool_retry_delay * 2 ** max(0, self._losses - 2), 60.0)
        self._timers.start("refill", delay, _Refill())

    def _fill(self) -> None:
        armed = self._timers.armed()
        if "refill" in armed:
            return
        want = self._config.warm_pool_size
        limit = self._config.max_sessions
        if limit:
            want = min(want, max(0, limit - self._live_sessions))
        for key in sorted(self._slots, key=lambda k: self._slots[k].claimable)[
            : max(0, len(self._slots) - want)
        ]:
            self._retire(key)
        while len(self._slots) < want and _HOLD not in armed:
            key = f"pool-{uuid.uuid4().hex[:12]}"
            slot = _Slot(token=Secret(secrets.token_urlsafe(32)))
            self._slots[key] = slot
            self._container.tell(
                StartContainer(key, self.actor_ref, {"pool-token": slot.token}, {"BERTH_POOL_SLOT": key})
            )
        self._publish()

    def _retire(self, key: str) -> None:
        """Give a slot back: the session limit needs the room."""
        slot = self._slots.pop(key)
        if slot.link is not None:
            slot.link.close(4004, "pool shrinking to the session limit")
        self._container.tell(RemoveContainer(key))

    def _publish(self) -> None:
        self._directory.publish(
            {key: SessionEntry(key, self.actor_ref, slot.token) for key, slot in self._slots.items()}
        )

    def _status(self) -> dict[str, int]:
        return {
            "slots": len(self._slots),
            "ready": sum(1 for s in self._slots.values() if s.claimable),
            "claimed": self._stats.claimed,
            "replaced": self._stats.replaced,
            "failed_starts": self._stats.failed_starts,
            "empty_claims": self._stats.empty_claims,
        }


def _tell(ref: ActorRef, message: Any) -> None:
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        pass
