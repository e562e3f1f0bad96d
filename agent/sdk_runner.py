"""The Claude Agent SDK runner: one Claude Code CLI process per session.

User messages reach the CLI through the SDK's streaming input, an async
generator that takes the next message from the channel only once the
previous turn has its ``result``; a message that arrives mid-turn waits in
the channel, so there is never a second concurrent turn.

Tool approvals and ``AskUserQuestion`` go through the SDK's ``can_use_tool``
callback (``agent.sdk_permissions``). Closing denies whatever is pending
first (so the CLI is told, rather than left waiting on a request nobody will
answer), ends the channel, and stops the CLI within ``close_timeout``, after
which it is killed. ``claude-agent-sdk`` is imported lazily: it is an
optional extra, and ``agent`` must import without it.

The Claude access token reaches the CLI only through the credentials file
in its config dir (``agent.credentials``), which the CLI re-reads whenever
the file changes, so a pushed token is used from the CLI's next API request
on. It is never put in the CLI's environment: ``CLAUDE_CODE_OAUTH_TOKEN``
there would pin the first token for the CLI's lifetime (an inherited one is
blanked for the same reason). A CLI started with no credentials at all does
not send the OAuth beta header on its next turn, so with ``wait_for_token``
the runner waits for a token before starting the CLI. Details and the
experiments behind this: ``docs/credentials.md``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.secret import Secret
from agent.channel import InputChannel
from agent.credentials import default_credentials_path, read_access_token, write_access_token
from agent.runner import RunnerClosed, RunnerFailed, RunnerHost, TurnOutcome, UserInput, fail_remaining
from agent.sdk_permissions import PermissionBridge
from agent.sdk_relay import SDK_MODES, Relay, result_text
from transport.protocol import (
    AgentToServer,
    ModelInfo,
    ModelsList,
    PermissionMode,
    SessionInfoUpdate,
    StatusUpdate,
)

if TYPE_CHECKING:
    from claude_agent_sdk import (
        ClaudeAgentOptions,
        ClaudeSDKClient,
    )

log = logging.getLogger(__name__)

# Credentials the CLI prefers to a claude.ai login in its credentials file.
OVERRIDING_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")


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
    # Start the CLI only once there is a credential: a CLI started logged out
    # fails its first turn after a token arrives (no OAuth beta header on it).
    wait_for_token: bool = False
    #: In-process MCP servers (a manager's tools) and tools allowed without an approval.
    mcp_servers: Mapping[str, Any] = field(default_factory=dict)
    allowed_tools: tuple[str, ...] = ()


@dataclass
class _Turn:
    item: UserInput
    over: asyncio.Event = field(default_factory=asyncio.Event)


def _cli_process(client: ClaudeSDKClient) -> Any:
    """The CLI subprocess (SDK internals), so a CLI that ignores EOF can be killed."""
    return getattr(getattr(client, "_transport", None), "_process", None)


def _kill(process: Any) -> None:
    if process is not None and process.returncode is None:
        try:
            process.kill()
        except ProcessLookupError:
            pass


class SdkRunner:
    """Runs Claude Code through ``ClaudeSDKClient``."""

    def __init__(self, config: SdkRunnerConfig, token: Secret | None = None) -> None:
        self._config = config
        self._token = token
        self._mode: PermissionMode = config.permission_mode
        self._model = config.model
        self._host: RunnerHost | None = None
        self._channel: InputChannel[UserInput] | None = None
        self._client: ClaudeSDKClient | None = None
        self._process: Any = None
        self._relay: Relay | None = None
        self._ready: asyncio.Future[None] | None = None
        self._turn: _Turn | None = None
        self._models: list[ModelInfo] = []
        self._permissions = PermissionBridge(
            self._emit, config.approval_timeout, lambda: self._turn is not None
        )
        self._stop = asyncio.Event()
        self._token_arrived = asyncio.Event()
        self._stopped = asyncio.Event()
        self._started = False
        self._closing = False

    # ------------------------------------------------------------------ run

    async def run(self, channel: InputChannel[UserInput], host: RunnerHost) -> None:
        self._channel, self._host, self._started = channel, host, True
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
            from claude_agent_sdk import ClaudeSDKClient
        except ImportError:
            raise RunnerFailed(
                "the session image has no claude-agent-sdk: rebuild it with "
                "`BERTH_IMAGE_EXTRAS=sdk bash scripts/build-image.sh`, or use the built-in runner"
            ) from None

        if not await self._credentials_ready():
            return  # closed before there was a token to start with
        client = ClaudeSDKClient(self._options())
        self._client = client
        session = asyncio.ensure_future(self._session(client, channel))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({session, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            await self._teardown(client, session)
            self._client = None
        error = None if session.cancelled() else session.exception()
        if error is not None:
            failure = RunnerFailed(f"Claude Code failed: {error}")
            self._end_turn(failure)
            raise failure from error
        if not self._closing:
            failure = RunnerFailed("Claude Code exited unexpectedly")
            self._end_turn(failure)
            raise failure
        self._end_turn(RunnerClosed("the runner closed mid-turn"))

    async def _session(self, client: ClaudeSDKClient, channel: InputChannel[UserInput]) -> None:
        await client.connect(self._prompts(channel))
        self._process = _cli_process(client)
        info = await client.get_server_info() or {}
        self._models = [
            ModelInfo(
                value=str(m.get("value", "")),
                display_name=str(m.get("displayName", "")),
                description=str(m.get("description", "")),
            )
            for m in info.get("models") or []
            if isinstance(m, dict)
        ]
        self._relay = Relay(self._emit)
        self._ready_future().set_result(None)
        async for message in client.receive_messages():
            result = self._relay.handle(message)
            if result is not None:
                self._end_turn(TurnOutcome(result_text(result), result.is_error))

    async def _prompts(self, channel: InputChannel[UserInput]) -> AsyncIterator[dict[str, Any]]:
        """The SDK's streaming input: the next message only after the turn is over."""
        async for item in channel:
            if self._closing:
                item.fail(RunnerClosed("the runner is closing"))
                continue
            turn = _Turn(item)
            self._turn = turn
            self._emit(StatusUpdate(status="running"))
            yield {
                "type": "user",
                "message": {"role": "user", "content": item.content},
                "parent_tool_use_id": None,
                "session_id": "default",
            }
            await turn.over.wait()

    def _end_turn(self, outcome: TurnOutcome | BaseException) -> None:
        turn, self._turn = self._turn, None
        if turn is None:
            return
        if isinstance(outcome, TurnOutcome):
            turn.item.finish(outcome)
        else:
            turn.item.fail(outcome)
        turn.over.set()

    async def _teardown(self, client: ClaudeSDKClient, session: asyncio.Future[None]) -> None:
        """Stop the session task and the CLI, killing the CLI if it takes too long."""

        async def shut() -> None:
            if not session.done():
                session.cancel()
            await asyncio.gather(session, return_exceptions=True)
            await client.disconnect()

        closer = asyncio.ensure_future(shut())
        _, pending = await asyncio.wait({closer}, timeout=self._config.close_timeout)
        if pending:
            log.warning("Claude Code did not stop within %.1f s; killing it", self._config.close_timeout)
            _kill(self._process or _cli_process(client))
            _, pending = await asyncio.wait({closer}, timeout=self._config.close_timeout)
            if pending:
                log.error("the SDK did not finish disconnecting; abandoning it")
        _kill(self._process or _cli_process(client))

    # ----------------------------------------------------------- credentials

    def _cli_env(self) -> dict[str, str]:
        """What the runner adds to the environment the CLI inherits."""
        env = dict(self._config.env)
        if self._config.claude_config_dir:
            env["CLAUDE_CONFIG_DIR"] = self._config.claude_config_dir
        # An OAuth token in the CLI's environment would beat the credentials
        # file for the CLI's whole life; blank any the agent inherited.
        env["CLAUDE_CODE_OAUTH_TOKEN"] = ""
        return env

    def _credentials_path(self) -> Path:
        return default_credentials_path({**os.environ, **self._cli_env()})

    def _overriding_credential(self) -> str | None:
        """The name of an environment credential the CLI would use instead of the file."""
        env = {**os.environ, **self._cli_env()}
        return next((name for name in OVERRIDING_ENV if env.get(name)), None)

    def _write_credentials(self) -> None:
        """Put the current token in the CLI's credentials file, unless it is there already."""
        if not self._token:
            return
        path = self._credentials_path()
        token = self._token.reveal()
        if read_access_token(path) != token:
            write_access_token(path, token, None)

    async def _credentials_ready(self) -> bool:
        """With ``wait_for_token``, wait (for a token or a close) while the CLI
        would start with no credentials at all."""
        try:
            self._write_credentials()
        except OSError as exc:
            log.error("cannot write the Claude credentials file: %s", exc)
        overriding = self._overriding_credential()
        if overriding and self._token:
            log.warning("%s is set: Claude Code will use it, not the pushed access token", overriding)
        if not self._config.wait_for_token or self._token or overriding:
            return True
        if read_access_token(self._credentials_path()):
            return True
        log.info("waiting for a Claude access token before starting Claude Code")
        waits = {asyncio.ensure_future(self._token_arrived.wait()), asyncio.ensure_future(self._stop.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return not self._closing and self._token is not None

    # --------------------------------------------------------------- options

    def _options(self) -> ClaudeAgentOptions:
        from claude_agent_sdk import ClaudeAgentOptions

        env = self._cli_env()
        prompt: Any = {"type": "preset", "preset": "claude_code"}
        if self._config.system_prompt_append:
            prompt["append"] = self._config.system_prompt_append
        return ClaudeAgentOptions(
            cli_path=self._config.cli_path,
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
        )

    @staticmethod
    def _on_stderr(line: str) -> None:
        log.debug("claude: %s", line)

    def _emit(self, frame: AgentToServer) -> None:
        assert self._host is not None, "emit before run()"
        self._host.emit(frame)

    def _ready_future(self) -> asyncio.Future[None]:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
        return self._ready

    async def _connected(self) -> ClaudeSDKClient:
        await asyncio.shield(self._ready_future())
        if self._client is None:
            raise RunnerClosed("Claude Code is not running")
        return self._client

    # --------------------------------------------------------------- control

    async def approval_response(self, approval_id: str, allow: bool, message: str | None) -> None:
        self._permissions.approve(approval_id, allow, message)

    async def question_response(self, question_id: str, answers: dict[str, str]) -> None:
        self._permissions.answer(question_id, answers)

    async def interrupt(self) -> None:
        if self._turn is None:
            return
        self._permissions.deny_all("interrupted")
        client = await self._connected()
        await client.interrupt()

    async def set_model(self, model: str | None) -> None:
        client = await self._connected()
        await client.set_model(model)
        self._model = model
        if self._relay is not None:
            self._relay.note_model(model)
        self._emit(SessionInfoUpdate(model=model))

    async def get_models(self) -> None:
        await self._connected()
        self._emit(ModelsList(models=self._models))

    async def set_permission_mode(self, mode: PermissionMode) -> None:
        client = await self._connected()
        await client.set_permission_mode(SDK_MODES[mode])
        self._mode = mode
        if self._relay is not None:
            self._relay.note_mode(mode)
        self._emit(SessionInfoUpdate(permission_mode=mode))

    async def update_token(self, token: Secret) -> None:
        """Rewrite the credentials file: the running CLI uses ``token`` from its next request."""
        self._token = token
        try:
            self._write_credentials()
        finally:
            self._token_arrived.set()

    async def close(self) -> None:
        self._closing = self._permissions.closing = True
        self._permissions.deny_all("the session is closing")
        await self._permissions.settled(min(self._config.close_timeout, 1.0))
        if self._channel is not None:
            self._channel.close()
        self._stop.set()
        if self._started:
            await self._stopped.wait()
        if self._channel is not None:
            fail_remaining(self._channel, RunnerClosed("the runner closed before this turn"))
