"""Pool mode: a pre-started agent waits for the server to give it a session.

The container starts with ``BERTH_POOL_SLOT`` and a ``pool-token`` secret
instead of a session. The agent connects on ``/agent/pool/<slot>`` and waits
for an ``assign`` frame carrying the session id and its secrets; it keeps the
assignment in a private file (so a restarted worker resumes the same
session), closes the pool connection and becomes that session's agent.
With the SDK runner it starts Claude Code first (``WarmRunner``), warms it
with turns answered on loopback (when the Messages API is a configured
one), and takes the slot only then, so a claimed session's first prompt
goes straight to a running, warm CLI.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec

from actors.secret import Secret
from agent.connection import AgentConnection, ConnectionConfig
from agent.reconnect import CloseInfo
from transport.protocol import Assign, ServerToAgent, Shutdown

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.runner import Runner

log = logging.getLogger(__name__)


def assignment_path(env: Mapping[str, str]) -> Path:
    """Beside the secrets when tools run as their own user (their home is theirs to change)."""
    if env.get("BERTH_ASSIGNMENT_FILE"):
        return Path(env["BERTH_ASSIGNMENT_FILE"])
    if env.get("BERTH_TOOL_USER"):
        return secrets_dir(env).parent / "assignment.json"
    return Path(env.get("HOME") or Path.home()) / ".berth" / "assignment.json"


def secrets_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("BERTH_SECRETS_DIR") or "/run/berth/secrets")


def load_assignment(path: Path) -> Assign | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=Assign)
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("ignoring an unreadable assignment file: %s", type(exc).__name__)
        return None


def save_assignment(path: Path, assignment: Assign) -> None:
    """Private (0600) and atomic: it holds the session's secrets."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".assignment.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(msgspec.json.encode(assignment))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def wait_for_assignment(
    server_url: str, slot: str, token: Secret, stop: threading.Event, config: ConnectionConfig | None = None
) -> Assign | None:
    """Block until the server assigns a session (None: the slot is gone or we were stopped)."""
    received: list[Assign] = []
    done = threading.Event()

    def on_frame(frame: ServerToAgent) -> None:
        if isinstance(frame, Assign):
            received.append(frame)
            done.set()
        elif isinstance(frame, Shutdown):
            done.set()

    def on_stopped(info: CloseInfo) -> None:
        log.info("the pool slot was closed (%s %s)", info.code, info.reason)
        done.set()

    url = f"{server_url.rstrip('/')}/agent/pool/{quote(slot, safe='')}"
    connection = AgentConnection(url, token.reveal, on_frame, config, on_stopped=on_stopped)
    connection.start()
    while not done.wait(0.2) and not stop.is_set():
        pass
    connection.close(timeout=2, reason="assigned" if received else "agent exit")
    return received[0] if received else None


def assigned_env(env: Mapping[str, str], assignment: Assign) -> dict[str, str]:
    """The environment the session agent would have had on a cold start.

    Secrets go in as the development fallbacks, in this mapping only: they are
    never put into ``os.environ``, which the model's tools would inherit.
    """
    result = dict(env)
    result.pop("BERTH_POOL_SLOT", None)
    result["BERTH_SESSION_ID"] = assignment.session_id
    result["BERTH_SESSION_TOKEN"] = assignment.session_token
    result["BERTH_PERMISSION_MODE"] = assignment.permission_mode
    optional = {
        "CLAUDE_CODE_OAUTH_TOKEN": assignment.oauth_token,
        "BERTH_GITHUB_TOKEN": assignment.github_token,
        "BERTH_REPO_URL": assignment.repo_url,
        "BERTH_BRANCH": assignment.branch,
        "BERTH_MODEL": assignment.model,
        "BERTH_RUNNER": assignment.runner,
    }
    result.update({key: value for key, value in optional.items() if value})
    return result


def pool_token(env: Mapping[str, str]) -> Secret | None:
    path = secrets_dir(env) / "pool-token"
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Secret(value) if value else None


#: Environment under which the CLI reaches its API in a way the stand-in does
#: not copy (a proxy, a unix socket, another provider): no stand-in then.
_NO_STAND_IN = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "ANTHROPIC_UNIX_SOCKET",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
)


def stand_in_fits(env: Mapping[str, str]) -> bool:
    """Whether a pooled CLI may talk to a loopback stand-in of its Messages API.

    Only with a configured base URL (``claude_api_base_url``): the CLI then
    treats its API as a custom endpoint anyway, and a loopback URL changes
    nothing it sends. Pointed away from Anthropic's own API, the CLI would
    behave as for a custom endpoint for its whole life (other betas, no
    managed settings or policy limits), so it is not, and is not warmed.
    """
    return bool(env.get("ANTHROPIC_BASE_URL")) and not any(env.get(name) for name in _NO_STAND_IN)


def warm_up_turns(env: Mapping[str, str]) -> int:
    """``BERTH_WARM_UP_TURNS`` (the server's ``claude_warm_up_turns``); 0: no warm-up."""
    from agent.sdk_runner import WARM_UP_TURNS  # the SDK is imported only where it runs

    value = env.get("BERTH_WARM_UP_TURNS", "").strip()
    return int(value) if value.isdigit() else WARM_UP_TURNS


def keep_warm_interval(env: Mapping[str, str]) -> float:
    """``BERTH_KEEP_WARM_INTERVAL`` (the server's ``claude_keep_warm_interval``); 0: never."""
    from agent.sdk_runner import KEEP_WARM_INTERVAL

    try:
        value = float(env.get("BERTH_KEEP_WARM_INTERVAL", "").strip())
    except ValueError:
        return KEEP_WARM_INTERVAL
    return value if value >= 0 else KEEP_WARM_INTERVAL


class WarmRunner:
    """A pooled container's Claude Code, started before the container has a session.

    Everything the CLI needs at spawn is the same for every session of this
    server (image, workspace path, config dir, environment), so the CLI is
    started and connected first and the pool slot offered only then. What
    only the session knows arrives at claim time, late enough for the CLI:
    the token goes into the credentials file (the CLI re-reads it before each
    request; until then it holds a placeholder), the API stand-in starts
    forwarding (``agent.api_standin``), a GitHub token into the file
    the CLI sources before each Bash command (``CLAUDE_ENV_FILE``), and the
    permission mode and model are switched over the control protocol. A session with a repository
    does not take it: the CLI reads the workspace (git state, CLAUDE.md,
    project settings) when it starts, so it is started after the clone.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        from agent.app import make_runner
        from agent.config import AgentConfig
        from agent.sdk_runner import SdkRunner

        # The pool's own identity stands in for the session's until the claim.
        config = AgentConfig.from_env({**env, "BERTH_SESSION_ID": env.get("BERTH_POOL_SLOT", "pool")})
        self.loop = asyncio.new_event_loop()
        runner = make_runner(config, token=None)
        assert isinstance(runner, SdkRunner)
        self.runner = runner
        self.died = False
        self._env = dict(env)

    def start(self) -> bool:
        """Start the CLI (warmed, where a stand-in fits); False (logged) if it cannot start."""

        async def starting() -> None:
            from agent.api_standin import ApiStandIn

            turns = warm_up_turns(self._env)
            if turns and stand_in_fits(self._env):
                self.runner.stand_in = await ApiStandIn().start()
            await self.runner.start()
            if self.runner.stand_in is not None and not await self.runner.warm_up(turns):
                log.warning("the pooled Claude Code is not warm: its first prompt will cost more")

        try:
            self.loop.run_until_complete(starting())
        except Exception as exc:
            log.error("the warm Claude Code could not start: %s", exc)
            return False
        return True

    def wait(self, assignment: Callable[[], Assign | None], stop: threading.Event) -> Assign | None:
        """Run the blocking wait for an assignment while the runner's loop runs.

        A warmed CLI is kept warm meanwhile (``_keep_warm``). If the CLI dies,
        or a keep-warm turn is not rewound, the wait is stopped (``died`` is
        set): a slot must not be claimed for a CLI that is gone or whose
        conversation may hold a warm-up turn.
        """

        async def waiting() -> Assign | None:
            task = asyncio.ensure_future(asyncio.to_thread(assignment))
            claimed = asyncio.Event()
            keeper = asyncio.ensure_future(self._keep_warm(claimed))
            ended = self.runner.cli_ended()
            waits: set[asyncio.Future[Any]] = {task, keeper} if ended is None else {task, keeper, ended}
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            claimed.set()
            # A keep-warm turn in flight is finished and rewound before the claim goes on.
            if task not in done or not await keeper:
                log.error("the warm Claude Code %s while waiting for a session", self._why(ended))
                self.died = True
                stop.set()
            result = await task  # returns soon after ``stop``
            return None if self.died else result

        return self.loop.run_until_complete(waiting())

    async def _keep_warm(self, claimed: asyncio.Event) -> bool:
        """A warm-up turn every ``keep_warm_interval`` until the claim; False if one failed."""
        interval = keep_warm_interval(self._env)
        if self.runner.stand_in is None or not interval:
            await claimed.wait()
            return True
        while True:
            try:
                await asyncio.wait_for(claimed.wait(), interval)
                return True
            except TimeoutError:
                pass
            if not await self.runner.keep_warm():
                return False

    def _why(self, ended: asyncio.Future[None] | None) -> str:
        return "exited" if ended is not None and ended.done() else "could not rewind a keep-warm turn"

    def fits(self, config: AgentConfig) -> bool:
        return config.runner == "sdk" and not config.repo_url and not config.manager

    def adopt(self, config: AgentConfig) -> Runner:
        """Give the running CLI the session's token, permission mode and model."""
        runner = self.runner

        async def configure() -> None:
            if runner.stand_in is not None:
                runner.stand_in.forward_to(
                    self._env.get("ANTHROPIC_BASE_URL"), self._env.get("NODE_EXTRA_CA_CERTS")
                )
            token = config.oauth_token()
            if token is not None:
                await runner.update_token(token)
            github = config.github_token()
            if github is not None:  # a cold session has these in the CLI's environment
                runner.set_tool_env({"GH_TOKEN": github, "GITHUB_TOKEN": github})
            if config.permission_mode != "normal":
                await runner.set_permission_mode(config.permission_mode)
            if config.model:
                await runner.set_model(config.model)

        self.loop.run_until_complete(configure())
        return runner

    def close(self) -> None:
        self.loop.run_until_complete(self.runner.close())
        self.loop.close()
