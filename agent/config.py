"""The agent's configuration: environment for settings, files for secrets.

Secrets come from files in the secrets directory (mounted read-only into
the container), never from the environment, which every tool the model runs
would inherit. ``BERTH_SESSION_TOKEN`` and ``CLAUDE_CODE_OAUTH_TOKEN`` are
read only as a development fallback when the file is missing. The session
token is re-read on every connection attempt, so a rotated file is used on
the next reconnect.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from actors.secret import Secret
from agent.connection import ConnectionConfig
from agent.credentials import default_credentials_path
from agent.isolation import TOOL_CONFIG_DIR, ToolUser
from transport.protocol import PERMISSION_MODES, PermissionMode

RunnerKind = Literal["builtin", "sdk"]


class ConfigError(ValueError):
    """The agent cannot start with this environment."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def _read_secret(path: Path) -> Secret | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return Secret(value) if value else None


@dataclass(frozen=True)
class AgentConfig:
    session_id: str
    server_url: str
    secrets_dir: Path = Path("/run/berth/secrets")
    workspace: Path = Path("/workspace")
    repo_url: str | None = None
    branch: str | None = None
    runner: RunnerKind = "builtin"
    permission_mode: PermissionMode = "normal"
    model: str | None = None
    cli_path: str | None = None
    credentials_path: Path = field(default_factory=default_credentials_path)
    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    token_delay: float = 0.0
    approval_timeout: float = 300.0
    close_timeout: float = 5.0
    drain_timeout: float = 5.0
    orphan_timeout: float = 0.0
    #: SDK runner: how long a prompt waits for a first Claude token before failing.
    token_wait: float = 5.0
    #: SDK runner: park an idle Claude Code CLI after this many seconds (0: never).
    park_after: float = 0.0
    #: SDK runner: start Claude Code so that it may be switched to ``dangerous``.
    allow_dangerous: bool = False
    fallback_session_token: Secret | None = None
    fallback_oauth_token: Secret | None = None
    fallback_github_token: Secret | None = None
    #: A manager session (BERTH_MANAGER=1): its tools call the REST API with the manager token.
    manager: bool = False
    api_timeout: float = 30.0
    #: Who the Claude CLI and the model's tools run as (None: as the agent).
    tool_user: ToolUser | None = None
    #: The server's limit on one agent message (``BerthConfig.max_agent_frame_bytes``).
    max_frame_bytes: int = 8 * 1024 * 1024

    def session_token(self) -> str:
        """The token the agent authenticates with; read afresh on every call."""
        secret = _read_secret(self.secrets_dir / "session-token") or self.fallback_session_token
        if secret is None:
            raise ConfigError(f"no session token in {self.secrets_dir / 'session-token'}")
        return secret.reveal()

    def oauth_token(self) -> Secret | None:
        return _read_secret(self.secrets_dir / "oauth-token") or self.fallback_oauth_token

    def manager_token(self) -> str:
        """The manager token, read afresh from its secret file on every call."""
        secret = _read_secret(self.secrets_dir / "manager-token")
        if secret is None:
            raise ConfigError(f"no manager token in {self.secrets_dir / 'manager-token'}")
        return secret.reveal()

    def github_token(self) -> Secret | None:
        return _read_secret(self.secrets_dir / "github-token") or self.fallback_github_token

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentConfig:
        source: Mapping[str, str] = os.environ if env is None else env
        session_id = source.get("BERTH_SESSION_ID", "").strip()
        server_url = source.get("BERTH_SERVER_URL", "").strip()
        if not session_id:
            raise ConfigError("BERTH_SESSION_ID is not set")
        if not server_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"BERTH_SERVER_URL must be a ws:// or wss:// URL, not {server_url!r}")
        runner = source.get("BERTH_RUNNER", "builtin") or "builtin"
        if runner not in ("builtin", "sdk"):
            raise ConfigError(f"BERTH_RUNNER must be 'builtin' or 'sdk', not {runner!r}")
        mode = source.get("BERTH_PERMISSION_MODE", "normal") or "normal"
        if mode not in PERMISSION_MODES:
            raise ConfigError(f"BERTH_PERMISSION_MODE must be one of {PERMISSION_MODES}, not {mode!r}")
        fallback_session = source.get("BERTH_SESSION_TOKEN")
        fallback_oauth = source.get("CLAUDE_CODE_OAUTH_TOKEN")
        try:
            tool_user = ToolUser.parse(source["BERTH_TOOL_USER"]) if source.get("BERTH_TOOL_USER") else None
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if source.get("CLAUDE_CONFIG_DIR") or tool_user is None:
            credentials_path = default_credentials_path(dict(source))
        else:  # the CLI's config must not live in the tools' home, where they could swap it
            credentials_path = TOOL_CONFIG_DIR / ".credentials.json"
        connection = ConnectionConfig(
            backoff_base=_float(source, "BERTH_BACKOFF_BASE", 0.2),
            backoff_cap=_float(source, "BERTH_BACKOFF_CAP", 10.0),
            coalesce_window=_float(source, "BERTH_COALESCE_MS", 3.0) / 1000,
            ack_delay=_float(source, "BERTH_ACK_DELAY_MS", 20.0) / 1000,
            ping_interval=_float(source, "BERTH_PING_INTERVAL", 60.0),
        )
        return cls(
            session_id=session_id,
            server_url=server_url,
            secrets_dir=Path(source.get("BERTH_SECRETS_DIR") or "/run/berth/secrets"),
            workspace=Path(source.get("BERTH_WORKSPACE") or "/workspace"),
            repo_url=source.get("BERTH_REPO_URL") or None,
            branch=source.get("BERTH_BRANCH") or None,
            runner=cast(RunnerKind, runner),
            permission_mode=cast(PermissionMode, mode),
            model=source.get("BERTH_MODEL") or None,
            cli_path=source.get("BERTH_CLI_PATH") or None,
            credentials_path=credentials_path,
            tool_user=tool_user,
            connection=connection,
            token_delay=_float(source, "BERTH_TOKEN_DELAY", 0.0),
            approval_timeout=_float(source, "BERTH_APPROVAL_TIMEOUT", 300.0),
            close_timeout=_float(source, "BERTH_CLOSE_TIMEOUT", 5.0),
            orphan_timeout=_float(source, "BERTH_ORPHAN_TIMEOUT", 0.0),
            token_wait=_float(source, "BERTH_TOKEN_WAIT", 5.0),
            park_after=_float(source, "BERTH_PARK_AFTER", 0.0),
            allow_dangerous=source.get("BERTH_ALLOW_DANGEROUS", "") in ("1", "true", "yes"),
            max_frame_bytes=int(_float(source, "BERTH_MAX_FRAME_BYTES", 8 * 1024 * 1024)),
            fallback_session_token=Secret(fallback_session) if fallback_session else None,
            fallback_oauth_token=Secret(fallback_oauth) if fallback_oauth else None,
            fallback_github_token=Secret(source["BERTH_GITHUB_TOKEN"])
            if source.get("BERTH_GITHUB_TOKEN")
            else None,
            manager=source.get("BERTH_MANAGER") == "1",
            api_timeout=_float(source, "BERTH_API_TIMEOUT", 30.0),
        )
