"""A manager's agent hands Claude Code its tools: the real SDK against the fake CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from actors.secret import Secret
from agent.app import make_runner
from agent.builtin_runner import BuiltinRunner
from agent.config import AgentConfig
from agent.manager_tools import TOOLS
from agent.runner import TurnOutcome
from tests.agent.helpers import RunnerHarness, run_async

FAKE_CLI = Path(__file__).resolve().parents[1] / "fake_claude.py"


def manager_config(tmp_path: Path, runner: str) -> AgentConfig:
    (tmp_path / "manager-token").write_text("scoped-manager-token\n")
    return AgentConfig(
        session_id="mgr-1",
        server_url="ws://127.0.0.1:9",
        secrets_dir=tmp_path,
        workspace=tmp_path,
        runner=runner,  # type: ignore[arg-type]
        cli_path=str(FAKE_CLI),
        credentials_path=tmp_path / "claude" / ".credentials.json",
        close_timeout=1.0,
        manager=True,
    )


# Intended: the manager's own tools are allowed without asking anyone.
@pytest.mark.filterwarnings("ignore::claude_agent_sdk.types.CanUseToolShadowedWarning")
def test_a_manager_sdk_runner_starts_claude_code_with_the_berth_mcp_server_and_its_tools_allowed(
    tmp_path: Path, monkeypatch: Any
) -> None:
    log = tmp_path / "fake.log"
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": {"hi": [{"tokens": ["ok"]}]}}))
    monkeypatch.setenv("FAKE_CLAUDE_SCRIPT", str(script))
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(log))
    runner = make_runner(manager_config(tmp_path, "sdk"), Secret("sk-ant-oat01-manager-test"))

    async def scenario() -> None:
        async with RunnerHarness(runner, close_bound=4.0) as h:
            assert await h.turn(h.send("hi")) == TurnOutcome("ok")

    run_async(scenario())
    (start,) = [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == "start"]
    argv: list[str] = start["argv"]
    mcp = json.loads(argv[argv.index("--mcp-config") + 1])
    assert mcp["mcpServers"]["berth"]["type"] == "sdk"
    allowed = argv[argv.index("--allowedTools") + 1].split(",")
    assert sorted(allowed) == sorted(f"mcp__berth__{name}" for name in TOOLS)
    assert "scoped-manager-token" not in " ".join(argv)
    assert "You are a Berth manager session" in " ".join(argv)  # the manager's system prompt


def test_a_manager_builtin_runner_is_the_scripted_manager(tmp_path: Path) -> None:
    runner = make_runner(manager_config(tmp_path, "builtin"), None)
    assert isinstance(runner, BuiltinRunner)
    assert runner._manager_api is not None and runner._manager_api.token() == "scoped-manager-token"
    assert runner._manager_api.base_url == "http://127.0.0.1:9"
