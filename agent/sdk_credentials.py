"""How the Claude Code CLI gets its credential and environment, for the SDK runner.

The access token reaches the CLI only through the credentials file
(``agent.credentials``), which the CLI re-reads whenever it changes; never
through its environment (``CLAUDE_CODE_OAUTH_TOKEN`` would pin the first
token for the CLI's lifetime, so an inherited one is blanked). A CLI started
with no credentials at all sends its next turn without the OAuth beta, so
with no token yet a placeholder is written and the CLI started anyway;
prompts are held back until a real token is there. The model's tools get
late environment (a warm-pool CLI's GitHub token) from a private file the
CLI sources before each Bash command (``CLAUDE_ENV_FILE``). Details and the
experiments behind them: ``docs/credentials.md``, ``docs/claude-code.md``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from actors.secret import Secret
from agent.credentials import default_credentials_path, read_access_token, write_access_token

log = logging.getLogger(__name__)

# Credentials the CLI prefers to a claude.ai login in its credentials file.
OVERRIDING_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
#: Written so that a CLI started before its session has a token counts as
#: logged in (and later sends the real token with the OAuth beta); never
#: sent: prompts wait for a real token.
PLACEHOLDER_TOKEN = "berth-placeholder-no-token-yet"


class CliCredentials:
    """The CLI's credentials file, the token in it, and what the CLI's environment adds."""

    def __init__(
        self,
        token: Secret | None,
        env: Mapping[str, str],
        config_dir: str | None,
        tool_env_file: str | None,
        group: int | None = None,
    ) -> None:
        self.token = token
        self._env = dict(env)
        self._config_dir = config_dir
        self._tool_env_file = tool_env_file
        #: The tool user's gid when the CLI runs as its own user (``agent.isolation``):
        #: the files it reads are then root's, readable by that group.
        self._group = group
        self.arrived = asyncio.Event()

    def cli_env(self) -> dict[str, str]:
        """What the runner adds to the environment the CLI inherits."""
        env = dict(self._env)
        if self._tool_env_file:
            env["CLAUDE_ENV_FILE"] = self._tool_env_file
        if self._config_dir:
            env["CLAUDE_CONFIG_DIR"] = self._config_dir
        env["CLAUDE_CODE_OAUTH_TOKEN"] = ""  # see the module docstring
        return env

    @property
    def path(self) -> Path:
        return default_credentials_path({**os.environ, **self.cli_env()})

    def overriding(self) -> str | None:
        """The name of an environment credential the CLI would use instead of the file."""
        env = {**os.environ, **self.cli_env()}
        return next((name for name in OVERRIDING_ENV if env.get(name)), None)

    def write(self) -> None:
        """Put the current token in the file, unless it is there already."""
        if not self.token:
            return
        token = self.token.reveal()
        if read_access_token(self.path) != token:
            write_access_token(self.path, token, None, group=self._group)

    def prepare(self) -> None:
        """Before a CLI starts: the token, or else a placeholder, in the file."""
        try:
            self.write()
            if not self.token and not read_access_token(self.path):
                write_access_token(self.path, PLACEHOLDER_TOKEN, None, group=self._group)
        except OSError as exc:
            log.error("cannot write the Claude credentials file: %s", exc)
        overriding = self.overriding()
        if overriding and self.token:
            log.warning("%s is set: Claude Code will use it, not the pushed access token", overriding)

    def update(self, token: Secret) -> None:
        """A pushed token: the running CLI uses it from its next request."""
        self.token = token
        try:
            self.write()
        finally:
            self.arrived.set()

    def usable(self) -> bool:
        if self.token or self.overriding():
            return True
        token = read_access_token(self.path)
        return bool(token) and token != PLACEHOLDER_TOKEN

    async def wait_usable(self, timeout: float, stop: Callable[[], bool]) -> bool:
        """Whether a prompt may go to the CLI, waiting up to ``timeout`` for a token."""
        deadline = time.monotonic() + timeout
        while not self.usable():
            left = deadline - time.monotonic()
            if left <= 0 or stop():
                return False
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), min(left, 0.5))
            except TimeoutError:
                pass  # the agent may have written the file itself: look again
        return True

    def set_tool_env(self, env: Mapping[str, Secret]) -> None:
        """Environment for the model's Bash commands from the next one on (a 0600 file)."""
        if not self._tool_env_file:
            raise RuntimeError("this runner has no tool environment file")
        path = Path(self._tool_env_file)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = "".join(f"export {name}={shlex.quote(value.reveal())}\n" for name, value in env.items())
        fd, tmp = tempfile.mkstemp(prefix=".tool-env.", dir=path.parent)
        try:
            if self._group is None:
                os.fchmod(fd, 0o600)
            else:  # the CLI runs as the tool user: root's file, readable by that group only
                os.fchown(fd, -1, self._group)
                os.fchmod(fd, 0o640)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
