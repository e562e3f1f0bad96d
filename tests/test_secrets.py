"""Secrets never reach container environments, logs, client events or reprs."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from actors.runtime import LABEL_SESSION
from actors.secret import Secret
from tests.rest_client import rest_call
from tests.stub_runtime import StubRuntime
from tests.waiting import wait_until
from tests.ws_client import WsPeer
from transport.serve import start_server
from transport.settings import ServerSettings

OAUTH = "sk-ant-oat01-very-secret-oauth-token-value"
GITHUB = "ghp_very_secret_github_token_value_0123"
API = "api-token-very-secret-0123456789abcdef"


def test_no_secret_appears_in_logs_client_events_rest_answers_or_reprs(base_config, caplog):
    caplog.set_level(logging.DEBUG)
    config = replace(base_config, github_token=Secret(GITHUB), agent_runner="sdk")
    running = start_server(
        config,
        ServerSettings(port=0),
        api_token=Secret(API),
        runtime=StubRuntime(),
        environ={"CLAUDE_CODE_OAUTH_TOKEN": OAUTH},
    )
    seen: list[str] = []
    try:
        _, body = rest_call(running.server.http_url, API, "POST", "/api/sessions", {"name": "leak"})
        sid = body["session"]["id"]
        session_token = running.berth.lookup(sid).agent_token.reveal()
        client = WsPeer(f"{running.server.ws_url}/ws", [f"Authorization: Bearer {API}"])
        client.send({"type": "subscribe", "sessionId": sid})
        agent = WsPeer(f"{running.server.ws_url}/agent/{sid}", [f"Authorization: Bearer {session_token}"])
        token_update = agent.recv_until(lambda f: f["type"] == "token_update")[0]
        assert token_update["token"] == OAUTH  # the agent, and only the agent, gets it
        agent.send({"type": "ready"})
        agent.send({"type": "error", "message": "something odd", "fatal": False})
        client.recv_until(lambda f: f["type"] == "message" and f["message"]["content"] == "something odd")
        seen.append(json.dumps(rest_call(running.server.http_url, API, "GET", f"/api/sessions/{sid}")[1]))
        seen.append(json.dumps(rest_call(running.server.http_url, API, "GET", "/api/sessions")[1]))
        seen.append(repr(running.berth.get_session(sid)))
        seen.append(repr(running.berth.lookup(sid)))
        seen.append(repr(config))
        seen.append(repr(running.berth.token_status()))
        _drain(client, seen)
    finally:
        running.stop()
    seen.append(caplog.text)
    everything = "\n".join(seen)
    for secret in (OAUTH, GITHUB, API, session_token):
        assert secret not in everything
        assert secret[6:-4] not in everything


def _drain(client: WsPeer, into: list[str]) -> None:
    try:
        while True:
            into.append(json.dumps(client.recv(timeout=0.3)))
    except Exception:
        pass


def test_a_real_container_gets_its_secrets_as_private_files_and_none_in_its_environment(tree, docker_runtime):
    config_token = Secret(GITHUB)
    berth = tree(
        runtime=docker_runtime,
        container_command=("sleep", "300"),
        github_token=config_token,
        agent_runner="sdk",
    )
    sid = berth.create_session(name="secrets")
    client = docker_runtime.client

    def running() -> Any:
        found = client.api.containers(filters={"label": f"{LABEL_SESSION}={sid}", "status": "running"})
        return client.containers.get(found[0]["Id"]) if found else None

    container = wait_until(running, timeout=60, what="the container")
    env = json.dumps(container.attrs["Config"]["Env"])
    session_token = berth.lookup(sid).agent_token.reveal()
    for secret in (GITHUB, session_token, "sk-ant-oat01-test-token"):
        assert secret not in env
    listing = container.exec_run(["ls", "-l", "/run/berth/secrets"]).output.decode()
    assert listing.count("-rw-------") == 3, listing  # session-token, oauth-token, github-token
    assert container.exec_run(["cat", "/run/berth/secrets/github-token"]).output.decode() == GITHUB
    secrets_dir = tree.base.secrets_root / sid
    berth.delete_session(sid)
    wait_until(lambda: not secrets_dir.exists(), timeout=60, what="the secrets directory to go")
