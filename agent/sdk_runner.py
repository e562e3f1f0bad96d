"""The Claude Agent SDK runner: one Claude Code CLI process per session.

The runner starts the CLI as soon as it can (``start``, which a warm-pool
agent calls before it has a session) and is ready only once the CLI has
answered its handshake: the agent says ``ready`` after ``wait_ready``, so an
``idle`` session takes a prompt at once. Turns go to the CLI one at a time
(``query``, then wait for the ``result``); a message that arrives mid-turn
waits in the channel.

Tool approvals and ``AskUserQuestion`` go through the SDK's ``can_use_tool``
callback (``agent.sdk_permissions``). Closing denies whatever is pending
first, ends the channel, and stops the CLI within ``close_timeout``, after
which it is killed. ``claude-agent-sdk`` is imported lazily: it is an
optional extra, and ``agent`` must import without it.

The token reaches the CLI through its credentials file
(``agent.sdk_credentials``); with none yet the CLI starts with a placeholder,
and a prompt that finds no real token within ``token_wait`` ends with an
error result naming the fix.

With ``park_after`` an idle CLI is stopped after that many seconds and the
next prompt resumes the same conversation (``--resume <id>``), trading the
CLI's memory for a start-up on the next prompt.

A pooled runner's CLIs talk to a Messages API stand-in (``stand_in``,
``agent.api_standin``), so that ``warm_up`` can run the CLI's first turns
before there is a session, offline, and take them back out of its
conversation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.secret import Secret
from agent.channel import ChannelEnded, InputChannel
from agent.isolation import ToolUser
from agent.runner import RunnerClosed, RunnerFailed, RunnerHost, TurnOutcome, UserInput, fail_remaining
from agent.sdk_cli import CliConnection
from agent.sdk_credentials import PLACEHOLDER_TOKEN, CliCredentials
from agent.sdk_permissions import PermissionBridge
from agent.sdk_relay import BERTH_MODES, SDK_MODES, Relay, result_text
from transport.protocol import (
    AgentError,
    AgentToServer,
    ModelInfo,
    ModelsList,
    PermissionMode,
    Result,
    SessionInfoUpdate,
    StatusUpdate,
)

if TYPE_CHECKING:
    from claude_agent_sdk import ClaudeAgentOptions

    from agent.api_standin import ApiStandIn

log = logging.getLogger(__name__)

NO_TOKEN = (
    "No Claude access token: this session cannot call Claude. Give the Berth server a "
    "Claude login (`berth serve --claude-dir ~/.claude`, see docs/claude-code.md), "
    "then send the prompt again."
)
#: What a pooled CLI's warm-up turns say (the stand-in answers them; each is rewound).
WARM_UP_PROMPT = "Berth warm-up: reply ok."
#: How many warm-up turns: the CLI's code keeps getting faster over its first
#: tens of turns. Measured (scripts/bench/claude_warmup.py on the host, and the
#: claude benchmark in containers): its first real prompt costs ~1.4x a
#: long-running CLI's turn after 1 warm-up turn, ~1.2x after 20, ~1.0x after
#: 30 on the host; in a container 30 left ~1.5x, 60 ~1.2x. 60 turns take
#: about 2 s of CPU, before the pool slot is offered.
WARM_UP_TURNS = 60
#: A pooled CLI still waiting for its claim runs one more warm-up turn this often.
#: Its JavaScript engine drops compiled code that has gone unused for a while
#: (scripts/bench/claude_warmup.py-style runs on the host: a CLI claimed 45 s
#: after its warm-up, 36 ms to its first token; with a turn every 20 s, 23 ms;
#: claimed at once, 21 ms).
KEEP_WARM_INTERVAL = 20.0


@dataclass(frozen=True)
class SdkRunnerConfig:
    cli_path: str | None = None
    cwd: str | None = None
    permission_mode: PermissionMode = "normal"
    model: str | None = None
    approval_timeout: float = 300.0
    close_timeout: float = 5.0
    env: Mapping[str, str] = field(default_factory=dict)
    claude_config_dir: str | None = None
    system_prompt_append: str | None = "You are running inside a Berth session container."
    #: In-process MCP servers (a manager's tools) and tools allowed without an approval.
    mcp_servers: Mapping[str, Any] = field(default_factory=dict)
    allowed_tools: tuple[str, ...] = ()
    #: How long a prompt waits for a first token before it fails with NO_TOKEN.
    token_wait: float = 0.0
    #: Stop a CLI idle this long; the next prompt resumes its conversation (0: never).
    park_after: float = 0.0
    #: Start the CLI so that it may be switched to bypassPermissions later.
    allow_dangerous: bool = False
    #: A shell file the CLI sources before each Bash command (``CLAUDE_ENV_FILE``):
    #: how a CLI started before its session gets the session's tool environment.
    tool_env_file: str | None = None
    #: Run the CLI (and so every tool) as this user (``agent.isolation``).
    tool_user: ToolUser | None = None


@dataclass
class _Turn:
    item: UserInput
    over: asyncio.Event = field(default_factory=asyncio.Event)


class SdkRunner:
    """Runs Claude Code through ``ClaudeSDKClient``."""

    def __init__(self, config: SdkRunnerConfig, token: Secret | None = None) -> None:
        self._config = config
        group = config.tool_user.gid if config.tool_user is not None else None
        self._credentials = CliCredentials(
            token, config.env, config.claude_config_dir, config.tool_env_file, group=group
        )
        self._mode: PermissionMode = config.permission_mode
        self._model = config.model
        self._host: RunnerHost | None = None
        self._held: list[AgentToServer] = []
        self._channel: InputChannel[UserInput] | None = None
        self._cli: CliConnection | None = None
        self._launching: asyncio.Future[CliConnection] | None = None
        self._relay = Relay(self._emit, config.model, config.permission_mode)
        self._ready: asyncio.Future[None] | None = None
        self._turn: _Turn | None = None
        self._models: list[ModelInfo] = []
        self._permissions = PermissionBridge(
            self._emit, config.approval_timeout, lambda: self._turn is not None
        )
        #: The CLI's conversation id: set at the first start, resumed after parking.
        self.conversation_id = str(uuid.uuid4())
        self._conversation_started = False
        self.parked = False
        self.resume_seconds: list[float] = []
        #: A pooled runner's Messages API stand-in (``agent.api_standin``): the
        #: CLIs it starts talk to it, so the first one can be warmed offline.
        self.stand_in: ApiStandIn | None = None
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._started = False
        self._closing = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the CLI now (idempotent); returns once it can take a prompt."""
        await self._live_cli()

    async def warm_up(self, turns: int = WARM_UP_TURNS) -> bool:
        """Warm the started CLI with turns the stand-in answers, each rewound.

        If the CLI did not confirm a rewind, its conversation may hold a
        warm-up turn, so it is replaced by a fresh CLI (with a new conversation
        id), which is not warm but has nothing in it. True if warmed.
        """
        cli = await self._live_cli()
        started = time.monotonic()
        for done in range(turns):
            if not await cli.warm_up(WARM_UP_PROMPT, self._config.close_timeout):
                log.warning("the warm-up stopped after %d turns; starting a fresh Claude Code", done)
                break
        else:
            log.info("Claude Code warmed up (%d turns) in %.2f s", turns, time.monotonic() - started)
            self._forget_warm_up()
            return True
        await self._shut_cli()
        self.conversation_id = str(uuid.uuid4())
        await self._live_cli()
        return False

    async def keep_warm(self) -> bool:
        """One more warm-up turn, rewound; False if there is no CLI or the rewind failed
        (its conversation may then hold the turn: the CLI must not take a session)."""
        cli = self._cli
        if cli is None or not await cli.warm_up(WARM_UP_PROMPT, self._config.close_timeout):
            return False
        self._forget_warm_up()
        return True

    def _forget_warm_up(self) -> None:
        """Empty the conversation's transcript of its rewound warm-up turns.

        A rewind takes a turn out of the conversation but not out of the CLI's
        transcript (``<config>/projects/<cwd>/<conversation>.jsonl``, ~100 KB a
        turn), which a resumed CLI reads back. Nothing in it belongs to the
        session yet, and the CLI opens the file to append each entry.
        """
        if not self._config.claude_config_dir:
            return
        projects = Path(self._config.claude_config_dir) / "projects"
        for transcript in projects.glob(f"*/{self.conversation_id}.jsonl"):
            try:
                os.truncate(transcript, 0)
            except OSError as exc:
                log.warning("could not empty the warm-up transcript: %s", exc)

    def cli_ended(self) -> asyncio.Future[None] | None:
        """Settles when the running CLI's stream ends (None: no CLI running)."""
        return self._cli.ended if self._cli is not None else None

    async def wait_ready(self) -> None:
        """Returns once a prompt would be taken at once (raises if the runner ended first)."""
        await asyncio.shield(self._ready_future())

    async def run(self, channel: InputChannel[UserInput], host: RunnerHost) -> None:
        self._channel, self._host, self._started = channel, host, True
        held, self._held = self._held, []
        for frame in held:
            host.emit(frame)
        try:
            if self._closing:
                channel.close()
                return
            await self._serve(channel)
        finally:
            ready = self._ready_future()
            if not ready.done():
                ready.set_exception(RunnerClosed("Claude Code is not running"))
                ready.exception()  # retrieved: nobody may be waiting
            self._stopped.set()

    async def _serve(self, channel: InputChannel[UserInput]) -> None:
        try:
            try:
                await self._live_cli()
            except RunnerClosed:
                return
            while not self._closing:
                item = await self._next_item(channel)
                if item is None:
                    break
                if self._closing:
                    item.fail(RunnerClosed("the runner is closing"))
                    break
                await self._serve_turn(item)
        finally:
            await self._shut_cli()
            self._end_turn(RunnerClosed("the runner closed mid-turn"))

    async def _next_item(self, channel: InputChannel[UserInput]) -> UserInput | None:
        """The next prompt; parks the CLI when idle too long; None when closing."""
        getter = asyncio.ensure_future(channel.aget())
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                cli = self._cli
                waits: set[asyncio.Future[Any]] = {getter, stopper}
                if cli is not None:
                    waits.add(cli.ended)
                park = self._config.park_after if cli is not None else None
                done, _ = await asyncio.wait(waits, timeout=park or None, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    try:
                        return getter.result()
                    except ChannelEnded:
                        return None
                if stopper in done:
                    return None
                if cli is not None and cli.ended in done:
                    raise self._cli_died(cli)
                if not done and cli is not None:
                    await self._park(cli)
        finally:
            stopper.cancel()
            if not getter.done():
                getter.cancel()

    async def _serve_turn(self, item: UserInput) -> None:
        turn = _Turn(item)
        self._turn = turn
        self._emit(StatusUpdate(status="running"))
        if not await self._credentials.wait_usable(self._config.token_wait, lambda: self._closing):
            if self._closing:
                self._end_turn(RunnerClosed("the runner closed before this turn"))
                return
            log.warning("a prompt arrived with no Claude access token")
            self._emit(Result(result=NO_TOKEN, is_error=True))
            self._end_turn(TurnOutcome(NO_TOKEN, True))
            return
        try:
            cli = await self._live_cli()
        except RunnerClosed as exc:
            self._end_turn(exc)
            return
        except RunnerFailed as exc:
            self._end_turn(exc)
            raise
        self._conversation_started = True
        await cli.query(item.content)
        stopper = asyncio.ensure_future(self._stop.wait())
        over = asyncio.ensure_future(turn.over.wait())
        try:
            waits: set[asyncio.Future[Any]] = {over, stopper, cli.ended}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            over.cancel()
        if turn.over.is_set() or self._closing:
            return
        failure = self._cli_died(cli)
        self._end_turn(failure)
        raise failure

    def _cli_died(self, cli: CliConnection) -> RunnerFailed:
        self._cli = None
        error = cli.ended.exception() if cli.ended.done() and not cli.ended.cancelled() else None
        if error is not None:
            return RunnerFailed(f"Claude Code failed: {error}")
        return RunnerFailed("Claude Code exited unexpectedly")

    def _on_message(self, message: Any) -> None:
        result = self._relay.handle(message)
        if result is not None:
            self._end_turn(TurnOutcome(result_text(result), result.is_error))

    def _end_turn(self, outcome: TurnOutcome | BaseException) -> None:
        turn, self._turn = self._turn, None
        if turn is None:
            return
        if isinstance(outcome, TurnOutcome):
            turn.item.finish(outcome)
        else:
            turn.item.fail(outcome)
        turn.over.set()

    # ------------------------------------------------------- CLI processes

    async def _live_cli(self) -> CliConnection:
        """The running CLI, starting (or resuming) it if needed."""
        if self._cli is not None and not self._cli.ended.done():
            return self._cli
        if self._closing:
            raise RunnerClosed("the runner is closing")
        if self._launching is None:
            self._launching = asyncio.ensure_future(self._launch())
        launching = self._launching
        try:
            return await asyncio.shield(launching)
        finally:
            if launching.done() and self._launching is launching:
                self._launching = None

    async def _launch(self) -> CliConnection:
        try:
            import claude_agent_sdk  # noqa: F401
        except ImportError:
            raise RunnerFailed(
                "the session image has no claude-agent-sdk: rebuild it with "
                "`BERTH_IMAGE_EXTRAS=sdk bash scripts/build-image.sh`, or use the built-in runner"
            ) from None
        self._credentials.prepare()
        resuming = self.parked and self._conversation_started
        try:
            cli = await CliConnection.open(self._options(resuming), self._on_message)
        except Exception as exc:
            raise RunnerFailed(f"Claude Code could not start: {exc}") from exc
        if self._closing:
            await cli.close(self._config.close_timeout)
            raise RunnerClosed("the runner closed while Claude Code started")
        self._models = cli.models or self._models
        if resuming:
            self.resume_seconds.append(cli.start_seconds)
            log.info("Claude Code resumed its conversation in %.2f s", cli.start_seconds)
        else:
            log.info("Claude Code started in %.2f s", cli.start_seconds)
        self._cli, self.parked = cli, False
        if not self._ready_future().done():
            self._ready_future().set_result(None)
        return cli

    async def _park(self, cli: CliConnection) -> None:
        log.info("parking Claude Code after %.0f s idle", self._config.park_after)
        self._cli, self.parked = None, True
        await cli.close(self._config.close_timeout)

    async def _shut_cli(self) -> None:
        launching = self._launching
        if launching is not None and not launching.done():
            await asyncio.wait({launching}, timeout=self._config.close_timeout * 2)
            if not launching.done():
                launching.cancel()
        if launching is not None and launching.done() and not launching.cancelled():
            launching.exception()  # retrieved: a failed start was reported elsewhere
        cli, self._cli = self._cli, None
        if cli is not None:
            await cli.close(self._config.close_timeout)

    async def _control_cli(self) -> CliConnection | None:
        """The CLI for a control call: None while parked (the call applies at resume)."""
        if self.parked:
            return None
        await asyncio.shield(self._ready_future())
        if self._cli is None:
            if self.parked:
                return None
            raise RunnerClosed("Claude Code is not running")
        return self._cli

    # --------------------------------------------------------------- options

    def _options(self, resuming: bool) -> ClaudeAgentOptions:
        from claude_agent_sdk import ClaudeAgentOptions

        prompt: Any = {"type": "preset", "preset": "claude_code"}
        if self._config.system_prompt_append:
            prompt["append"] = self._config.system_prompt_append
        extra: dict[str, str | None] = {}
        if self._config.allow_dangerous:
            extra["allow-dangerously-skip-permissions"] = None
        cli_path = self._config.cli_path
        if self._config.tool_user is not None:
            cli_path = self._config.tool_user.cli_wrapper(cli_path)
        env = self._credentials.cli_env()
        if self.stand_in is not None:
            env["ANTHROPIC_BASE_URL"] = self.stand_in.url
        return ClaudeAgentOptions(
            cli_path=cli_path,
            cwd=self._config.cwd,
            include_partial_messages=True,
            can_use_tool=self._permissions.can_use_tool,
            permission_mode=SDK_MODES[self._mode],
            model=self._model,
            env=env,
            system_prompt=prompt,
            setting_sources=["user", "project"],
            stderr=self._on_stderr,
            mcp_servers=dict(self._config.mcp_servers),
            allowed_tools=list(self._config.allowed_tools),
            extra_args=extra,
            resume=self.conversation_id if resuming else None,
            session_id=None if resuming else self.conversation_id,
        )

    @staticmethod
    def _on_stderr(line: str) -> None:
        log.debug("claude: %s", line)

    def _emit(self, frame: AgentToServer) -> None:
        """To the host; held until ``run`` while a pooled runner has none yet."""
        if self._host is None:
            self._held.append(frame)
        else:
            self._host.emit(frame)

    def _ready_future(self) -> asyncio.Future[None]:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
        return self._ready

    def _info(self) -> SessionInfoUpdate:
        return SessionInfoUpdate(model=self._model, permission_mode=self._mode)

    # --------------------------------------------------------------- control

    async def approval_response(self, approval_id: str, allow: bool, message: str | None) -> None:
        self._permissions.approve(approval_id, allow, message)

    async def question_response(self, question_id: str, answers: dict[str, str]) -> None:
        self._permissions.answer(question_id, answers)

    async def interrupt(self) -> None:
        if self._turn is None:
            return
        self._permissions.deny_all("interrupted")
        if self._cli is not None:
            await self._cli.client.interrupt()

    async def set_model(self, model: str | None) -> None:
        cli = await self._control_cli()
        if cli is not None:
            await cli.client.set_model(model)
        self._model = model
        self._relay.note(model, self._mode)
        self._emit(self._info())

    async def get_models(self) -> None:
        if not self.parked:
            await asyncio.shield(self._ready_future())
        self._emit(ModelsList(models=self._models))

    async def set_permission_mode(self, mode: PermissionMode) -> None:
        """Ask the CLI; a refusal is reported, and the info shows the mode in force."""
        cli = await self._control_cli()
        refusal: str | None = None
        if cli is not None:
            try:
                await cli.client.set_permission_mode(SDK_MODES[mode])
            except Exception as exc:
                refusal = str(exc) or type(exc).__name__
        elif mode == "dangerous" and not self._config.allow_dangerous:
            refusal = "this session's Claude Code was not started with bypassing allowed"
        if refusal is not None:
            self._emit(self._info())
            self._emit(
                AgentError(
                    message=f"permission mode {mode!r} refused by Claude Code: {refusal}; "
                    f"the session stays in {self._mode!r}"
                )
            )
            return
        self._mode = mode
        self._relay.note(self._model, mode)
        self._emit(self._info())

    def set_tool_env(self, env: Mapping[str, Secret]) -> None:
        """Environment for the model's Bash commands from the next one on (private file)."""
        self._credentials.set_tool_env(env)

    async def update_token(self, token: Secret) -> None:
        """Rewrite the credentials file: the running CLI uses ``token`` from its next request."""
        self._credentials.update(token)

    async def close(self) -> None:
        self._closing = self._permissions.closing = True
        self._permissions.deny_all("the session is closing")
        await self._permissions.settled(min(self._config.close_timeout, 1.0))
        if self._channel is not None:
            self._channel.close()
        self._stop.set()
        self._credentials.arrived.set()
        if self._started:
            await self._stopped.wait()
        else:
            await self._shut_cli()
        if self._channel is not None:
            fail_remaining(self._channel, RunnerClosed("the runner closed before this turn"))
        if self.stand_in is not None:
            await self.stand_in.close()


__all__ = ["BERTH_MODES", "PLACEHOLDER_TOKEN", "SdkRunner", "SdkRunnerConfig"]
