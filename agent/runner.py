"""The one interface every runner implements, and what it may call back.

A runner consumes user messages from the input channel one turn at a time
and reports what happens through ``RunnerHost.emit``. The agent calls the
control methods (approval and question answers, interrupt, model and mode
changes, token updates) as tasks on the runner's event loop, so a runner
never deals with threads; only ``emit`` and the channel cross threads.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from actors.secret import Secret
from agent.channel import InputChannel
from transport.protocol import AgentToServer, PermissionMode


@dataclass(frozen=True)
class TurnOutcome:
    """How a turn ended, for whoever waits on ``UserInput.done``."""

    result: str | None
    is_error: bool = False


class RunnerFailed(RuntimeError):
    """The runner's loop died; its session cannot continue."""


class RunnerClosed(RuntimeError):
    """The runner was closed before this turn ran or finished."""


@dataclass(frozen=True, eq=False)
class UserInput:
    """One user message, with a future that settles when its turn is over.

    ``done`` is a thread-safe future, so a test, a benchmark or the agent can
    wait for a turn from any thread or (via ``asyncio.wrap_future``) any loop.
    If the runner dies mid-turn the future fails with ``RunnerFailed``; if it
    is closed first, with ``RunnerClosed``. It never stays pending forever.
    """

    content: str
    id: str = ""
    done: Future[TurnOutcome] = field(default_factory=Future, repr=False)

    def finish(self, outcome: TurnOutcome) -> None:
        if not self.done.done():
            self.done.set_result(outcome)

    def fail(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)


class RunnerHost(Protocol):
    """What a runner reports to: frames for the server."""

    def emit(self, frame: AgentToServer) -> None:
        """Queue ``frame`` for the server; thread-safe and never blocks."""


class Runner(Protocol):
    """A conversation engine behind the agent (built-in or Claude Agent SDK)."""

    async def run(self, channel: InputChannel[UserInput], host: RunnerHost) -> None:
        """Serve turns until the channel ends; raise RunnerFailed if the loop dies."""

    async def wait_ready(self) -> None:
        """Return once a prompt would be taken at once (the agent then says ``ready``)."""

    async def approval_response(self, approval_id: str, allow: bool, message: str | None) -> None:
        """Answer a pending tool approval."""

    async def question_response(self, question_id: str, answers: dict[str, str]) -> None:
        """Answer a pending question."""

    async def interrupt(self) -> None:
        """Stop the current turn (with an error result); no-op when idle."""

    async def set_model(self, model: str | None) -> None:
        """Switch the model for the following requests."""

    async def get_models(self) -> None:
        """Emit a ``models_list`` frame."""

    async def set_permission_mode(self, mode: PermissionMode) -> None:
        """Change how tool use is approved."""

    async def update_token(self, token: Secret) -> None:
        """Use ``token`` as the Claude access token from now on."""

    async def close(self) -> None:
        """Deny what is pending, end the channel, fail queued turns, stop within a bounded time."""


def fail_remaining(channel: InputChannel[UserInput], error: BaseException) -> None:
    """Close ``channel`` and fail every turn still queued in it."""
    channel.close()
    for item in channel:
        item.fail(error)
