"""The agents and environments a session can name: Berth's runners and configured environments.

Agents are Berth's two runners: ``claude-code`` (Claude Code through the
Claude Agent SDK) and ``builtin`` (the built-in runner, no network).
Environments are ``default`` (the server's own container settings) plus the
``[name]`` tables of the TOML file ``BerthConfig.sessions_api_environments``:

    [small]
    image = "berth-session:latest"
    memory = "2g"
    pids_limit = 256
    env = { LANG = "C.UTF-8" }

Berth's session core starts every container with the server's settings; an
environment's image, resources and extra environment are the session container's
(``docs/sessions-api.md``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any

from actors.config import BerthConfig
from actors.messages import ContainerSettings
from transport.v1.errors import ApiError


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    runner: str
    description: str
    default_model: str


AGENTS = {
    "claude-code": Agent(
        "claude-code", "Claude Code", "sdk", "Claude Code in the session container", "default"
    ),
    "builtin": Agent(
        "builtin", "Built-in runner", "builtin", "Berth's echo runner (no network)", "builtin-echo"
    ),
}


def default_agent(config: BerthConfig) -> Agent:
    return AGENTS["claude-code"] if config.agent_runner == "sdk" else AGENTS["builtin"]


def agent_named(agent_id: str) -> Agent:
    agent = AGENTS.get(agent_id)
    if agent is None:
        raise ApiError(404, f"no agent {agent_id!r}; Berth's agents are {', '.join(sorted(AGENTS))}")
    return agent


@dataclass(frozen=True)
class Environment:
    id: str
    image: str
    memory: str | None
    pids_limit: int
    env: tuple[tuple[str, str], ...]

    def same_container(self, other: Environment) -> bool:
        return (self.image, self.memory, self.pids_limit, dict(self.env)) == (
            other.image,
            other.memory,
            other.pids_limit,
            dict(other.env),
        )


def server_environment(config: BerthConfig) -> Environment:
    return Environment(
        "default", config.image, config.container_memory, config.container_pids_limit, config.container_env
    )


def load_environments(config: BerthConfig) -> dict[str, Environment]:
    """``default`` and the file's environments; ValueError naming a bad file or table."""
    default = server_environment(config)
    found = {"default": default}
    path = config.sessions_api_environments
    if path is None:
        return found
    try:
        tables = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"sessions_api_environments {path}: {exc}") from None
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ValueError(f"sessions_api_environments {path}: {name!r} must be a [table]")
        found[name] = _environment(path.name, name, table, default)
    return found


def _environment(source: str, name: str, table: dict[str, Any], default: Environment) -> Environment:
    unknown = set(table) - {"image", "memory", "pids_limit", "env"}
    if unknown:
        raise ValueError(
            f"{source}: [{name}] has unknown keys {sorted(unknown)}; use image, memory, pids_limit, env"
        )
    env = table.get("env", dict(default.env))
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ValueError(f"{source}: [{name}] env must be a table of strings")
    return Environment(
        name,
        str(table.get("image", default.image)),
        table.get("memory", default.memory),
        int(table.get("pids_limit", default.pids_limit)),
        tuple(sorted(env.items())),
    )


def usable_environment(environments: dict[str, Environment], environment_id: str) -> Environment:
    """The environment a new session runs in; ApiError when unknown."""
    environment = environments.get(environment_id)
    if environment is None:
        raise ApiError(
            404, f"no environment {environment_id!r}; configured: {', '.join(sorted(environments))}"
        )
    return environment


def container_settings(
    environments: dict[str, Environment], environment: Environment
) -> ContainerSettings | None:
    """The session's own container settings, or None for the server's."""
    if environment.same_container(environments["default"]):
        return None
    return ContainerSettings(environment.image, environment.memory, environment.pids_limit, environment.env)
