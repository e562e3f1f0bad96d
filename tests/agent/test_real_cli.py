"""The real Claude Code CLI (bundled in claude-agent-sdk), driven offline.

Each test runs one scenario in a child process inside a network namespace
that has only loopback (``unshare -n``, then ``ip link set lo up``): the fake
Messages API (``tests/fake_messages_api.py``) listens on 127.0.0.1 in there,
so nothing the CLI does can leave the machine. The child drives the SDK
runner (or the whole agent, against an in-namespace WebSocket server), prints
what it saw as one JSON line, and the test asserts on that. One CLI process
per test; its start-up takes 10–30 s on a loaded machine, well inside the
SDK's initialize timeout, which the child raises to 120 s.

A scenario can be run by hand, e.g.::

    unshare -n sh -c 'ip link set lo up && exec python3 -m tests.agent.test_real_cli turn /tmp/w'
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from actors.secret import Secret
from agent.credentials import read_access_token
from tests.agent.helpers import RunnerHarness, wait_until
from tests.fake_messages_api import OAUTH_BETA, FakeMessagesApi, Reply, Request
from tests.namespace_scenario import run_scenario
from transport.protocol import (
    ApprovalRequest,
    ApprovalResponse,
    Shutdown,
    StatusUpdate,
    TokenUpdate,
    UserMessage,
    encode,
)

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
SCENARIO_TIMEOUT = 240.0
TURN_TIMEOUT = 120.0  # the first turn includes the CLI's start-up
TOKEN_A = "sk-ant-oat01-real-cli-token-AAAAAAAAAAAAAAAA"
TOKEN_B = "sk-ant-oat01-real-cli-token-BBBBBBBBBBBBBBBB"
TOKEN_C = "sk-ant-oat01-real-cli-token-CCCCCCCCCCCCCCCC"
STREAMED = "Hello from the fake Messages API"

# Nothing may leave the machine, and nothing may reach a real account.
QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
}
SCRUBBED_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CONFIG_DIR",
    "CLAUDECODE",
)


def bundled_cli() -> Path:
    """The Claude Code CLI shipped in the claude-agent-sdk wheel (never a system ``claude``)."""
    try:
        import claude_agent_sdk
    except ImportError as exc:
        raise AssertionError(
            "claude-agent-sdk is not installed; install the test extra: pip install -e '.[test]'"
        ) from exc
    cli = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    if not (cli.is_file() and os.access(cli, os.X_OK)):
        raise AssertionError(
            f"the Claude Code CLI bundled with claude-agent-sdk {claude_agent_sdk.__version__} "
            f"is missing at {cli}: reinstall its platform wheel "
            "(pip install --force-reinstall claude-agent-sdk)"
        )
    return cli


# ---------------------------------------------------------------- pytest side


def _namespace_command() -> list[str]:
    """``unshare`` + ``ip`` for a loopback-only network namespace, or a clear failure."""
    unshare = shutil.which("unshare")
    ip = shutil.which("ip", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    missing = [name for name, path in (("unshare (util-linux)", unshare), ("ip (iproute2)", ip)) if not path]
    if missing:
        pytest.fail(
            f"the real-CLI tests need {' and '.join(missing)} to run the CLI in a network namespace "
            "with only loopback; install them (apt-get install util-linux iproute2)",
            pytrace=False,
        )
    assert unshare is not None and ip is not None
    # Without root, map the user to root in a user namespace to get a network namespace.
    flags = ["-n"] if os.geteuid() == 0 else ["-r", "-n"]
    return [unshare, *flags, "sh", "-c", f'"{ip}" link set lo up && exec "$0" "$@"']


@pytest.fixture(scope="module")
def namespace() -> list[str]:
    bundled_cli()
    command = _namespace_command()
    probe = subprocess.run([*command, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.fail(
            "cannot create a network namespace with only loopback for the real-CLI tests "
            f"({' '.join(command[:3])} exited {probe.returncode}): {probe.stderr.strip()}",
            pytrace=False,
        )
    return command


def run_isolated(namespace: list[str], scenario: str, work: Path) -> dict[str, Any]:
    """Run ``scenario`` of this module in a loopback-only namespace; its JSON result."""
    return run_module_isolated(namespace, "tests.agent.test_real_cli", [scenario, str(work)], work / "home")


def run_module_isolated(
    namespace: list[str], module: str, args: list[str], home: Path | None = None
) -> dict[str, Any]:
    """``python3 -m module *args`` in a loopback-only namespace (the CLI's noise
    switched off); the JSON of its ``RESULT`` line, with its stderr."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(QUIET_ENV)
    env["PYTHONPATH"] = str(REPO)
    env["CLAUDE_CODE_STREAM_CLOSE_TIMEOUT"] = "120000"  # the SDK's initialize timeout, in ms
    if home is not None:
        env["HOME"] = str(home)
    done = subprocess.run(
        [*namespace, sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise AssertionError(
            f"{module} {' '.join(args[:1])} exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
            f"\n--- stderr\n{done.stderr[-6000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    result["stderr"] = done.stderr
    return result


def assert_isolated(result: dict[str, Any]) -> None:
    assert result["isolation"] == {"interfaces": ["lo"], "outside": "unreachable"}, result["isolation"]
    assert result["other_requests"] == [], "the CLI called more than the Messages API"


def of(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == kind]


def test_a_real_turn_streams_tokens_under_one_message_id_then_the_text_and_the_result(namespace, tmp_path):
    result = run_isolated(namespace, "turn", tmp_path)
    assert_isolated(result)
    frames = result["frames"]
    assert result["outcome"] == [STREAMED, False]
    assert {k: v for k, v in frames[0].items() if k != "n"} == {"type": "status_update", "status": "running"}
    streams = of(frames, "stream")
    assert "".join(t for s in streams for t in s["tokens"]) == STREAMED
    assert len(streams) > 1, "the reply was not streamed in pieces"
    [assistant] = [m["message"] for m in of(frames, "sdk_message") if m["message"]["kind"] == "assistant"]
    assert assistant["content"] == STREAMED
    assert {s["messageId"] for s in streams} == {assistant["id"]} == set(result["api_message_ids"])
    [final] = of(frames, "result")
    assert (final["result"], final["isError"]) == (STREAMED, False)
    assert frames[-1] == final
    [request] = result["requests"]
    assert (request["bearer"], request["oauth_beta"], request["api_key"]) == (TOKEN_A, True, None)


def test_a_real_tool_request_is_approved_or_denied_through_approval_frames(namespace, tmp_path):
    result = run_isolated(namespace, "tool", tmp_path)
    assert_isolated(result)
    frames = result["frames"]
    first, second = of(frames, "approval_request")
    assert (first["approval"]["toolName"], first["approval"]["toolInput"]["command"]) == (
        "Bash",
        "mkdir allowed-dir",
    )
    assert second["approval"]["toolInput"]["command"] == "mkdir denied-dir"
    # Allowed: the CLI ran the command and sent its result back to the API.
    assert result["outcomes"][0] == ["The directory is made.", False]
    assert result["allowed_dir_exists"] is True
    # Denied: nothing ran, and the API was told why.
    assert result["outcomes"][1] == ["Understood, not making it.", False]
    assert result["denied_dir_exists"] is False
    allowed_result, denied_result = [r for r in result["requests"] if r["tool_results"]]
    [allowed_block] = allowed_result["tool_results"]
    assert not allowed_block.get("is_error")
    [denied_block] = denied_result["tool_results"]
    assert denied_block["is_error"] is True and "not today" in json.dumps(denied_block["content"])
    statuses = [f["status"] for f in of(frames, "status_update")]
    assert statuses.count("awaiting_approval") == 2
    tool_results = [m["message"] for m in of(frames, "sdk_message") if m["message"]["kind"] == "tool_result"]
    assert [bool(m.get("isError")) for m in tool_results] == [False, True]
    assert len(of(frames, "result")) == 2


def test_a_pushed_token_reaches_the_running_cli_on_its_next_request(namespace, tmp_path):
    result = run_isolated(namespace, "token", tmp_path)
    assert_isolated(result)
    bearers = result["bearers"]
    # The CLI started with A (the agent also inherited A in its environment,
    # which must not pin it). token_update B arrived mid-turn, while a tool
    # waited for approval: the very next request, in the same turn, used B.
    assert bearers["first turn"] == [TOKEN_A]
    assert bearers["second turn: make a directory"] == [TOKEN_A, TOKEN_B]
    assert result["tool_ran"] is True
    # B refused with 401; a token pushed before the CLI's retry is used for it.
    assert bearers["third turn"] == [TOKEN_B, TOKEN_C]
    assert [r["isError"] for r in result["results"]] == [False, False, False]
    assert all(result["oauth_beta"]), "an OAuth request went out without the OAuth beta"
    assert result["cli_env_token"] == "", "CLAUDE_CODE_OAUTH_TOKEN in the CLI's environment would pin a token"
    assert not any(t in result["cli_env"] for t in (TOKEN_A, TOKEN_B, TOKEN_C))
    assert result["credentials"] == TOKEN_C
    assert result["exit_code"] == 0
    assert not any(t in result["stderr"] for t in (TOKEN_A, TOKEN_B, TOKEN_C)), "a token was logged"


def test_a_cli_started_before_its_token_sends_the_first_pushed_one_with_the_oauth_beta(namespace, tmp_path):
    result = run_isolated(namespace, "late_token", tmp_path)
    assert_isolated(result)
    # The CLI started (logged in with a placeholder, as a warm-pool CLI is)
    # before any token; the prompt waited for one and went out with it.
    assert result["cli_started_before_the_token"] is True
    assert result["outcome"] == ["You said: hello before the token", False]
    sent = [(r["prompt"], r["bearer"], r["oauth_beta"]) for r in result["requests"]]
    assert sent[0] == ("hello before the token", TOKEN_A, True)
    assert {bearer for _, bearer, _ in sent} == {TOKEN_A}, "the placeholder went out"
    # The real CLI refuses bypassPermissions unless launched to allow it: reported, not pretended.
    assert "refused" in result["refusal"] and result["mode_in_force"] == "normal"
    # A failed request is retried, and the client hears why and when.
    [retry] = result["retries"]
    assert (retry["attempt"], retry["errorStatus"]) == (1, 529)
    assert retry["retryAt"] > result["retry_sent_after"]
    assert result["retried_outcome"] == ["ok", False]


# ------------------------------------------------- scenarios (in the namespace)


def _request(r: Request) -> dict[str, Any]:
    return {
        "path": r.path,
        "prompt": r.prompt,
        "bearer": r.bearer,
        "api_key": r.api_key,
        "oauth_beta": OAUTH_BETA in r.betas,
        "tool_results": r.tool_results,
    }


def _observed(api: FakeMessagesApi) -> dict[str, Any]:
    requests = api.snapshot()
    return {
        "requests": [_request(r) for r in requests if r.is_conversation],
        "other_requests": [f"{r.method} {r.path}" for r in requests if not r.is_conversation],
    }


def _runner(work: Path, api: FakeMessagesApi, token: str | None, token_wait: float = 0.0) -> RunnerHarness:
    from agent.sdk_runner import SdkRunner, SdkRunnerConfig

    workspace = work / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    config = SdkRunnerConfig(
        cli_path=str(bundled_cli()),
        cwd=str(workspace),
        approval_timeout=TURN_TIMEOUT,
        close_timeout=10.0,
        env={"ANTHROPIC_BASE_URL": api.url},
        claude_config_dir=str(work / "claude"),
        token_wait=token_wait,
    )
    return RunnerHarness(SdkRunner(config, Secret(token) if token else None), close_bound=30.0)


def _frames(h: RunnerHarness) -> list[dict[str, Any]]:
    return [json.loads(encode(f)) for f in h.host.snapshot()]


async def scenario_turn(work: Path) -> dict[str, Any]:
    with FakeMessagesApi() as api:
        api.script("stream please", Reply.say(STREAMED, chunks=4))
        async with _runner(work, api, TOKEN_A) as h:
            outcome = await h.turn(h.send("stream please"), TURN_TIMEOUT)
        return {
            "outcome": [outcome.result, outcome.is_error],
            "frames": _frames(h),
            "api_message_ids": api.message_ids,
            **_observed(api),
        }


async def scenario_tool(work: Path) -> dict[str, Any]:
    with FakeMessagesApi() as api:
        api.script(
            "make a directory",
            Reply.use("Bash", {"command": "mkdir allowed-dir", "description": "Make a directory"}),
            Reply.say("The directory is made."),
        )
        api.script(
            "try another",
            Reply.use("Bash", {"command": "mkdir denied-dir", "description": "Make another directory"}),
            Reply.say("Understood, not making it."),
        )
        outcomes = []
        async with _runner(work, api, TOKEN_A) as h:
            first = h.send("make a directory")
            asked = await h.frame(ApprovalRequest, timeout=TURN_TIMEOUT)
            await h.runner.approval_response(asked.approval.id, True, None)
            outcomes.append(await h.turn(first, TURN_TIMEOUT))
            second = h.send("try another")
            asked_again = await h.frame(
                ApprovalRequest, lambda f: f.approval.id != asked.approval.id, timeout=TURN_TIMEOUT
            )
            await h.runner.approval_response(asked_again.approval.id, False, "not today")
            outcomes.append(await h.turn(second, TURN_TIMEOUT))
        workspace = work / "workspace"
        return {
            "outcomes": [[o.result, o.is_error] for o in outcomes],
            "frames": _frames(h),
            "allowed_dir_exists": (workspace / "allowed-dir").is_dir(),
            "denied_dir_exists": (workspace / "denied-dir").exists(),
            **_observed(api),
        }


def scenario_token(work: Path) -> dict[str, Any]:
    """The whole agent: token_update frames applied exactly as the agent applies them."""
    from agent.app import Agent
    from agent.config import AgentConfig
    from agent.connection import ConnectionConfig
    from tests.agent.ws_server import AgentServer

    secrets = work / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "session-token").write_text("session-secret\n")
    (secrets / "oauth-token").write_text(TOKEN_A + "\n")
    credentials = work / "claude" / ".credentials.json"
    server = AgentServer().start()
    with FakeMessagesApi() as api:
        api.script(
            "make a directory",
            Reply.use("Bash", {"command": "mkdir made-mid-turn", "description": "Make a directory"}),
            Reply.say("Made it."),
        )
        os.environ["ANTHROPIC_BASE_URL"] = api.url  # the CLI inherits the agent's environment
        os.environ["CLAUDE_CODE_OAUTH_TOKEN"] = TOKEN_A  # as if the agent had inherited one
        config = AgentConfig(
            session_id="real-cli",
            server_url=server.url,
            secrets_dir=secrets,
            workspace=work / "workspace",
            runner="sdk",
            cli_path=str(bundled_cli()),
            credentials_path=credentials,
            connection=ConnectionConfig(backoff_base=0.05, backoff_cap=0.5),
            approval_timeout=TURN_TIMEOUT,
            close_timeout=10.0,
            drain_timeout=5.0,
        )
        agent = Agent(config)
        exit_code: Future[int] = Future()

        def run() -> None:
            try:
                exit_code.set_result(agent.run())
            except BaseException as exc:
                exit_code.set_exception(exc)

        threading.Thread(target=run, name="agent", daemon=True).start()
        try:
            conn = server.wait_connection(0, timeout=30)
            conn.wait_for("ready", timeout=30)
            conn.send(UserMessage(content="first turn"))
            conn.wait_count("result", 1, timeout=TURN_TIMEOUT)
            process = agent._runner._cli.process  # type: ignore[attr-defined]
            cli_env = dict(
                item.split("=", 1)
                for item in Path(f"/proc/{process.pid}/environ").read_text().split("\0")
                if "=" in item
            )

            # Mid-turn, while a tool waits for approval, the server refreshes the
            # token: the agent gets B and A stops working. The CLI's next request
            # (the tool result, same turn) must carry B.
            conn.send(UserMessage(content="second turn: make a directory"))
            asked = conn.wait_for("approval_request", timeout=TURN_TIMEOUT)
            conn.send(TokenUpdate(token=TOKEN_B))
            api.reject(TOKEN_A)
            conn.send(ApprovalResponse(approval_id=asked["approval"]["id"], allow=True))
            conn.wait_count("result", 2, timeout=TURN_TIMEOUT)

            # B is refused (expired early); C is pushed before the 401 goes out.
            pushed = threading.Event()

            def rotate(request: Request) -> None:
                if request.bearer == TOKEN_B and not pushed.is_set():
                    pushed.set()
                    conn.send(TokenUpdate(token=TOKEN_C))
                    wait_until(lambda: read_access_token(credentials) == TOKEN_C, 10, "the agent to write C")

            api.on_reject = rotate
            api.reject(TOKEN_B)
            conn.send(UserMessage(content="third turn"))
            results = conn.wait_count("result", 3, timeout=TURN_TIMEOUT)
            conn.send(Shutdown(reason="done"))
            code = exit_code.result(timeout=60)
        finally:
            if not exit_code.done():
                agent.request_shutdown("the scenario failed")
                exit_code.exception(timeout=60)
            server.stop()
        conversation = api.conversation()
        bearers: dict[str, list[str | None]] = {}
        for r in conversation:
            bearers.setdefault(r.prompt, []).append(r.bearer)
        return {
            "bearers": bearers,
            "oauth_beta": [OAUTH_BETA in r.betas for r in conversation],
            "results": [{"isError": f["isError"], "result": f.get("result")} for f in results],
            "cli_env_token": cli_env.get("CLAUDE_CODE_OAUTH_TOKEN"),
            "cli_env": "\n".join(f"{k}={v}" for k, v in cli_env.items()),
            "credentials": read_access_token(credentials),
            "tool_ran": (work / "workspace" / "made-mid-turn").is_dir(),
            "exit_code": code,
            **_observed(api),
        }


async def scenario_late_token(work: Path) -> dict[str, Any]:
    from transport.protocol import AgentError, ApiRetry

    with FakeMessagesApi() as api:
        async with _runner(work, api, None, token_wait=TURN_TIMEOUT) as h:
            await asyncio.wait_for(h.runner.wait_ready(), TURN_TIMEOUT)
            started_early = h.runner._cli is not None
            item = h.send("hello before the token")
            await h.frame(StatusUpdate, timeout=10)
            await h.runner.update_token(Secret(TOKEN_A))
            outcome = await h.turn(item, TURN_TIMEOUT)
            await h.runner.set_permission_mode("dangerous")
            refusal = await h.frame(AgentError, timeout=30)
            api.script("overloaded once", Reply.say("ok"))
            api.fail_next("overloaded once", Reply.fail(529, "overloaded_error", "Overloaded"))
            sent_after = time.time()
            retried = await h.turn(h.send("overloaded once"), TURN_TIMEOUT)
        return {
            "cli_started_before_the_token": started_early,
            "outcome": [outcome.result, outcome.is_error],
            "refusal": refusal.message,
            "mode_in_force": h.runner._mode,
            "retries": [json.loads(encode(f)) for f in h.host.of(ApiRetry)],
            "retry_sent_after": sent_after,
            "retried_outcome": [retried.result, retried.is_error],
            **_observed(api),
        }


SCENARIOS: dict[str, Callable[[Path], Awaitable[dict[str, Any]] | dict[str, Any]]] = {
    "turn": scenario_turn,
    "tool": scenario_tool,
    "token": scenario_token,
    "late_token": scenario_late_token,
}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    name, work = argv[0], Path(argv[1])
    work.mkdir(parents=True, exist_ok=True)
    (work / "home").mkdir(exist_ok=True)
    os.environ["HOME"] = str(work / "home")

    def run() -> dict[str, Any]:
        outcome = SCENARIOS[name](work)
        result = (
            asyncio.run(asyncio.wait_for(outcome, SCENARIO_TIMEOUT))
            if asyncio.iscoroutine(outcome)
            else outcome
        )
        assert isinstance(result, dict)
        return result

    return run_scenario(run, QUIET_ENV)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
