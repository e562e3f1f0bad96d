"""The /v1/ API's server side with in-process containers (fast): lifecycle, limits, environments.

The real-container behaviour is in ``test_sessions_api.py``; these check what
needs no agent: one source of truth with Berth's REST API, the environments
file, the limits, and that stopping the server ends every stream.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import anthropic
import pytest

from actors.config import BerthConfig
from actors.secret import Secret
from tests.rest_client import rest_call
from tests.stub_runtime import StubRuntime
from tests.waiting import wait_until
from transport.serve import RunningServer, start_server
from transport.settings import ServerSettings

API_TOKEN = "v1-server-token-0123456789abcdef"


def serve(config: BerthConfig, runtime: StubRuntime | None = None) -> RunningServer:
    return start_server(
        config,
        ServerSettings(port=0),
        api_token=Secret(API_TOKEN),
        runtime=runtime or StubRuntime(),
        environ={"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-v1-server-token"},
    )


def sdk(running: RunningServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=running.server.http_url, auth_token=API_TOKEN, max_retries=0, timeout=20
    )


@pytest.fixture
def running(base_config: BerthConfig) -> Iterator[RunningServer]:
    server = serve(replace(base_config, sessions_api_keepalive=0.1, max_sessions=2))
    yield server
    server.stop()


def test_sessions_made_over_either_api_are_the_same_sessions(running):
    client = sdk(running)
    status, made = rest_call(running.server.http_url, API_TOKEN, "POST", "/api/sessions", {"name": "rest"})
    assert status == 201
    seen = client.beta.sessions.retrieve(made["session"]["id"])
    assert seen.id == "sesn_" + made["session"]["id"] and seen.title == "rest"
    assert seen.agent.id == "builtin" and seen.environment_id == "default"
    created = client.beta.sessions.create(agent="builtin", environment_id="default", title="v1")
    listed = rest_call(running.server.http_url, API_TOKEN, "GET", "/api/sessions")[1]["sessions"]
    assert created.id.removeprefix("sesn_") in [s["id"] for s in listed]
    assert client.beta.sessions.retrieve(created.id.removeprefix("sesn_")).id == created.id


def test_the_session_limit_is_a_rate_limit_error_and_an_idle_interrupt_a_conflict(running):
    client = sdk(running)
    first = client.beta.sessions.create(agent="builtin", environment_id="default")
    client.beta.sessions.create(agent="builtin", environment_id="default")
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.beta.sessions.create(agent="builtin", environment_id="default")
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.ConflictError) as conflict:
        client.beta.sessions.events.send(first.id, events=[{"type": "user.interrupt"}])
    assert "nothing to interrupt" in conflict.value.message


def test_stopping_the_server_ends_an_open_event_stream_with_an_error_and_leaves_no_thread(base_config):
    baseline = set(threading.enumerate())
    running = serve(replace(base_config, sessions_api_keepalive=5.0))
    client = sdk(running)
    session = client.beta.sessions.create(agent="builtin", environment_id="default")
    ended = threading.Event()
    errors: list[anthropic.APIStatusError] = []

    def read() -> None:
        try:
            with client.beta.sessions.events.stream(session.id) as events:
                list(events)
        except anthropic.APIStatusError as exc:
            errors.append(exc)
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    view = running.server.sessions_api.state.view
    wait_until(lambda: view.stream_count() == 1, what="the stream to open")
    running.stop()
    assert ended.wait(10), "the stream did not end when the server stopped"
    reader.join(5)
    left = [t.name for t in threading.enumerate() if t not in baseline and t.is_alive()]
    wait_until(
        lambda: not [t for t in threading.enumerate() if t not in baseline and t.is_alive()], what=f"{left}"
    )


def test_a_session_in_a_named_environment_gets_that_environments_image_resources_and_env(
    base_config, tmp_path
):
    environments = tmp_path / "environments.toml"
    environments.write_text(
        f'[alias]\nimage = "{base_config.image}"\n\n'
        '[big]\nimage = "other:latest"\nmemory = "6g"\npids_limit = 64\nenv = { LANG = "C.UTF-8" }\n'
    )
    runtime = StubRuntime()
    running = serve(replace(base_config, sessions_api_environments=environments), runtime)
    try:
        client = sdk(running)
        alias = client.beta.sessions.create(agent="builtin", environment_id="alias")
        assert alias.environment_id == "alias"
        big = client.beta.sessions.create(agent="builtin", environment_id="big")
        assert big.environment_id == "big"
        own = wait_until(lambda: runtime.by_session(big.id.removeprefix("sesn_")), what="its container")
        assert own.spec.image == "other:latest" and own.spec.memory == "6g" and own.spec.pids_limit == 64
        assert own.spec.env["LANG"] == "C.UTF-8"
        plain = wait_until(lambda: runtime.by_session(alias.id.removeprefix("sesn_")), what="its container")
        assert plain.spec.image == base_config.image and "LANG" not in plain.spec.env
        with pytest.raises(anthropic.NotFoundError) as unknown:
            client.beta.sessions.create(agent="builtin", environment_id="huge")
        assert "alias, big, default" in unknown.value.message
    finally:
        running.stop()


def test_a_broken_environments_file_stops_the_start_naming_the_file(base_config, tmp_path):
    environments = tmp_path / "environments.toml"
    environments.write_text("[small]\nimage = 'x'\ncpus = 2\n")
    with pytest.raises(ValueError, match=r"environments.toml: \[small\] has unknown keys \['cpus'\]"):
        serve(replace(base_config, sessions_api_environments=environments))
