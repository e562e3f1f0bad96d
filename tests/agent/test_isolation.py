"""The Claude CLI runs as the tool user: the real SDK starting the fake CLI through setpriv.

These need root (as the agent in a session container is): only root can
start a process as another user. The container-level proof, a process of
the tool user failing to read the session token in a real container, is in
``tests/test_tool_isolation.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.secret import Secret
from agent.credentials import write_access_token
from agent.isolation import IsolationError, ToolUser, check_can_separate, lock_secrets
from agent.runner import TurnOutcome
from agent.sdk_runner import SdkRunner, SdkRunnerConfig
from tests.agent.helpers import RunnerHarness, run_async

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting a process as another user needs root"),
]

FAKE_CLI = Path(__file__).resolve().parents[1] / "fake_claude.py"
NOBODY = ToolUser(65534, 65534)


def _status_ids(pid: int) -> dict[str, str]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {k: fields[k].split()[0] if fields[k].split() else "" for k in ("Uid", "Gid", "Groups")}


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the tool user can use (pytest's own are root-only)."""
    directory = Path(f"/tmp/berth-isolation-{os.getpid()}-{os.urandom(4).hex()}")
    directory.mkdir(mode=0o777)
    directory.chmod(0o777)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_the_sdk_starts_the_cli_as_the_tool_user_with_no_groups_and_it_reads_its_token(shared_dir: Path):
    # The system Python: the test interpreter may live where the tool user cannot go.
    launcher = shared_dir / "claude"
    launcher.write_text(f'#!/bin/sh\nexec /usr/bin/python3 {FAKE_CLI} "$@"\n')
    launcher.chmod(0o755)
    script = shared_dir / "script.json"
    script.write_text(json.dumps({"turns": {}}))
    config_dir = shared_dir / "claude-config"
    NOBODY.prepare_config_dir(config_dir)
    config = SdkRunnerConfig(
        cli_path=str(launcher),
        cwd=str(shared_dir),
        close_timeout=1.0,
        env={"FAKE_CLAUDE_SCRIPT": str(script), "HOME": str(shared_dir)},
        claude_config_dir=str(config_dir),
        tool_user=NOBODY,
    )
    runner = SdkRunner(config, Secret("sk-ant-oat01-isolation-token"))

    async def scenario() -> None:
        async with RunnerHarness(runner, close_bound=5) as h:
            assert await h.turn(h.send("hi")) == TurnOutcome("You said: hi")
            cli = runner._cli
            assert cli is not None and cli.pid is not None
            ids = _status_ids(cli.pid)
            assert (ids["Uid"], ids["Gid"], ids["Groups"]) == ("65534", "65534", "")

    run_async(scenario())
    credentials = config_dir / ".credentials.json"
    st = credentials.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 65534, 0o640)
    directory = config_dir.stat()
    assert (directory.st_uid, directory.st_gid, stat.S_IMODE(directory.st_mode)) == (0, 65534, 0o1770)


def test_the_tool_users_credentials_copy_is_rewritten_whole_and_stays_in_its_group(shared_dir: Path):
    config_dir = shared_dir / "cfg"
    NOBODY.prepare_config_dir(config_dir)
    path = config_dir / ".credentials.json"
    for token in ("first-token", "second-token"):
        write_access_token(path, token, None, group=NOBODY.gid)
        st = path.stat()
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 0o640)
        assert json.loads(path.read_text())["claudeAiOauth"]["accessToken"] == token
    assert [p.name for p in config_dir.iterdir()] == [".credentials.json"]


def test_the_directory_above_the_secrets_becomes_root_only(shared_dir: Path):
    secrets = shared_dir / "berth" / "secrets"
    secrets.mkdir(parents=True)
    secrets.parent.chmod(0o755)
    lock_secrets(secrets)
    assert stat.S_IMODE(secrets.parent.stat().st_mode) == 0o700
    with pytest.raises(IsolationError, match="directory of its own"):
        lock_secrets(Path("/run/secrets-straight-under-run"))


def test_a_root_tool_user_is_refused():
    with pytest.raises(IsolationError, match="must not be root"):
        check_can_separate(ToolUser(0, 0))
    assert ToolUser.parse("1000:1001") == ToolUser(1000, 1001)
    with pytest.raises(ValueError, match="uid:gid"):
        ToolUser.parse("berth")


def test_a_pooled_agent_keeps_its_assignment_beside_the_secrets_not_in_the_tools_home():
    from agent.pool import assignment_path

    env = {"HOME": "/home/berth", "BERTH_SECRETS_DIR": "/run/berth/secrets"}
    assert assignment_path(env) == Path("/home/berth/.berth/assignment.json")  # no separation: as before
    assert assignment_path({**env, "BERTH_TOOL_USER": "1000:1000"}) == Path("/run/berth/assignment.json")
