"""A pooled agent's Claude Code, started before it has a session (tests/fake_claude.py as the CLI)."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.credentials import read_access_token
from agent.pool import WarmRunner
from agent.sdk_credentials import PLACEHOLDER_TOKEN
from transport.protocol import Assign

pytestmark = pytest.mark.timeout(60)

FAKE_CLI = Path(__file__).resolve().parents[1] / "fake_claude.py"


@pytest.fixture
def pool_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "script.json").write_text(json.dumps({"turns": {}}))
    return {
        "BERTH_POOL_SLOT": "pool-test",
        "BERTH_SERVER_URL": "ws://127.0.0.1:9",
        "BERTH_RUNNER": "sdk",
        "BERTH_CLI_PATH": str(FAKE_CLI),
        "BERTH_WORKSPACE": str(tmp_path / "workspace"),
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
        "BERTH_CLOSE_TIMEOUT": "1",
        "FAKE_CLAUDE_SCRIPT": str(tmp_path / "script.json"),
        "FAKE_CLAUDE_LOG": str(tmp_path / "fake.log"),
    }


def _events(env: dict[str, str], name: str) -> list[dict[str, Any]]:
    path = Path(env["FAKE_CLAUDE_LOG"])
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["event"] == name]


@pytest.fixture
def warm(pool_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    # The runner's CLI inherits the process environment (the fake's script and log).
    for key in ("FAKE_CLAUDE_SCRIPT", "FAKE_CLAUDE_LOG", "CLAUDE_CONFIG_DIR"):
        monkeypatch.setenv(key, pool_env[key])
    Path(pool_env["BERTH_WORKSPACE"]).mkdir()
    runner = WarmRunner(pool_env)
    yield runner
    runner.close()


def test_the_warm_cli_starts_logged_in_with_a_placeholder_before_any_session(warm, pool_env):
    assert warm.start()
    [start] = _events(pool_env, "start")
    assert start["cwd"] == pool_env["BERTH_WORKSPACE"]
    assert read_access_token(Path(pool_env["CLAUDE_CONFIG_DIR"]) / ".credentials.json") == PLACEHOLDER_TOKEN


def test_a_session_with_a_repository_or_another_runner_does_not_take_the_warm_cli(warm, pool_env):
    def config(**extra: str) -> AgentConfig:
        env = {**pool_env, "BERTH_SESSION_ID": "s", **extra}
        return AgentConfig.from_env(env)

    assert warm.fits(config())
    assert not warm.fits(config(BERTH_REPO_URL="https://example.invalid/r.git"))
    assert not warm.fits(config(BERTH_RUNNER="builtin"))
    assert not warm.fits(config(BERTH_MANAGER="1"))


def test_a_warm_cli_that_dies_before_its_claim_stops_the_wait_for_a_session(warm, pool_env):
    assert warm.start()
    stop = threading.Event()
    waiting = threading.Event()

    def assignment() -> Assign | None:
        waiting.set()
        stop.wait(30)  # what wait_for_assignment does: return once stopped
        return None

    def kill_cli() -> None:
        waiting.wait(10)
        cli = warm.runner._cli
        assert cli is not None and cli.pid is not None
        os.kill(cli.pid, signal.SIGKILL)

    threading.Thread(target=kill_cli, daemon=True).start()
    assert warm.wait(assignment, stop) is None
    assert warm.died and stop.is_set()
