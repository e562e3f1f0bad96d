"""``python -m agent`` as a real process against the test server."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.ws_server import AgentServer
from tests.ports import free_port
from transport.protocol import Shutdown, TokenUpdate, UserMessage

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
FAKE_CLI = REPO / "tests" / "fake_claude.py"
TOKEN = "sk-ant-oat01-PROCESS-secret-token-abcdef0123456789"


class AgentProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def env(tmp_path: Path, server: AgentServer) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "session-token").write_text("session-secret\n")
    (secrets / "oauth-token").write_text("sk-ant-oat01-process-fixture-token-000000\n")
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "HOME": str(tmp_path / "home"),
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
        "BERTH_SESSION_ID": "sess-1",
        "BERTH_SERVER_URL": server.url,
        "BERTH_SECRETS_DIR": str(secrets),
        "BERTH_WORKSPACE": str(tmp_path / "workspace"),
        "BERTH_BACKOFF_BASE": "0.02",
        "BERTH_BACKOFF_CAP": "0.2",
        "BERTH_CLOSE_TIMEOUT": "2",
        "BERTH_LOG_LEVEL": "DEBUG",
    }


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[object]:
    started: list[AgentProcess] = []

    def run(env: dict[str, str]) -> AgentProcess:
        process = AgentProcess(env, tmp_path / f"agent-{len(started)}.log")
        started.append(process)
        return process

    yield run
    for process in started:
        process.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_agent_says_ready_answers_with_streamed_tokens_and_exits_0_on_a_signal(
    server, env, launch, signum
):
    agent = launch(env)
    conn = server.wait_connection(0, timeout=15)
    assert conn.path == "/agent/sess-1" and conn.authorization == "Bearer session-secret"
    conn.wait_for("ready")
    conn.send(UserMessage(content="hello from the server"))
    result = conn.wait_for("result")
    tokens = [t for f in conn.of("stream") for t in f["tokens"]]
    assert "".join(tokens) == result["result"] == "You said: hello from the server"
    agent.signal(signum)
    assert agent.wait() == 0
    assert conn.closed.wait(5) and conn.close_code == 1000
    assert len(conn.of("ready")) == 1


def test_the_agent_exits_0_on_a_shutdown_frame_and_never_logs_a_pushed_token(server, env, launch):
    agent = launch(env)
    conn = server.wait_connection(0, timeout=15)
    conn.wait_for("ready")
    conn.send(TokenUpdate(token=TOKEN))
    conn.send(Shutdown(reason="session deleted"))
    assert agent.wait() == 0
    log = agent.log.read_text()
    assert "shutting down" in log and "access token updated" in log
    assert TOKEN not in log
    assert TOKEN in (Path(env["CLAUDE_CONFIG_DIR"]) / ".credentials.json").read_text()


def test_the_agent_keeps_retrying_until_the_server_is_up(env, launch):
    server = AgentServer(free_port())
    agent = launch({**env, "BERTH_SERVER_URL": server.url})
    server.start()
    try:
        conn = server.wait_connection(0, timeout=15)
        conn.wait_for("ready")
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0
    finally:
        server.stop()


def test_the_agent_with_the_sdk_runner_relays_a_turn_from_the_claude_cli(server, env, launch):
    agent = launch({**env, "BERTH_RUNNER": "sdk", "BERTH_CLI_PATH": str(FAKE_CLI)})
    conn = server.wait_connection(0, timeout=15)
    conn.wait_for("ready")
    conn.send(UserMessage(content="hi claude"))
    assert conn.wait_for("result", timeout=15)["result"] == "You said: hi claude"
    assert {f["messageId"] for f in conn.of("stream")} == {conn.of("sdk_message")[0]["message"]["id"]}
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0


def test_the_agent_refuses_to_start_without_its_configuration(env, launch):
    agent = launch({k: v for k, v in env.items() if k != "BERTH_SESSION_ID"})
    assert agent.wait() == 2
    assert "BERTH_SESSION_ID is not set" in agent.log.read_text()


def test_the_agent_reports_a_claude_cli_that_cannot_start_as_fatal_and_exits_1(server, env, launch, tmp_path):
    agent = launch({**env, "BERTH_RUNNER": "sdk", "BERTH_CLI_PATH": str(tmp_path / "no-such-claude")})
    conn = server.wait_connection(0, timeout=15)
    assert agent.wait() == 1
    error = conn.wait_for("error")
    assert error["fatal"] is True and "Claude Code" in error["message"]


def test_the_agent_refuses_to_start_without_a_session_token(env, launch):
    Path(env["BERTH_SECRETS_DIR"], "session-token").unlink()
    agent = launch(env)
    assert agent.wait() == 2
    assert "no session token" in agent.log.read_text()


def test_the_agent_imports_and_runs_the_builtin_runner_without_claude_agent_sdk():
    blocker = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'claude_agent_sdk':\n"
        "            raise ImportError('claude-agent-sdk is not installed')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import agent.__main__, agent.app, agent.sdk_runner\n"
        "print('claude_agent_sdk' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocker], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr
