"""The real Claude Code CLI running as the tool user, offline: its tools cannot read secrets.

As in ``tests/agent/test_real_cli.py`` (whose helpers this uses), the CLI
runs in a network namespace with only loopback against the fake Messages
API. Here the SDK runner starts it as the tool user (nobody, 65534) the way
the agent does in a session container; the fake model asks for a Bash tool
that prints its uid and tries to read a root-only "session token". The test
checks what a user would care about: the tool ran as the tool user and was
refused the secret, and the CLI, reading the agent's group-readable copy of
the credentials, sent the pushed OAuth token and, after a push, the new one.

    unshare -n sh -c 'ip link set lo up && exec python3 -m tests.agent.test_real_cli_tool_user /tmp/w'
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actors.secret import Secret
from agent.isolation import ToolUser
from tests.agent.helpers import RunnerHarness
from tests.agent.test_real_cli import (
    QUIET_ENV,
    REPO,
    SCENARIO_TIMEOUT,
    SCRUBBED_ENV,
    TOKEN_A,
    TOKEN_B,
    TURN_TIMEOUT,
    bundled_cli,
    namespace,  # noqa: F401  (the fixture)
)
from tests.fake_messages_api import OAUTH_BETA, FakeMessagesApi, Reply
from tests.namespace_scenario import run_scenario
from transport.protocol import ApprovalRequest

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting the CLI as another user needs root"),
]

NOBODY = ToolUser(65534, 65534)
SECRET = "session-secret-the-tools-must-not-see"


def test_the_real_cli_runs_tools_as_the_tool_user_who_cannot_read_the_session_token(
    namespace: list[str],  # noqa: F811
) -> None:
    shared = Path(f"/tmp/berth-real-cli-tool-user-{os.getpid()}")
    shutil.rmtree(shared, ignore_errors=True)
    shared.mkdir(mode=0o755)
    try:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env.update(QUIET_ENV)
        env.update({"PYTHONPATH": str(REPO), "CLAUDE_CODE_STREAM_CLOSE_TIMEOUT": "120000"})
        done = subprocess.run(
            [*namespace, sys.executable, "-m", "tests.agent.test_real_cli_tool_user", str(shared)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT,
        )
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-6000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["isolation"] == {"interfaces": ["lo"], "outside": "unreachable"}
    [tool_output] = result["tool_outputs"]
    assert "uid=65534" in tool_output and "Permission denied" in tool_output, tool_output
    assert SECRET not in json.dumps(result)
    assert result["outcomes"] == [["Could not read it.", False], ["You said: again", False]]
    assert [(b, beta) for b, beta in result["bearers"]] == [(TOKEN_A, True), (TOKEN_A, True), (TOKEN_B, True)]
    assert result["cli_uid"] == 65534


async def scenario(shared: Path) -> dict[str, Any]:
    from agent.sdk_runner import SdkRunner, SdkRunnerConfig

    # What the agent's container holds: a root-only secret, a tool-owned
    # workspace and home, the CLI's config directory made as the agent makes it.
    secrets = shared / "berth" / "secrets"
    secrets.mkdir(parents=True)
    secrets.parent.chmod(0o700)
    (secrets / "session-token").write_text(SECRET)
    workspace, home = shared / "workspace", shared / "home"
    for directory in (workspace, home):
        directory.mkdir()
        NOBODY.own(directory)
    config_dir = shared / "claude-config"
    NOBODY.prepare_config_dir(config_dir)
    cli = shared / "claude"
    try:
        os.link(bundled_cli(), cli)  # the wheel lives under /root, which nobody cannot enter
    except OSError:
        shutil.copy2(bundled_cli(), cli)
    with FakeMessagesApi() as api:
        api.script(
            "read the token",
            Reply.use("Bash", {"command": f"id; cat {secrets / 'session-token'}", "description": "Read it"}),
            Reply.say("Could not read it."),
        )
        config = SdkRunnerConfig(
            cli_path=str(cli),
            cwd=str(workspace),
            approval_timeout=TURN_TIMEOUT,
            close_timeout=10.0,
            env={"ANTHROPIC_BASE_URL": api.url, "HOME": str(home)},
            claude_config_dir=str(config_dir),
            tool_user=NOBODY,
        )
        runner = SdkRunner(config, Secret(TOKEN_A))
        async with RunnerHarness(runner, close_bound=30.0) as h:
            first = h.send("read the token")
            asked = await h.frame(ApprovalRequest, timeout=TURN_TIMEOUT)
            await runner.approval_response(asked.approval.id, True, None)
            outcomes = [await h.turn(first, TURN_TIMEOUT)]
            assert runner._cli is not None
            cli_uid = os.stat(f"/proc/{runner._cli.pid}").st_uid
            await runner.update_token(Secret(TOKEN_B))
            outcomes.append(await h.turn(h.send("again"), TURN_TIMEOUT))
        conversation = api.conversation()
        outputs = [json.dumps(block.get("content")) for r in conversation for block in (r.tool_results or [])]
        return {
            "tool_outputs": outputs,
            "outcomes": [[o.result, o.is_error] for o in outcomes],
            "bearers": [[r.bearer, OAUTH_BETA in r.betas] for r in conversation],
            "cli_uid": cli_uid,
        }


def main(argv: list[str]) -> int:
    shared = Path(argv[0])
    return run_scenario(lambda: asyncio.run(asyncio.wait_for(scenario(shared), SCENARIO_TIMEOUT)), QUIET_ENV)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
