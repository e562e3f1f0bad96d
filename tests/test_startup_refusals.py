"""``berth serve`` refuses to start without real authentication, in one line.

Each case runs the real command in a subprocess and checks what an operator
sees: exit code 2, a single ``berth: …`` line on stderr naming the fix, no
traceback, and no half-written token file left behind.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from actors.secret import Secret
from transport.auth import TokenFileError, check_token, load_or_create_api_token, matches, token_bits

REPO = Path(__file__).resolve().parent.parent


def serve(*args: str, state_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "transport.cli",
            "--state-dir",
            str(state_dir),
            "serve",
            "--runtime",
            "external",
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_refusal(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("berth: "), done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("content", "words"),
    [("", ("empty", "token_urlsafe")), ("   \n", ("empty",)), ("hunter2", ("too weak", "43"))],
)
def test_serve_refuses_an_empty_or_weak_api_token_file(tmp_path: Path, content: str, words: tuple[str, ...]):
    token_file = tmp_path / "token"
    token_file.write_text(content)
    done = serve("--port", "0", "--api-token-file", str(token_file), state_dir=tmp_path / "state")
    assert_one_line_refusal(done, str(token_file), *words)


def test_serve_refuses_a_missing_api_token_file_and_says_how_to_make_one(tmp_path: Path):
    missing = tmp_path / "nope"
    done = serve("--port", "0", "--api-token-file", str(missing), state_dir=tmp_path / "state")
    assert_one_line_refusal(done, str(missing), "does not exist", "token_urlsafe")


def test_serve_refuses_an_emptied_token_in_its_state_dir_instead_of_running_open(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "api-token").write_text("")
    done = serve("--port", "0", state_dir=state)
    assert_one_line_refusal(done, "empty")


def test_serve_on_a_port_in_use_names_the_port_and_the_fix(tmp_path: Path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        done = serve("--port", str(port), state_dir=tmp_path / "state")
    finally:
        holder.close()
    assert_one_line_refusal(done, str(port), "in use", "--port")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a tiny tmpfs in a mount namespace")
def test_serve_on_a_full_disk_says_so_and_leaves_no_half_written_token(tmp_path: Path):
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        'mount -t tmpfs -o size=64k tmpfs "$1" && mkdir "$1/state" && '
        '(dd if=/dev/zero of="$1/fill" bs=4k 2>/dev/null; true) && '
        f'{sys.executable} -m transport.cli --state-dir "$1/state" serve --runtime external --port 0; '
        'echo "exit=$?"; ls -A "$1/state"'
    )
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", str(disk)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    out = done.stdout.strip().splitlines()
    assert "exit=2" in out, done.stdout + done.stderr
    assert out[-1] == "exit=2", f"files left in the state dir: {out[out.index('exit=2') + 1 :]}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "free space" in lines[0], done.stderr


def test_a_generated_token_is_strong_private_and_written_whole(tmp_path: Path):
    token, new = load_or_create_api_token(tmp_path / "state")
    path = tmp_path / "state" / "api-token"
    assert new and path.read_text().strip() == token.reveal()
    assert path.stat().st_mode & 0o777 == 0o600
    assert token_bits(token.reveal()) >= 256
    assert sorted(p.name for p in path.parent.iterdir()) == ["api-token"]  # no temp file left
    assert load_or_create_api_token(tmp_path / "state") == (token, False)


def test_token_strength_is_judged_by_length_alphabet_and_variety():
    for _ in range(200):  # what Berth generates and what the error message suggests always pass
        check_token(secrets.token_urlsafe(32), "x")
        check_token(secrets.token_hex(32), "x")
    for weak in ["a" * 200, "0123456789" * 5, secrets.token_hex(16), secrets.token_urlsafe(16)]:
        with pytest.raises(TokenFileError):
            check_token(weak, "x")


def test_an_empty_token_never_matches_even_an_empty_expected_token():
    assert not matches("", Secret(""))
    assert not matches(None, Secret("x" * 50))
    assert not matches("", Secret("x" * 50))
    assert matches("x" * 50, Secret("x" * 50))
    assert not matches("x\udc80", Secret("x" * 50))  # odd input is refused, never an exception


def test_a_config_that_cannot_separate_tools_from_the_agent_is_refused():
    from actors.config import BerthConfig

    with pytest.raises(ValueError, match="container_user '0:0'"):
        BerthConfig(container_user="1000:1000")
    with pytest.raises(ValueError, match="non-root"):
        BerthConfig(tool_user="0:0")
    assert BerthConfig(container_user="1000:1000", tool_user=None).tool_user is None
