"""The lifecycle rules that involve a container, against a real Docker engine.

The containers here run ``sleep`` instead of the agent, so that each rule is
checked on the container side alone; the end-to-end tests run the real agent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest

from actors.api import Berth, BerthError
from actors.runtime import LABEL_APP, LABEL_INSTANCE, LABEL_SESSION
from tests.conftest import SESSION_IMAGE, TEST_OAUTH_TOKEN
from tests.waiting import wait_until

SLEEP = ("sleep", "300")


def status(berth: Berth, sid: str) -> str:
    return berth.get_session(sid).info.status.value


def history(berth: Berth, sid: str) -> str:
    return "\n".join(m.content for m in berth.get_session(sid).history)


def containers_of(client: docker.DockerClient, instance: str) -> list[Any]:
    """Listed without inspecting each (a container removed meanwhile is no error)."""
    return list(client.api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"}))


def container_of(client: docker.DockerClient, sid: str) -> Any:
    found = client.api.containers(all=True, filters={"label": f"{LABEL_SESSION}={sid}"})
    try:
        return client.containers.get(found[0]["Id"]) if found else None
    except docker.errors.NotFound:
        return None


def running_container(client: docker.DockerClient, sid: str) -> Any:
    def check() -> Any:
        found = client.api.containers(filters={"label": f"{LABEL_SESSION}={sid}", "status": "running"})
        return client.containers.get(found[0]["Id"]) if found else None

    return wait_until(check, timeout=60, what="the container to run")


@pytest.fixture
def docker_tree(tree, docker_runtime) -> Any:
    def start(**overrides: Any) -> Berth:
        overrides.setdefault("container_command", SLEEP)
        berth: Berth = tree(runtime=docker_runtime, **overrides)
        return berth

    start.client = docker_runtime.client  # type: ignore[attr-defined]
    return start


def test_a_session_container_carries_berth_labels_and_no_secret_in_its_environment(docker_tree, tree):
    berth = docker_tree(agent_runner="sdk")
    client = docker_tree.client
    sid = berth.create_session(name="labels")
    container = running_container(client, sid)
    labels = container.labels
    assert labels[LABEL_APP] == "berth" and labels[LABEL_INSTANCE] == tree.base.instance_id
    env = json.dumps(container.attrs["Config"]["Env"])
    assert TEST_OAUTH_TOKEN not in env
    token_file = container.exec_run(["cat", "/run/berth/secrets/oauth-token"])
    assert token_file.exit_code == 0 and token_file.output.decode() == TEST_OAUTH_TOKEN
    agent_token = berth.lookup(sid).agent_token.reveal()
    assert agent_token not in env
    assert container.exec_run(["cat", "/run/berth/secrets/session-token"]).output.decode() == agent_token
    assert container.exec_run(["touch", "/run/berth/secrets/x"]).exit_code != 0  # mounted read-only


def test_rule1_with_docker_a_missing_image_moves_the_session_to_error_with_the_fix_and_schedules_eviction(
    docker_tree,
):
    berth = docker_tree(image="berth-no-such-image:404", eviction_ttl=0.5)
    sid = berth.create_session()
    wait_until(lambda: status(berth, sid) == "error", timeout=30, what="error")
    text = history(berth, sid)
    assert "berth-no-such-image:404" in text and "scripts/build-image.sh" in text
    wait_until(lambda: berth.list_sessions() == [], timeout=30, what="eviction")


def test_rule3_with_docker_deleting_a_session_removes_its_container_and_secrets(docker_tree, tree):
    berth = docker_tree()
    client = docker_tree.client
    sid = berth.create_session()
    wait_until(lambda: container_of(client, sid), timeout=60, what="the container")
    secrets_dir = tree.base.secrets_root / sid
    assert secrets_dir.is_dir() and oct(secrets_dir.stat().st_mode & 0o777) == "0o700"
    assert oct((secrets_dir / "session-token").stat().st_mode & 0o777) == "0o600"
    ref = berth.lookup(sid).ref
    berth.delete_session(sid)
    wait_until(lambda: container_of(client, sid) is None, timeout=60, what="container removal")
    wait_until(lambda: not secrets_dir.exists(), what="secrets removal")
    assert not ref.is_alive()
    assert berth.timers.pending() == 0


def test_rule5_with_docker_a_killed_container_moves_the_session_to_error_with_its_exit_code(docker_tree):
    berth = docker_tree(eviction_ttl=1)
    client = docker_tree.client
    sid = berth.create_session()
    container = running_container(client, sid)
    wait_until(lambda: "started" in history(berth, sid), timeout=60, what="the start to be reported")
    container.kill()
    wait_until(lambda: status(berth, sid) == "error", timeout=30, what="error")
    assert "exit code 137" in history(berth, sid)
    # rule 6: eviction removes the session and its container
    wait_until(lambda: berth.list_sessions() == [], timeout=30, what="eviction")
    wait_until(lambda: container_of(client, sid) is None, timeout=60, what="container removal")


def test_rule5_with_docker_a_session_whose_agent_never_connects_times_out_and_is_evicted(docker_tree):
    berth = docker_tree(startup_timeout=1.5, eviction_ttl=0.5)
    client = docker_tree.client
    sid = berth.create_session()
    wait_until(lambda: status(berth, sid) == "error", timeout=60, what="startup timeout")
    assert "timed out after 1.5 s" in history(berth, sid)
    wait_until(lambda: berth.list_sessions() == [], timeout=30, what="eviction")
    wait_until(lambda: container_of(client, sid) is None, timeout=60, what="container removal")


def test_rule8_with_docker_terminate_removes_the_container_and_schedules_eviction(docker_tree):
    berth = docker_tree()
    client = docker_tree.client
    sid = berth.create_session()
    wait_until(lambda: container_of(client, sid), timeout=60, what="the container")
    berth.terminate_session(sid)
    wait_until(lambda: status(berth, sid) == "terminated", what="terminated")
    wait_until(lambda: container_of(client, sid) is None, timeout=60, what="container removal")
    assert "eviction" in berth.get_session(sid).timers


def test_start_up_removes_orphaned_containers_of_its_instance_only(docker_tree, tree):
    client = docker_tree.client
    instance = tree.base.instance_id
    orphan = client.containers.run(
        SESSION_IMAGE,
        list(SLEEP),
        detach=True,
        network_mode="host",
        labels={LABEL_APP: "berth", LABEL_INSTANCE: instance, LABEL_SESSION: "gone"},
    )
    stranger = client.containers.run(
        SESSION_IMAGE,
        list(SLEEP),
        detach=True,
        network_mode="host",
        labels={LABEL_APP: "berth", LABEL_INSTANCE: instance + "-other", LABEL_SESSION: "x"},
    )
    orphan_secrets = tree.base.secrets_root / "gone"
    orphan_secrets.mkdir(parents=True)
    try:
        berth = docker_tree()
        wait_until(lambda: not containers_of(client, instance), timeout=60, what="the orphan to be removed")
        wait_until(lambda: not orphan_secrets.exists(), what="its secrets directory to be removed")
        stranger.reload()
        assert stranger.status == "running"
        assert berth.list_sessions() == []
    finally:
        stranger.remove(force=True)
        try:
            orphan.remove(force=True)
        except docker.errors.NotFound:
            pass


def test_shutting_down_the_tree_removes_every_session_container(docker_tree, tree):
    berth = docker_tree()
    client = docker_tree.client
    ids = [berth.create_session(name=f"s{i}") for i in range(3)]
    for sid in ids:
        running_container(client, sid)
    berth.shutdown()
    assert containers_of(client, tree.base.instance_id) == []


def test_an_unreachable_docker_engine_is_a_clear_error_naming_the_fix(monkeypatch, tmp_path: Path):
    from actors.docker_runtime import DockerRuntime
    from actors.runtime import EngineUnavailable

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(EngineUnavailable) as err:
        DockerRuntime()
    assert (
        f"the Docker engine at unix://{tmp_path}/no-docker.sock is not reachable: No such file or directory"
        in str(err.value)
    )
    assert "docker-up.sh" in str(err.value)


def test_commands_to_an_ended_session_are_refused_with_a_conflict(docker_tree):
    berth = docker_tree(image="berth-no-such-image:404")
    sid = berth.create_session()
    wait_until(lambda: status(berth, sid) == "error", timeout=30, what="error")
    with pytest.raises(BerthError) as err:
        berth.send_message(sid, "hello")
    assert err.value.code == 409
