"""The session agent: connection, set-up, runner and shutdown wired together.

Threads: the main thread runs set-up and then the runner's event loop; the
connection's reader thread turns server frames into channel pushes (user
messages) or tasks on that loop (everything else); the connection's writer
thread sends. Every way to end (a ``shutdown`` frame, SIGTERM or SIGINT,
the server closing for good, the runner dying) goes through
``request_shutdown`` and then one orderly close: the runner is closed
(pending requests denied, channel ended, CLI stopped), queued frames are
flushed, and the socket is closed with 1000.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from actors.secret import Secret
from agent.builtin_runner import BuiltinConfig, BuiltinRunner
from agent.channel import ChannelClosed, InputChannel
from agent.config import AgentConfig
from agent.connection import AgentConnection, ConnectionStopped
from agent.credentials import write_access_token
from agent.frame_size import fit
from agent.manager_tools import (
    MANAGER_PROMPT,
    SERVER_NAME,
    ManagerApi,
    allowed_tools,
    http_base,
    sdk_server,
)
from agent.reconnect import CloseInfo, agent_url
from agent.runner import Runner, RunnerClosed, UserInput, fail_remaining
from agent.workspace import CloneFailed, clone_repository
from transport.protocol import (
    AgentError,
    AgentStatus,
    AgentToServer,
    ApprovalResponse,
    GetModels,
    Interrupt,
    ProtocolError,
    QuestionResponse,
    Ready,
    Result,
    ServerToAgent,
    SetModel,
    SetupProgress,
    Shutdown,
    StatusUpdate,
    TokenUpdate,
    UpdateSettings,
    UserMessage,
)

log = logging.getLogger(__name__)

Call = Callable[[], Awaitable[None]]


def manager_api(config: AgentConfig) -> ManagerApi | None:
    if not config.manager:
        return None
    base = http_base(config.server_url)
    return ManagerApi(base, config.session_id, config.manager_token, config.api_timeout)


def _import_sdk() -> None:
    try:
        import claude_agent_sdk  # noqa: F401
    except ImportError:
        pass  # the runner reports it, naming the fix


def make_runner(config: AgentConfig, token: Secret | None) -> Runner:
    api = manager_api(config)
    if config.runner == "sdk":
        from agent.sdk_runner import SdkRunner, SdkRunnerConfig

        # The SDK takes ~0.35 s to import: do it while the agent connects and
        # prepares the workspace, not after, on the way to the CLI's start.
        threading.Thread(target=_import_sdk, name="berth-import-sdk", daemon=True).start()

        github = config.github_token()
        env = {"GH_TOKEN": github.reveal(), "GITHUB_TOKEN": github.reveal()} if github else {}
        sdk_config = SdkRunnerConfig(
            cli_path=config.cli_path,
            cwd=str(config.workspace),
            permission_mode=config.permission_mode,
            model=config.model,
            approval_timeout=config.approval_timeout,
            close_timeout=config.close_timeout,
            env=env,
            claude_config_dir=str(config.credentials_path.parent),
            token_wait=config.token_wait,
            park_after=config.park_after,
            # Claude Code refuses to start with bypassing allowed as root; as the tool user it is not.
            allow_dangerous=config.allow_dangerous and (os.geteuid() != 0 or config.tool_user is not None),
            tool_env_file=str(_tool_env_file(config)),
            tool_user=config.tool_user,
        )
        if api is not None:  # a manager: its tools as an in-process MCP server
            sdk_config = replace(
                sdk_config,
                mcp_servers={SERVER_NAME: sdk_server(api)},
                allowed_tools=tuple(allowed_tools()),
                system_prompt_append=MANAGER_PROMPT,
            )
        return SdkRunner(sdk_config, token=token)
    builtin = BuiltinConfig(
        token_delay=config.token_delay,
        approval_timeout=config.approval_timeout,
        permission_mode=config.permission_mode,
    )
    if config.model:
        builtin = replace(builtin, model=config.model)
    return BuiltinRunner(builtin, manager_api=api)


def _tool_env_file(config: AgentConfig) -> Path:
    """Beside the CLI's credentials when the CLI runs as the tool user (a directory
    root owns and the tools cannot swap), else in the agent's home."""
    if config.tool_user is not None:
        return config.credentials_path.parent / "tool-env.sh"
    return config.credentials_path.parent.parent / ".berth" / "tool-env.sh"


class Agent:
    """One session agent process; ``run()`` returns the exit code."""

    def __init__(self, config: AgentConfig, runner: Runner | None = None) -> None:
        self._config = config
        self._channel: InputChannel[UserInput] = InputChannel()
        self._token = config.oauth_token()
        self._runner = runner or make_runner(config, self._token)
        self._conn = AgentConnection(
            agent_url(config.server_url, config.session_id),
            config.session_token,
            self._on_frame,
            config.connection,
            on_connected=self._on_connected,
            on_stopped=self._on_stopped,
        )
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._deferred: list[Call] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._shutdown = threading.Event()
        self._exit_code = 0
        self._ready_sent = False
        self._status: AgentStatus | None = None

    # ------------------------------------------------------------ lifecycle

    def run(self, loop: asyncio.AbstractEventLoop | None = None) -> int:
        """Serve the session; on ``loop`` if given (a pooled agent's runner lives there)."""
        previous = self._install_signal_handlers()
        self._conn.start()
        if self._config.orphan_timeout > 0:
            threading.Thread(target=self._watch_for_orphaning, name="berth-orphan-watch", daemon=True).start()
        try:
            if self._token:
                self._write_credentials(self._token)
            if self._prepare_workspace() and not self._shutdown.is_set():
                if loop is None:
                    asyncio.run(self._serve())
                else:
                    loop.run_until_complete(self._serve())
        finally:
            self._conn.close(timeout=self._config.drain_timeout)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        log.info("agent exiting with code %d", self._exit_code)
        return self._exit_code

    def request_shutdown(self, reason: str, exit_code: int = 0) -> None:
        """Start the orderly close; thread-safe, idempotent (the first reason wins)."""
        with self._lock:
            if self._shutdown.is_set():
                return
            self._shutdown.set()
            self._exit_code = exit_code
            loop, stop = self._loop, self._stop_requested
        log.info("shutting down: %s", reason)
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass  # the loop has just finished

    def _prepare_workspace(self) -> bool:
        workspace = self._config.workspace
        tool_user = self._config.tool_user
        try:
            if not self._config.repo_url:
                workspace.mkdir(parents=True, exist_ok=True)
                if tool_user is not None:
                    tool_user.own(workspace)
                return True
            clone_repository(
                self._config.repo_url,
                self._config.branch,
                workspace,
                progress=lambda message: self.emit(SetupProgress(message=message)),
                cancel=self._shutdown,
                github_token=self._config.github_token(),
                run_as=tool_user,
            )
        except (CloneFailed, OSError) as exc:
            if self._shutdown.is_set():
                return False
            log.error("%s", exc)
            self.emit(AgentError(message=str(exc), fatal=True))
            self._exit_code = 1
            return False
        return True

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        with self._lock:
            self._loop, self._stop_requested = loop, stop
            deferred, self._deferred = self._deferred, []
            if self._shutdown.is_set():
                stop.set()
        for call in deferred:  # first, so a token pushed early is used by the first CLI spawn
            self._spawn(call)
        run_task = asyncio.create_task(self._runner.run(self._channel, self))
        stop_task = asyncio.create_task(stop.wait())
        ready_task = asyncio.create_task(self._runner.wait_ready())
        await asyncio.wait({run_task, stop_task, ready_task}, return_when=asyncio.FIRST_COMPLETED)
        if ready_task.done() and not ready_task.exception() and not stop.is_set():
            # Only now: an idle session must take a prompt at once.
            self.emit(Ready())
            self._ready_sent, self._status = True, "idle"
            await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        ready_task.cancel()
        stop_task.cancel()
        bound = self._config.close_timeout * 3 + 1
        try:
            await asyncio.wait_for(self._runner.close(), bound)
        except Exception:
            log.exception("closing the runner failed")
        if not (await asyncio.wait({run_task}, timeout=bound))[0]:
            run_task.cancel()
            await asyncio.wait({run_task}, timeout=1)
        with self._lock:
            self._loop = self._stop_requested = None
        for task in list(self._tasks):
            task.cancel()
        self._report_end(run_task)
        fail_remaining(self._channel, RunnerClosed("the agent is shutting down"))

    def _report_end(self, run_task: asyncio.Task[None]) -> None:
        error = run_task.exception() if run_task.done() and not run_task.cancelled() else None
        if error is None and not self._shutdown.is_set():
            error = RuntimeError("the runner stopped on its own")
        if error is not None:
            log.error("runner failed: %s", error)
            self.emit(AgentError(message=f"runner failed: {error}", fatal=True))
            self._exit_code = 1
            self._shutdown.set()

    # ------------------------------------------------------------ RunnerHost

    def emit(self, frame: AgentToServer) -> None:
        """Queue a frame for the server (thread-safe, never blocks)."""
        if isinstance(frame, StatusUpdate):
            self._status = frame.status
        elif isinstance(frame, Result):
            self._status = "idle"
        frame = fit(frame, self._config.max_frame_bytes)  # the server would refuse it, not store it
        try:
            self._conn.send(frame)
        except ConnectionStopped:
            log.debug("dropping a %s frame: the connection is closed", type(frame).__name__)

    # ------------------------------------------------------ server frames

    def _on_frame(self, frame: ServerToAgent) -> None:
        """Runs on the connection's reader thread: never blocks on the runner."""
        runner = self._runner
        match frame:
            case UserMessage(content=content, id=message_id):
                try:
                    self._channel.push(UserInput(content, message_id))
                except ChannelClosed:
                    log.info("user message dropped: the agent is shutting down")
            case TokenUpdate(token=token):
                self._apply_token(Secret(token))
            case Shutdown(reason=reason):
                self.request_shutdown(f"the server asked: {reason or 'shutdown'}")
            case ApprovalResponse(approval_id=approval_id, allow=allow, message=message):
                self._call(lambda: runner.approval_response(approval_id, allow, message))
            case QuestionResponse(question_id=question_id, answers=answers):
                self._call(lambda: runner.question_response(question_id, answers))
            case Interrupt():
                self._call(runner.interrupt)
            case SetModel(model=model):
                self._call(lambda: runner.set_model(model))
            case GetModels():
                self._call(runner.get_models)
            case UpdateSettings(permission_mode=mode) if mode is not None:
                self._call(lambda: runner.set_permission_mode(mode))
            case UpdateSettings():
                pass  # a rename is the server's business
            case ProtocolError(message=message):
                log.warning("the server could not use a frame we sent: %s", message)
            case _:
                log.warning("ignoring an unhandled %s frame", type(frame).__name__)

    def _apply_token(self, token: Secret) -> None:
        self._token = token
        self._write_credentials(token)
        log.info("Claude access token updated (%s)", token.masked)
        self._call(lambda: self._runner.update_token(token))

    def _write_credentials(self, token: Secret) -> None:
        try:
            tool_user = self._config.tool_user
            group = tool_user.gid if tool_user is not None else None
            write_access_token(self._config.credentials_path, token.reveal(), None, group=group)
        except OSError as exc:
            log.error("cannot write the Claude credentials file: %s", exc)
            self.emit(AgentError(message=f"cannot write the Claude credentials file: {exc}"))

    def _call(self, call: Call) -> None:
        """Run a runner control call as a task on the runner's loop."""
        with self._lock:
            loop = self._loop
            if loop is None:
                if not self._shutdown.is_set():
                    self._deferred.append(call)
                return
        try:
            loop.call_soon_threadsafe(self._spawn, call)
        except RuntimeError:
            log.debug("control call dropped: the runner loop has finished")

    def _spawn(self, call: Call) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, call: Call) -> None:
        try:
            await call()
        except RunnerClosed as exc:
            log.info("control call skipped: %s", exc)
        except Exception as exc:
            log.warning("control call failed: %s", exc)
            self.emit(AgentError(message=f"command failed: {exc}"))

    # --------------------------------------------------- connection events

    def _on_connected(self, count: int) -> None:
        if count > 1 and self._ready_sent and self._status is not None:
            self.emit(StatusUpdate(status=self._status))

    def _on_stopped(self, info: CloseInfo) -> None:
        """The server ended the session (exit 0) or refused this agent (exit 1)."""
        code = 0 if info.code in (1000, 4003, 4004) else 1
        self.request_shutdown(f"the server closed the connection ({info.code} {info.reason})", code)

    def _watch_for_orphaning(self) -> None:
        """The dead-man lifetime: with no server for ``orphan_timeout`` the agent
        exits (1), so a container whose server is gone does not live forever."""
        limit = self._config.orphan_timeout
        while not self._shutdown.wait(min(limit / 4, 5.0)):
            if self._conn.disconnected_for() >= limit:
                self.request_shutdown(f"no server for {limit:g} s", exit_code=1)
                return

    # --------------------------------------------------------------- signals

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.request_shutdown(f"signal {signal.Signals(signum).name}")
