"""Keeping the model's tools away from the agent's secrets.

In a session container the agent runs as root (with a handful of
capabilities, see ``BerthConfig.container_capabilities``) and owns the
secrets: the session token and the OAuth token file the server pushed sit
under ``/run/berth``, a root-only directory (0700) holding the read-only
secrets mount. The Claude CLI, and so every tool the model runs, runs as the
*tool user* (``BERTH_TOOL_USER``, ``uid:gid``; 1000:1000 by default) through
``setpriv`` with no supplementary groups and ``no_new_privs`` (a setuid
binary cannot raise it again). The repository is cloned as the tool user
too, so the workspace is theirs.

The CLI still needs a fresh OAuth access token. The agent writes it to
``CLAUDE_CONFIG_DIR/.credentials.json`` in a config directory outside the
tool user's home that root owns, group tool user, mode 1770: the CLI can
create its own files there, but the sticky bit stops it from replacing or
deleting root's credentials file, which is mode 0640 (readable by the tool
group, replaced atomically on each push). So a tool can read the short-lived
access token the CLI itself uses, and nothing else: not the session token
(no way to speak as the agent), not the pushed token file, not the agent's
memory or environment (another uid).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: The CLI's config directory when tools run as their own user.
TOOL_CONFIG_DIR = Path("/run/berth-claude")
#: Directories everyone needs: never made root-only.
_SHARED_DIRS = tuple(Path(p) for p in ("/", "/run", "/tmp", "/var", "/home", "/var/run"))


class IsolationError(RuntimeError):
    """The tools cannot be separated from the agent as configured."""


@dataclass(frozen=True)
class ToolUser:
    uid: int
    gid: int

    @classmethod
    def parse(cls, text: str) -> ToolUser:
        uid, _, gid = text.strip().partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise ValueError(f"BERTH_TOOL_USER must be uid:gid in numbers, not {text!r}")
        return cls(int(uid), int(gid) if gid else int(uid))

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run as the tool user, with no groups and no way back up."""
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        ids = [f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--no-new-privs"]
        return [setpriv, *ids, "--", *argv]

    def cli_wrapper(self, cli_path: str | None) -> str:
        """An executable that starts the Claude CLI as the tool user (the SDK's
        ``cli_path``), in a fresh root-only directory."""
        real = cli_path or bundled_cli()
        directory = Path(tempfile.mkdtemp(prefix="berth-cli-"))
        wrapper = directory / "claude"
        line = shlex.join(self.command([real]))
        wrapper.write_text(f'#!/bin/sh\nexec {line} "$@"\n')
        wrapper.chmod(0o700)
        return str(wrapper)

    def own(self, path: Path) -> None:
        """Give ``path`` (a directory the agent just made, e.g. the workspace) to the tool user."""
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode) and (st.st_uid, st.st_gid) != (self.uid, self.gid):
            os.chown(path, self.uid, self.gid, follow_symlinks=False)

    def prepare_config_dir(self, directory: Path) -> None:
        """Make the CLI's config directory: root's, group tool user, 1770."""
        directory.mkdir(parents=True, exist_ok=True)
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
            raise IsolationError(f"{directory} is not a directory owned by root; refusing to use it")
        os.chown(directory, 0, self.gid)
        os.chmod(directory, 0o1770)


def bundled_cli() -> str:
    """The CLI the SDK would start (its bundled one, else ``claude`` on PATH)."""
    try:
        import claude_agent_sdk

        bundled = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("claude") or "claude"


def tool_user_from_env(env: Mapping[str, str]) -> ToolUser | None:
    raw = env.get("BERTH_TOOL_USER", "").strip()
    return ToolUser.parse(raw) if raw else None


def check_can_separate(tool_user: ToolUser | None) -> None:
    """Refuse to start when tools were meant to be separated and cannot be."""
    if tool_user is None:
        return
    if os.geteuid() != 0:
        raise IsolationError(
            f"BERTH_TOOL_USER={tool_user.uid}:{tool_user.gid} needs the agent to run as root in the "
            "container (BerthConfig.container_user '0:0'), or unset it to run tools as the agent"
        )
    if tool_user.uid == 0:
        raise IsolationError("BERTH_TOOL_USER must not be root: the tools would see every secret")
    if shutil.which("setpriv") is None and not Path("/usr/bin/setpriv").exists():
        raise IsolationError("setpriv (util-linux) is missing: it starts the tools as their own user")


def lock_secrets(secrets_dir: Path) -> None:
    """The directory above the secrets mount is root's alone (0700).

    The mount's own owner is whoever wrote it on the host (a non-root server
    cannot chown), which may be the tool user's uid; a root-only parent keeps
    the tool user out whatever that owner is.
    """
    parent = secrets_dir.parent
    if parent in _SHARED_DIRS:
        raise IsolationError(
            f"the secrets directory {secrets_dir} needs a directory of its own (e.g. /run/berth/secrets)"
        )
    st = os.lstat(parent)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise IsolationError(f"{parent} is not a directory")
    if st.st_uid != 0:
        os.chown(parent, 0, 0, follow_symlinks=False)
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(parent, 0o700)


def prepare(env: Mapping[str, str]) -> ToolUser | None:
    """Before anything else in a worker (a warm-pool CLI starts before its
    session): check, lock the secrets, make the CLI's config directory.
    Raises IsolationError (or ValueError for a bad setting)."""
    tool_user = tool_user_from_env(env)
    if tool_user is None:
        return None
    check_can_separate(tool_user)
    lock_secrets(Path(env.get("BERTH_SECRETS_DIR") or "/run/berth/secrets"))
    tool_user.prepare_config_dir(Path(env.get("CLAUDE_CONFIG_DIR") or TOOL_CONFIG_DIR))
    return tool_user
