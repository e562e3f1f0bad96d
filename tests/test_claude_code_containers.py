"""The real Claude Code CLI in real session containers, through the whole server, offline.

A holder container with ``--network none`` owns a network namespace with
only loopback. The scenario runs in a child process that joins it
(``nsenter --net``): the fake Messages API (``tests/fake_messages_api.py``)
and the Berth server listen on 127.0.0.1 in there, and every session
container joins the same namespace (``container_network="container:<holder>"``),
so the agent reaches the server, the CLI reaches the fake API, and nothing
reaches anything else. The Docker engine is driven through its Unix socket,
which no network namespace hides.

One child runs every scenario in order, so the CLI starts only twice: a cold
session (a streamed turn, an approval, an interrupt, a token push the API
sees) on one server, then a warm-pool claim on a second one. The tests
below each assert on their part of its JSON result. Needs the image
``berth-session-sdk:latest`` (``scripts/test.sh`` builds it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import docker_runtime_or_skip
from tests.namespace_scenario import run_scenario

SDK_IMAGE = os.environ.get("BERTH_TEST_SDK_IMAGE", "berth-session-sdk:latest")
REPO = Path(__file__).resolve().parents[1]
API_TOKEN = "claude-code-containers-api-token-0123"
TOKEN_A = "sk-ant-oat01-container-token-AAAAAAAAAAAA"
TOKEN_B = "sk-ant-oat01-container-token-BBBBBBBBBBBB"
GITHUB_TOKEN = "ghp_containertestgithubtoken0123456789"
STREAMED = "Hello from the fake Messages API, through a container"
CHILD_TIMEOUT = 420.0
TURN = 120.0  # the first turn may include the CLI's start-up on a loaded machine

pytestmark = pytest.mark.timeout(CHILD_TIMEOUT + 60)


# ---------------------------------------------------------------- pytest side


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    runtime = docker_runtime_or_skip()
    client = runtime.client
    try:
        client.images.get(SDK_IMAGE)
    except Exception:
        pytest.fail(
            f"the image {SDK_IMAGE} is missing: build it with "
            f"`BERTH_IMAGE={SDK_IMAGE} BERTH_IMAGE_EXTRAS=sdk bash scripts/build-image.sh`",
            pytrace=False,
        )
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        pytest.fail("these tests need nsenter (apt-get install util-linux)", pytrace=False)
    holder = client.containers.run(
        SDK_IMAGE, ["sleep", "infinity"], detach=True, network_mode="none", labels={"berth.test": "netns"}
    )
    work = tmp_path_factory.mktemp("claude-code")
    os.chmod(work, 0o755)
    try:
        holder.reload()
        pid = holder.attrs["State"]["Pid"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
        env["PYTHONPATH"] = str(REPO)
        done = subprocess.run(
            [nsenter, f"--net=/proc/{pid}/ns/net", sys.executable, "-m", __name__, holder.id, str(work)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
    finally:
        holder.remove(force=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        pytest.fail(
            f"the scenario exited {done.returncode}\n--- stdout\n{done.stdout[-4000:]}"
            f"\n--- stderr\n{done.stderr[-8000:]}",
            pytrace=False,
        )
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    (work / "result.json").write_text(json.dumps(result, indent=1))  # to read after a failure
    (work / "scenario.log").write_text(done.stderr)
    return result


def test_the_server_the_containers_and_the_fake_api_share_a_namespace_with_only_loopback(run):
    assert run["isolation"] == {"interfaces": ["lo"], "outside": "unreachable"}
    assert run["container_isolation"] == ["lo"]
    assert run["other_requests"] == [], "the CLI called more than the Messages API"


def test_a_cold_session_is_idle_only_with_claude_code_running_and_streams_a_turn(run):
    cold = run["cold"]
    assert cold["cli_running_when_idle"] is True
    assert "".join(cold["streamed"]) == STREAMED
    assert len(cold["streamed"]) > 1, "the reply was not streamed in pieces"
    assert cold["result"] == {"isError": False, "result": STREAMED}
    assert cold["first_request"] == {"bearer": TOKEN_A, "oauth_beta": True}


def test_a_tool_is_approved_through_the_client_and_runs_in_the_container(run):
    approval = run["cold"]["approval"]
    assert approval["tool"] == ["Bash", "mkdir approved-dir"]
    assert approval["result"] == {"isError": False, "result": "The directory is made."}
    assert approval["dir_made"] is True


def test_an_interrupt_ends_a_streaming_turn_with_an_error_result(run):
    interrupt = run["cold"]["interrupt"]
    assert interrupt["result"]["isError"] is True
    assert interrupt["status_after"] == "idle"


def test_a_token_refreshed_on_the_host_is_what_the_api_sees_next(run):
    assert run["cold"]["after_push"] == {"bearer": TOKEN_B, "oauth_beta": True}


def test_a_warm_pool_session_gets_a_running_claude_code_with_its_token_mode_and_github_token(run):
    warm = run["warm"]
    assert warm["from_the_pool"] is True
    assert warm["cli_started_before_the_session"] is True
    assert warm["result"] == {"isError": False, "result": "You said: warm hello"}
    assert warm["first_request"] == {"bearer": TOKEN_B, "oauth_beta": True}
    assert warm["permission_mode"] == "auto_edits"
    assert warm["tool_github_token"] == GITHUB_TOKEN
    # Warmed before its claim by a turn the agent's stand-in answered, of which
    # neither the API nor the session's conversation saw anything.
    assert warm["warmed_before_the_claim"] is True
    assert "assistant" not in warm["first_request_roles"], "the first request carries an earlier turn"
    assert warm["api_saw_the_warm_up"] is False


# ----------------------------------------------- the scenario (in the namespace)


def _write_login(claude_dir: Path, token: str) -> None:
    claude_dir.mkdir(parents=True, exist_ok=True)
    far = int((time.time() + 86400) * 1000)
    payload = {"claudeAiOauth": {"accessToken": token, "refreshToken": "r", "expiresAt": far}}
    tmp = claude_dir / ".credentials.json.tmp"
    tmp.write_text(json.dumps(payload))
    os.chmod(tmp, 0o600)
    os.replace(tmp, claude_dir / ".credentials.json")


def _cli_started_at(container: Any) -> float | None:
    """When the container's Claude Code process started (Unix s): its age from /proc."""
    script = (
        "import os\n"
        "uptime = float(open('/proc/uptime').read().split()[0])\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')[0]\n"
        "        stat = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()\n"
        "    except OSError:\n"
        "        continue\n"
        "    if cmd.endswith(b'/claude'):\n"
        "        print(uptime - int(stat[19]) / os.sysconf('SC_CLK_TCK'))\n"
    )
    out = container.exec_run(["python3", "-c", script]).output.decode().split()
    return time.time() - float(out[0]) if out else None


class _Session:
    def __init__(self, running: Any, sid: str) -> None:
        from tests.ws_client import WsPeer

        self.running, self.sid = running, sid
        self.ws = WsPeer(f"{running.server.ws_url}/ws", [f"Authorization: Bearer {API_TOKEN}"])
        self.ws.send({"type": "subscribe", "sessionId": sid})

    def wait_status(self, *statuses: str, timeout: float = TURN) -> str:
        from tests.waiting import wait_until

        return str(
            wait_until(
                lambda: self.info()["status"] if self.info()["status"] in statuses else None,
                timeout,
                f"the session to be {' or '.join(statuses)}",
            )
        )

    def info(self) -> dict[str, Any]:
        from tests.rest_client import rest_call

        code, body = rest_call(self.running.server.http_url, API_TOKEN, "GET", f"/api/sessions/{self.sid}")
        assert code == 200, body
        return dict(body["session"])

    def prompt(self, content: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        self.ws.send({"type": "send_prompt", "sessionId": self.sid, "content": content})
        return self.ws.recv_until(lambda f: f["type"] == "result", timeout=TURN)

    def container(self, client: Any) -> Any:
        from actors.runtime import LABEL_SESSION

        [found] = client.api.containers(filters={"label": f"{LABEL_SESSION}={self.sid}"})
        return client.containers.get(found["Id"])


def _create(running: Any, **body: Any) -> str:
    from tests.rest_client import rest_call

    code, created = rest_call(
        running.server.http_url, API_TOKEN, "POST", "/api/sessions", {"name": "cc", **body}
    )
    assert code == 201, created
    return str(created["session"]["id"])


def _streamed(frames: list[dict[str, Any]]) -> list[str]:
    return [t for f in frames if f["type"] == "stream" for t in f["tokens"]]


def _request(api: Any, prompt: str) -> dict[str, Any]:
    from tests.fake_messages_api import OAUTH_BETA

    r = api.wait_for(lambda r: r.is_conversation and r.prompt == prompt, 10, f"a request for {prompt!r}")
    return {"bearer": r.bearer, "oauth_beta": OAUTH_BETA in r.betas}


def _cold(running: Any, docker_client: Any, api: Any, claude_dir: Path) -> dict[str, Any]:
    from tests.fake_messages_api import Reply
    from tests.waiting import wait_until

    sid = _create(running, runner="sdk")
    s = _Session(running, sid)
    s.wait_status("idle", "error", timeout=TURN)
    assert s.info()["status"] == "idle", s.info()
    container = s.container(docker_client)
    out: dict[str, Any] = {"cli_running_when_idle": _cli_started_at(container) is not None}
    out["container_isolation"] = container.exec_run(["ls", "/sys/class/net"]).output.decode().split()

    api.script("stream please", Reply.say(STREAMED, chunks=4))
    result, frames = s.prompt("stream please")
    out["streamed"] = _streamed(frames)
    out["result"] = {"isError": result["isError"], "result": result.get("result")}
    out["first_request"] = _request(api, "stream please")

    api.script(
        "make a directory",
        Reply.use("Bash", {"command": "mkdir approved-dir", "description": "Make a directory"}),
        Reply.say("The directory is made."),
    )
    s.ws.send({"type": "send_prompt", "sessionId": sid, "content": "make a directory"})
    asked = s.ws.recv_until(lambda f: f["type"] == "approval_request", timeout=TURN)[0]["approval"]
    s.ws.send({"type": "approve_tool", "sessionId": sid, "approvalId": asked["id"], "allow": True})
    result = s.ws.recv_until(lambda f: f["type"] == "result", timeout=TURN)[0]
    made = container.exec_run(["test", "-d", "/workspace/approved-dir"]).exit_code == 0
    out["approval"] = {
        "tool": [asked["toolName"], asked["toolInput"].get("command")],
        "result": {"isError": result["isError"], "result": result.get("result")},
        "dir_made": made,
    }

    api.token_delay = 0.3
    api.script("talk slowly", Reply.say("word " * 200, chunks=200))
    s.ws.send({"type": "send_prompt", "sessionId": sid, "content": "talk slowly"})
    s.ws.recv_until(lambda f: f["type"] == "stream", timeout=TURN)
    s.ws.send({"type": "interrupt", "sessionId": sid})
    result = s.ws.recv_until(lambda f: f["type"] == "result", timeout=TURN)[0]
    api.token_delay = 0.0
    out["interrupt"] = {"result": {"isError": result["isError"]}, "status_after": s.wait_status("idle")}

    # The host's Claude login is refreshed: the server pushes the new token.
    _write_login(claude_dir, TOKEN_B)
    wait_until(
        lambda: (
            container.exec_run(["grep", "-q", TOKEN_B, "/run/berth-claude/.credentials.json"]).exit_code == 0
        ),
        30,
        "the pushed token in the container",
    )
    s.prompt("after the push")
    out["after_push"] = _request(api, "after the push")
    return out


def _serves(container: Any, sid: str) -> bool:
    """Whether a (pooled) container's agent was assigned ``sid``."""
    out = container.exec_run(["cat", "/run/berth/assignment.json"]).output.decode()
    return f'"sessionId":"{sid}"' in out


def _warm(running: Any, docker_client: Any, api: Any) -> dict[str, Any]:
    from actors.runtime import LABEL_SESSION
    from tests.fake_messages_api import Reply
    from tests.waiting import wait_until

    wait_until(lambda: running.berth.pool_status()["ready"] == 1, TURN, "a warm pooled Claude Code")
    pooled = {c["Id"] for c in docker_client.api.containers(filters={"label": LABEL_SESSION})}
    created_at = time.time()
    sid = _create(running, runner="sdk", permissionMode="auto_edits")
    s = _Session(running, sid)
    s.wait_status("idle", "error", timeout=TURN)
    claimed = [c for c in docker_client.containers.list() if c.id in pooled and _serves(c, sid)]
    started = _cli_started_at(claimed[0]) if claimed else None
    result, _ = s.prompt("warm hello")
    mode = s.info().get("permissionMode")  # as the CLI reported it on that turn
    # The GitHub token reaches the model's tools though the CLI started without it.
    api.script(
        "save the github token",
        Reply.use("Bash", {"command": "printenv GH_TOKEN > gh.txt", "description": "Save it"}),
        Reply.say("Saved."),
    )
    s.ws.send({"type": "send_prompt", "sessionId": sid, "content": "save the github token"})
    asked = s.ws.recv_until(lambda f: f["type"] == "approval_request", timeout=TURN)[0]["approval"]
    s.ws.send({"type": "approve_tool", "sessionId": sid, "approvalId": asked["id"], "allow": True})
    s.ws.recv_until(lambda f: f["type"] == "result", timeout=TURN)
    gh = claimed[0].exec_run(["cat", "/workspace/gh.txt"]).output.decode().strip() if claimed else None
    logs = claimed[0].logs().decode(errors="replace") if claimed else ""
    first = api.wait_for(lambda r: r.is_conversation and r.prompt == "warm hello", 10, "the first request")
    return {
        "warmed_before_the_claim": "Claude Code warmed up" in logs,
        "first_request_roles": [m.get("role") for m in first.body.get("messages") or []],
        "api_saw_the_warm_up": any("warm-up" in json.dumps(r.body).lower() for r in api.snapshot()),
        "from_the_pool": len(claimed) == 1,
        "cli_started_before_the_session": started is not None and started < created_at,
        "result": {"isError": result["isError"], "result": result.get("result")},
        "first_request": _request(api, "warm hello"),
        "permission_mode": mode,
        "tool_github_token": gh,
    }


def scenario(holder: str, work: Path) -> dict[str, Any]:
    import docker

    from actors.config import BerthConfig
    from actors.docker_runtime import DockerRuntime
    from actors.secret import Secret
    from tests.fake_messages_api import FakeMessagesApi
    from transport.serve import start_server
    from transport.settings import ServerSettings

    claude_dir = work / ".claude"
    _write_login(claude_dir, TOKEN_A)
    runtime = DockerRuntime(docker.from_env())
    out: dict[str, Any] = {}
    with FakeMessagesApi() as api:
        config = BerthConfig(
            instance_id=f"cc{os.getpid()}",
            image=SDK_IMAGE,
            state_dir=work / "state",
            claude_dir=claude_dir,
            claude_dir_root=work,
            token_check_interval=0.5,
            container_network=f"container:{holder}",
            container_memory=None,
            agent_runner="sdk",
            startup_timeout=TURN,
            reconnect_grace=20,
            claude_api_base_url=api.url,
            claude_no_nonessential_traffic=True,
            container_env=(("CLAUDE_CODE_STREAM_CLOSE_TIMEOUT", "120000"),),
            stop_sessions_on_exit=True,  # the cold server's session must not come back in the warm one
        )
        for name, overrides in (
            ("cold", {}),
            ("warm", {"warm_pool_size": 1, "max_sessions": 2, "github_token": Secret(GITHUB_TOKEN)}),
        ):
            running = start_server(
                replace(config, **overrides),  # type: ignore[arg-type]
                ServerSettings(port=0),
                api_token=Secret(API_TOKEN),
                runtime=runtime,
            )
            try:
                if name == "cold":
                    part = _cold(running, runtime.client, api, claude_dir)
                else:
                    part = _warm(running, runtime.client, api)
            finally:
                running.stop()
            out["container_isolation"] = part.pop("container_isolation", out.get("container_isolation"))
            out[name] = part
        out["other_requests"] = [f"{r.method} {r.path}" for r in api.snapshot() if not r.is_conversation]
    return out


def main(argv: list[str]) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    holder, work = argv[0], Path(argv[1])
    return run_scenario(lambda: scenario(holder, work))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
