"""Fixtures shared by the agent tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent.ws_server import AgentServer


@pytest.fixture
def server() -> Iterator[AgentServer]:
    """A real WebSocket server on 127.0.0.1 playing Berth's side of the agent link."""
    srv = AgentServer().start()
    yield srv
    srv.stop()
