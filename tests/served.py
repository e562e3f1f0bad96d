"""A whole Berth server on 127.0.0.1, with real containers (``served``) or over
the stub runtime (``start_stub_server``), for client and transport tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from actors.config import BerthConfig
from actors.secret import Secret
from tests.rest_client import rest_call
from tests.stub_runtime import StubRuntime
from transport.serve import RunningServer, start_server
from transport.settings import ServerSettings

API_TOKEN = "client-tests-api-token-0123456789"


@contextlib.contextmanager
def served(base_config: BerthConfig, docker_runtime: Any, **overrides: Any) -> Iterator[RunningServer]:
    """The server; at the end it is stopped and no container of its instance is left."""
    config = replace(base_config, startup_timeout=90, reconnect_grace=20, **overrides)
    running = start_server(
        config,
        ServerSettings(port=0),
        api_token=Secret(API_TOKEN),
        runtime=docker_runtime,
        environ={"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-client-tests-0123456789"},
    )
    try:
        yield running
    finally:
        running.stop()
        left = docker_runtime.client.api.containers(
            all=True, filters={"label": f"berth.instance={config.instance_id}"}
        )
        assert not left, "containers left behind"


def start_stub_server(config: BerthConfig, api_token: str, oauth_token: str) -> RunningServer:
    """The server over a ``StubRuntime``, which the test reaches as ``server.runtime``."""
    runtime = StubRuntime()
    server = start_server(
        config,
        ServerSettings(port=0),
        api_token=Secret(api_token),
        runtime=runtime,
        environ={"CLAUDE_CODE_OAUTH_TOKEN": oauth_token},
    )
    server.runtime = runtime  # type: ignore[attr-defined]
    return server


def call(running: RunningServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return rest_call(running.server.http_url, API_TOKEN, method, path, body)
