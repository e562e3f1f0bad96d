"""The agent in-process against a real WebSocket server: tokens, reconnects, failures."""

from __future__ import annotations

import json
import logging
import stat
import subprocess
import threading
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import pytest

from agent.app import Agent
from agent.config import AgentConfig
from agent.connection import ConnectionConfig
from tests.agent.ws_server import AgentServer
from transport.protocol import GetModels, ProtocolError, Shutdown, TokenUpdate, UserMessage

pytestmark = pytest.mark.timeout(30)

TOKEN = "sk-ant-oat01-SECRET-access-token-0123456789abcdef"


@pytest.fixture
def config(tmp_path: Path, server: AgentServer) -> AgentConfig:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "session-token").write_text("session-secret\n")
    return AgentConfig(
        session_id="sess-1",
        server_url=server.url,
        secrets_dir=secrets,
        workspace=tmp_path / "workspace",
        credentials_path=tmp_path / "claude" / ".credentials.json",
        connection=ConnectionConfig(backoff_base=0.01, backoff_cap=0.1),
        close_timeout=1.0,
        drain_timeout=2.0,
    )


def start(agent: Agent) -> Future[int]:
    """Run the agent in a thread (signal handlers are only installed on the main thread)."""
    exit_code: Future[int] = Future()

    def run() -> None:
        try:
            exit_code.set_result(agent.run())
        except BaseException as exc:
            exit_code.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return exit_code


def test_a_pushed_token_is_written_to_the_credentials_file_and_never_logged(config, server, caplog):
    caplog.set_level(logging.DEBUG)
    exit_code = start(Agent(config))
    conn = server.wait_connection(0)
    conn.wait_for("ready")
    conn.send(TokenUpdate(token=TOKEN))
    conn.send(GetModels())
    conn.wait_for("models_list")  # frames are handled in order: the token is applied by now
    path = config.credentials_path
    assert json.loads(path.read_text())["claudeAiOauth"]["accessToken"] == TOKEN
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn.send(Shutdown(reason="done"))
    assert exit_code.result(timeout=10) == 0
    assert "access token updated" in caplog.text
    assert TOKEN not in caplog.text
    assert all(TOKEN not in json.dumps(frame) for frame in conn.received)


def test_the_oauth_token_file_is_written_as_credentials_at_start(config, server):
    (config.secrets_dir / "oauth-token").write_text(TOKEN + "\n")
    exit_code = start(Agent(config))
    conn = server.wait_connection(0)
    conn.wait_for("ready")
    assert json.loads(config.credentials_path.read_text())["claudeAiOauth"]["accessToken"] == TOKEN
    conn.send(Shutdown())
    assert exit_code.result(timeout=10) == 0


def test_after_a_reconnect_the_agent_reports_its_status_and_does_not_say_ready_again(config, server):
    exit_code = start(Agent(config))
    first = server.wait_connection(0)
    first.wait_for("ready")
    first.drop()
    second = server.wait_connection(1)
    assert second.wait_for("status_update")["status"] == "idle"
    second.send(UserMessage(content="still there?"))
    assert second.wait_for("result")["result"] == "You said: still there?"
    assert second.of("ready") == []
    second.send(Shutdown())
    assert exit_code.result(timeout=10) == 0


def test_a_runner_that_dies_mid_turn_is_reported_as_fatal_and_the_agent_exits_1(config, server):
    exit_code = start(Agent(config))
    conn = server.wait_connection(0)
    conn.wait_for("ready")
    conn.send(UserMessage(content="/crash"))
    error = conn.wait_for("error")
    assert error["fatal"] is True and "died mid-turn" in error["message"]
    assert exit_code.result(timeout=10) == 1


@pytest.mark.parametrize(("code", "expected_exit"), [(4003, 0), (4004, 0), (4001, 1)])
def test_a_server_close_that_means_stop_ends_the_agent(config, server, code, expected_exit):
    exit_code = start(Agent(config))
    conn = server.wait_connection(0)
    conn.wait_for("ready")
    conn.close(code, "go away")
    assert exit_code.result(timeout=10) == expected_exit
    assert len(server.connections) == 1


def test_a_failed_clone_is_reported_as_a_fatal_error_and_the_agent_exits_1(config, server, tmp_path):
    config = replace(config, repo_url=str(tmp_path / "no-such-repo"))
    exit_code = start(Agent(config))
    conn = server.wait_connection(0)
    assert exit_code.result(timeout=20) == 1
    assert conn.wait_for("setup_progress")["message"].startswith("Cloning")
    error = conn.wait_for("error")
    assert error["fatal"] is True and "git clone" in error["message"]
    assert conn.of("ready") == []


def test_the_repository_is_cloned_at_the_branch_before_ready(config, server, tmp_path):
    origin = tmp_path / "origin"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(origin)]
    subprocess.run(["git", "init", "-q", "-b", "main", str(origin)], check=True)
    (origin / "README").write_text("main\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "main"], check=True)
    subprocess.run([*git, "checkout", "-q", "-b", "feature"], check=True)
    (origin / "README").write_text("feature\n")
    subprocess.run([*git, "commit", "-q", "-am", "feature"], check=True)
    config = replace(config, repo_url=f"file://{origin}", branch="feature")
    exit_code = start(Agent(config))
    conn = server.wait_connection(0)
    conn.wait_for("ready")
    # The runner may report its settings before it is ready; the clone comes first.
    kinds = [f["type"] for f in conn.received if f["type"] != "session_info_update"]
    assert kinds[: kinds.index("ready") + 1] == ["setup_progress", "setup_progress", "ready"]
    assert (config.workspace / "README").read_text() == "feature\n"
    conn.send(Shutdown())
    assert exit_code.result(timeout=10) == 0


def test_a_protocol_error_from_the_server_is_logged_and_the_session_goes_on(config, server, caplog):
    exit_code = start(Agent(config))
    conn = server.wait_connection(0)
    conn.wait_for("ready")
    conn.send(ProtocolError(message="bad frame from agent"))
    conn.send(UserMessage(content="/quiet"))
    conn.wait_for("result")
    assert "bad frame from agent" in caplog.text
    conn.send(Shutdown())
    assert exit_code.result(timeout=10) == 0
    assert len(server.connections) == 1


def test_an_agent_that_cannot_reach_its_server_for_the_orphan_timeout_exits_1(config, server):
    exit_code = start(Agent(replace(config, orphan_timeout=0.3)))
    server.wait_connection(0).wait_for("ready")
    server.stop()
    assert exit_code.result(timeout=10) == 1


def test_a_connected_agent_outlives_the_orphan_timeout(config, server):
    exit_code = start(Agent(replace(config, orphan_timeout=0.2)))
    conn = server.wait_connection(0)
    conn.wait_for("ready")
    conn.send(UserMessage(content="/slow 20"))  # 20 x 50 ms: several orphan timeouts long
    conn.wait_for("result", timeout=10)
    assert not exit_code.done()
    conn.send(Shutdown())
    assert exit_code.result(timeout=10) == 0


def test_a_frame_the_agent_does_not_handle_is_logged_and_ignored(config, server, caplog):
    exit_code = start(Agent(config))
    conn = server.wait_connection(0)
    conn.wait_for("ready")
    conn.send({"type": "assign", "sessionId": "other", "sessionToken": "pool-secret-token-value"})
    conn.send(UserMessage(content="/quiet"))
    conn.wait_for("result")
    assert (
        "ignoring an unhandled Assign frame" in caplog.text and "pool-secret-token-value" not in caplog.text
    )
    conn.send(Shutdown())
    assert exit_code.result(timeout=10) == 0
