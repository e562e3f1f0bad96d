"""The ``berth`` command as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def berth(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "transport.cli", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_berth_demo_runs_a_real_session_end_to_end_and_leaves_nothing_behind(docker_runtime):
    done = berth("demo", env={"CLAUDE_CODE_OAUTH_TOKEN": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "status → starting" in out and "status → idle" in out
    assert "streaming: You said: Hello, Berth!" in out
    assert "approving Bash" in out and "status → terminated" in out
    assert "clean: no container left behind" in out
    assert "Traceback" not in done.stderr


def test_berth_demo_manager_orchestrates_two_children_offline_and_leaves_nothing_behind(docker_runtime):
    image = os.environ.get("BERTH_TEST_IMAGE", "berth-session:latest")
    done = berth("--image", image, "demo", "--manager", env={"CLAUDE_CODE_OAUTH_TOKEN": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "[CHILD SESSION COMPLETED]" in out and "You said: hello from your manager" in out
    assert "[CHILD SESSION ERROR]" in out
    assert "the manager's children now: greeter (idle)" in out
    assert "no live session left" in out and "clean: no container left behind" in out


def test_berth_demo_without_a_docker_engine_says_so_and_how_to_get_one(tmp_path: Path):
    done = berth("demo", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}, timeout=60)
    assert done.returncode == 2
    assert f"the Docker engine at unix://{tmp_path}/none.sock is not reachable: " in done.stderr
    assert "docker-up.sh" in done.stderr
    assert "Traceback" not in done.stderr


def test_berth_demo_with_a_missing_image_names_the_build_command():
    done = berth("--image", "berth-no-such-image:1", "demo", timeout=60)
    assert done.returncode == 2
    assert "berth-no-such-image:1" in done.stderr and "scripts/build-image.sh" in done.stderr


def test_berth_refuses_a_claude_dir_outside_the_home_directory_with_a_clear_error(tmp_path: Path):
    claude = tmp_path / ".claude"
    claude.mkdir()
    done = berth(
        "--claude-dir", str(claude), "serve", "--port", "0", env={"HOME": str(tmp_path / "home")}, timeout=60
    )
    assert done.returncode == 2
    assert "berth:" in done.stderr and "Traceback" not in done.stderr
