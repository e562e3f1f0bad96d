"""Preparing the workspace: a shallow clone of the session's repository.

The GitHub token, when there is one, reaches git through ``GIT_CONFIG_*``
environment variables (an ``http.extraHeader`` for github.com only), so it
is neither in git's argv (visible in ``/proc``) nor in the clone's remote
URL (kept in ``.git/config``). Progress and errors never show credentials
embedded in the repository URL.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from actors.secret import Secret
from agent.isolation import ToolUser


class CloneFailed(RuntimeError):
    """The repository could not be cloned; the session cannot start."""


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def _git_env(repo_url: str, github_token: Secret | None) -> dict[str, str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    if github_token and repo_url.startswith("https://github.com/"):
        basic = base64.b64encode(f"x-access-token:{github_token.reveal()}".encode()).decode()
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="http.https://github.com/.extraheader",
            GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
        )
    return env


def clone_repository(
    repo_url: str,
    branch: str | None,
    workspace: Path,
    progress: Callable[[str], None],
    cancel: threading.Event,
    github_token: Secret | None = None,
    timeout: float = 900.0,
    run_as: ToolUser | None = None,
) -> None:
    """``git clone --depth 1 [--branch B]`` into ``workspace``; CloneFailed on failure.

    An existing clone (an agent restarted in the same container) is kept.
    ``cancel`` (the agent's shutdown flag) stops a clone in progress.
    With ``run_as`` git runs as the tool user, so the clone is theirs to edit.
    """
    shown = redact_url(repo_url)
    if (workspace / ".git").exists():
        progress(f"Workspace {workspace} already holds a clone; keeping it")
        return
    workspace.mkdir(parents=True, exist_ok=True)
    command = ["git", "clone", "--depth", "1"]
    if branch:
        command += ["--branch", branch]
    command += ["--", repo_url, str(workspace)]
    if run_as is not None:
        run_as.own(workspace)
        command = run_as.command(command)
    progress(f"Cloning {shown}" + (f" (branch {branch})" if branch else ""))
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_git_env(repo_url, github_token),
        text=True,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, stderr = process.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if cancel.is_set() or time.monotonic() > deadline:
                process.kill()
                process.communicate()
                raise CloneFailed("clone cancelled" if cancel.is_set() else "clone timed out") from None
    if process.returncode != 0:
        detail = " ".join(stderr.strip().splitlines()[-3:]).replace(repo_url, shown)
        raise CloneFailed(f"git clone of {shown} failed (exit {process.returncode}): {detail}")
    progress(f"Cloned {shown} into {workspace}")
