"""In a real session container, the tool user cannot get at the agent's secrets.

The real agent (built-in runner) runs in a real container of the session
image; ``docker exec`` as the tool user (1000:1000) stands for any tool the
model runs. It cannot read the session token (so it cannot connect as the
agent and forge messages) or the OAuth token file the server pushed, nor
the agent's environment, and no readable file anywhere holds the session
token. It can read the CLI's copy of the access token, which the CLI needs, but
not replace it.
"""

from __future__ import annotations

from typing import Any

import docker
import pytest

from tests.conftest import SESSION_IMAGE
from tests.test_end_to_end import E2E, e2e  # noqa: F401  (the fixture)

TOOL_USER = "1000:1000"
OAUTH = "sk-ant-oat01-e2e-token-0123456789"


def as_tool(container: Any, *command: str) -> tuple[int, str]:
    result = container.exec_run(list(command), user=TOOL_USER)
    return result.exit_code, result.output.decode(errors="replace")


def test_a_tool_cannot_read_the_session_token_or_the_pushed_oauth_token(e2e: E2E):  # noqa: F811
    sid = e2e.create()
    e2e.subscribed_ready(sid)
    container = e2e.container(sid)
    session_token = e2e.running.berth.lookup(sid).agent_token.reveal()
    assert container.exec_run(["cat", "/run/berth/secrets/session-token"]).output.decode() == session_token

    assert as_tool(container, "id", "-u") == (0, "1000\n")
    for path in ("/run/berth/secrets/session-token", "/run/berth/secrets/oauth-token", "/run/berth"):
        code, out = as_tool(container, "ls", "-l", path)
        assert code != 0 and "Permission denied" in out, (path, out)
    worker = container.exec_run(["cat", "/tmp/berth-agent-worker.pid"]).output.decode().strip()
    for pid in ("1", worker):
        for leak in ("environ", "mem", "root/run/berth/secrets/session-token"):
            code, out = as_tool(container, "cat", f"/proc/{pid}/{leak}")
            assert code != 0, (pid, leak, out[:200])
    code, out = as_tool(
        container, "grep", "-rlsF", "--exclude-dir=proc", "--exclude-dir=sys", "--", session_token, "/"
    )
    # grep says 2 when some files were unreadable (as they should be) and nothing matched
    assert code in (1, 2) and out == "", f"files readable by the tool user hold the session token: {out}"

    # The built-in runner gets no OAuth token; write the CLI's copy as the
    # agent does on every token_update (as root, with the agent's own code).
    copy = "/run/berth-claude/.credentials.json"
    write = (
        "from pathlib import Path; from agent.credentials import write_access_token as w; "
        f"w(Path({copy!r}), {OAUTH!r}, None, group=1000)"
    )
    assert container.exec_run(["python3", "-c", write]).exit_code == 0
    code, out = as_tool(container, "cat", copy)
    assert code == 0 and OAUTH in out  # what the Claude CLI reads
    assert as_tool(container, "rm", "-f", "/run/berth-claude/.credentials.json")[0] != 0  # sticky
    assert as_tool(container, "touch", "/workspace/mine")[0] == 0  # the workspace is the tool user's
    assert e2e.status(sid) == "idle"


def test_an_agent_that_cannot_separate_tools_refuses_to_start_and_says_why(docker_runtime: Any):
    """Started as the tool user itself, the agent could not keep secrets from tools."""
    with pytest.raises(docker.errors.ContainerError) as failed:
        docker_runtime.client.containers.run(
            SESSION_IMAGE,
            ["python3", "-m", "agent", "--worker"],
            user=TOOL_USER,
            environment={
                "BERTH_SESSION_ID": "x",
                "BERTH_SERVER_URL": "ws://127.0.0.1:9",
                "BERTH_TOOL_USER": TOOL_USER,
            },
            network_mode="none",
            remove=True,
        )
    assert failed.value.exit_status == 2
    assert b"needs the agent to run as root" in (failed.value.stderr or b"")
