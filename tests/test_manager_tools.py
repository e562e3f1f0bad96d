"""The manager's tools against a real server on 127.0.0.1: called directly, through the
Claude Agent SDK's in-process MCP server, and by the built-in runner's scripted manager."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.builtin_runner import BuiltinRunner
from agent.channel import InputChannel
from agent.manager_tools import TOOLS, ManagerApi, allowed_tools, http_base, run_tool, sdk_server
from agent.runner import UserInput
from tests.rest_client import rest_call
from tests.served import start_stub_server
from tests.stub_runtime import StubRuntime
from tests.waiting import wait_until
from transport.serve import RunningServer

API_TOKEN = "tools-api-token-0123456789abcdef"


class Manager:
    def __init__(self, server: RunningServer, runtime: StubRuntime, secrets: Path) -> None:
        self.server = server
        self.runtime = runtime
        _, body = self.call("POST", "/api/sessions", {"name": "boss", "manager": True})
        self.id = body["session"]["id"]
        container = wait_until(lambda: runtime.by_session(self.id), what="the manager's container")
        (secrets / "manager-token").write_text(container.secrets_seen["manager-token"])
        self.api = ManagerApi(
            http_base(server.server.ws_url), self.id, lambda: _read(secrets / "manager-token")
        )

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return rest_call(self.server.server.http_url, API_TOKEN, method, path, body)

    def children(self) -> list[dict[str, Any]]:
        return [s for s in self.call("GET", "/api/sessions")[1]["sessions"] if s.get("managedBy") == self.id]


def _read(path: Path) -> str:
    return path.read_text().strip()


@pytest.fixture
def manager(base_config, tmp_path: Path) -> Iterator[Manager]:
    server = start_stub_server(base_config, API_TOKEN, "sk-ant-oat01-tools-test-token")
    try:
        yield Manager(server, server.runtime, tmp_path)  # type: ignore[attr-defined]
    finally:
        server.stop()


def test_the_tools_create_message_list_and_end_children_and_report_the_step(manager):
    text, error = run_tool(manager.api, "create_child", {"name": "kid", "prompt": "do the thing"})
    assert not error and "Created child" in text
    (kid,) = manager.children()
    history = manager.call("GET", f"/api/sessions/{kid['id']}")[1]["messages"]
    assert [m["content"] for m in history if m["kind"] == "user"] == ["do the thing"]
    text, error = run_tool(manager.api, "list_children", {})
    assert not error and kid["id"] in text and "kid" in text
    text, error = run_tool(manager.api, "child_status", {"child_id": kid["id"]})
    assert not error and text.startswith(f"kid ({kid['id']}): ")
    assert run_tool(manager.api, "report_step", {"step": "fixing"}) == ("Step: fixing.", False)
    wait_until(
        lambda: (
            manager.call("GET", f"/api/sessions/{manager.id}")[1]["session"]["manager"]["step"] == "fixing"
        ),
        what="the step",
    )
    assert run_tool(manager.api, "end_child", {"child_id": kid["id"]}) == (f"Deleted {kid['id']}.", False)
    wait_until(lambda: manager.children() == [], what="the child to go")


def test_a_tool_call_on_a_foreign_session_reports_the_403_without_the_token(manager):
    _, body = manager.call("POST", "/api/sessions", {"name": "not yours"})
    foreign = body["session"]["id"]
    text, error = run_tool(manager.api, "message_child", {"child_id": foreign, "content": "hi"})
    assert error and "403" in text and "scoped to manager session" in text
    assert manager.api.token() not in text
    assert run_tool(manager.api, "pause", {"resume_in_seconds": 90000})[1]  # beyond 24 h: refused
    assert run_tool(manager.api, "message_child", {"child_id": foreign}) == (
        "message_child needs content",
        True,
    )


def test_the_tools_as_the_sdks_in_process_mcp_server(manager):
    from claude_agent_sdk._internal.sdk_mcp_bridge import SdkMcpBridge  # how the SDK serves the CLI

    config = sdk_server(manager.api)
    bridge = SdkMcpBridge("berth", config["instance"])

    async def talk() -> tuple[Any, Any]:
        init = {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        }
        await bridge.handle({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
        await bridge.handle({"jsonrpc": "2.0", "method": "notifications/initialized"})
        listed = await bridge.handle({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        params = {"name": "create_child", "arguments": {"name": "via-mcp"}}
        called = await bridge.handle({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params})
        await bridge.aclose()
        return listed, called

    listed, called = asyncio.run(talk())
    assert sorted(t["name"] for t in listed["result"]["tools"]) == sorted(TOOLS)
    assert "Created child" in called["result"]["content"][0]["text"]
    assert [c["name"] for c in manager.children()] == ["via-mcp"]
    assert allowed_tools()[0] == "mcp__berth__create_child"


def test_the_builtin_runners_scripted_manager_calls_the_same_tools(manager):
    runner = BuiltinRunner(manager_api=manager.api)
    frames: list[Any] = []

    class Host:
        def emit(self, frame: Any) -> None:
            frames.append(frame)

    async def script() -> str | None:
        channel: InputChannel[UserInput] = InputChannel()
        task = asyncio.create_task(runner.run(channel, Host()))
        item = UserInput('/create_child {"name": "one", "prompt": "hello"}\n/create_child {"name": "two"}')
        channel.push(item)
        outcome = await asyncio.wrap_future(item.done)
        await runner.close()
        await task
        return outcome.result

    result = asyncio.run(script())
    assert result is not None and result.count("Created child") == 2
    assert sorted(c["name"] for c in manager.children()) == ["one", "two"]
    calls = [f.message for f in frames if getattr(f, "message", None) and f.message.kind == "tool_call"]
    assert [c.tool_name for c in calls] == ["mcp__berth__create_child"] * 2
