"""The ``berth`` CLI as a subprocess against a real server with real containers."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.served import API_TOKEN, call, served
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_until
from transport.serve import RunningServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(base_config, docker_runtime) -> Iterator[RunningServer]:
    with served(base_config, docker_runtime, token_retry_delay=0) as running:
        yield running


def _env(server: RunningServer, url: str | None = None, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "BERTH_URL": url or server.server.http_url,
        "BERTH_TOKEN": API_TOKEN,
        **extra,
    }


def berth(server: RunningServer, *args: str, url: str | None = None, **extra: str):
    return subprocess.run(
        [sys.executable, "-m", "transport.cli", *args],
        cwd=REPO,
        env=_env(server, url, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _new(server: RunningServer, name: str = "cli") -> str:
    done = berth(server, "new", name)
    assert done.returncode == 0, done.stderr
    return str(done.stdout.strip())


class Terminal:
    """``berth`` on a pseudo-terminal, as a person runs it."""

    def __init__(self, server: RunningServer, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "transport.cli", *args],
            cwd=REPO,
            env=_env(server),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.output = ""
        self.cursor = 0

    def _read(self) -> str:
        if select.select([self.master], [], [], 0.05)[0]:
            try:
                self.output += os.read(self.master, 65536).decode(errors="replace")
            except OSError:
                pass
        return self.output

    def expect(self, text: str, timeout: float = 30) -> None:
        """Wait for ``text`` after what an earlier ``expect`` matched (as pexpect does)."""
        try:
            wait_until(
                lambda: text in self._read()[self.cursor :], timeout=timeout, what=f"{text!r} on the terminal"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the terminal shows:\n{self.output}") from None
        self.cursor = self.output.index(text, self.cursor) + len(text)

    def expect_all(self, *texts: str, timeout: float = 30) -> None:
        """Wait for every one of ``texts``, in any order, after the last match."""
        wait_until(
            lambda: all(t in self._read()[self.cursor :] for t in texts), timeout=timeout, what=f"{texts}"
        )
        self.cursor = len(self.output)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def exit_code(self, timeout: float = 30) -> int:
        def ended() -> bool:
            self._read()
            return self.process.poll() is not None

        wait_until(ended, timeout=timeout, what="berth to exit")
        return int(self.process.returncode)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


def test_new_shows_progress_then_ls_send_wait_and_logs_show_the_conversation(server):
    done = berth(server, "new", "cli chat")
    assert done.returncode == 0, done.stderr
    sid = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", sid)
    assert "starting the session's container" in done.stderr and "ready in" in done.stderr
    listed = berth(server, "ls")
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()
    assert header.split()[:3] == ["ID", "NAME", "STATUS"]
    assert row.startswith(sid) and "cli chat" in row and "idle" in row
    assert "\x1b[" not in listed.stdout, "plain text when stdout is not a terminal"
    sent = berth(server, "send", sid[:8], "hello", "from", "the", "cli", "--wait")
    assert sent.returncode == 0, sent.stderr
    assert "You said: hello from the cli" in sent.stdout and "turn done" in sent.stdout
    logs = berth(server, "logs", "cli chat")
    assert "> hello from the cli" in logs.stdout and "You said: hello from the cli" in logs.stdout
    as_json = json.loads(berth(server, "logs", sid, "--json").stdout)
    assert [m["content"] for m in as_json if m["kind"] == "user"] == ["hello from the cli"]
    sessions = json.loads(berth(server, "ls", "--json").stdout)
    assert [s["id"] for s in sessions] == [sid] and sessions[0]["status"] == "idle"


def test_attach_streams_and_an_approval_is_answered_with_a_keypress(server):
    sid = _new(server)
    terminal = Terminal(server, "attach", sid)
    try:
        terminal.expect("attached to")
        terminal.type("/tool Bash echo from attach\r")
        terminal.expect("? approve Bash")
        terminal.expect("[y] allow")
        terminal.type("y")
        terminal.expect("Bash ran: echo from attach")
        terminal.expect("Tool Bash ran.")
        terminal.expect("turn done")
        terminal.type("/slow 400\r")
        terminal.expect("t3 ")
        terminal.type("\x03")  # Ctrl-C interrupts the turn, it does not end attach
        terminal.expect("turn ended with an error")
        wait_until(lambda: call(server, "GET", f"/api/sessions/{sid}")[1]["session"]["status"] == "idle")
        assert terminal.process.poll() is None
        terminal.type("\x04")  # Ctrl-D detaches
        assert terminal.exit_code() == 0
    finally:
        terminal.close()
    history = call(server, "GET", f"/api/sessions/{sid}")[1]["messages"]
    assert any(m["kind"] == "tool_result" and m["content"] == "Bash ran: echo from attach" for m in history)


def test_new_attach_shows_the_start_then_a_question_is_answered_inline_by_its_option_number(server):
    terminal = Terminal(server, "new", "asker", "--attach")
    try:
        terminal.expect("starting the session's container")
        terminal.expect("ready in")
        terminal.expect("attached to")
        terminal.type("/ask Ship it?\r")
        terminal.expect("[2] no")
        terminal.type("2")
        terminal.expect("You answered: Ship it? = no")
        terminal.expect_all("turn done", "· status: idle")
        terminal.type("\x03")  # nothing running: Ctrl-C detaches
        assert terminal.exit_code() == 0
    finally:
        terminal.close()
    (session,) = call(server, "GET", "/api/sessions")[1]["sessions"]
    assert session["name"] == "asker" and session["status"] == "idle"


def test_approve_deny_answer_and_interrupt_work_from_separate_commands(server):
    sid = _new(server)
    assert berth(server, "send", sid, "/tool Bash rm -rf /").returncode == 0
    wait_until(lambda: call(server, "GET", f"/api/sessions/{sid}")[1]["pendingApproval"], what="the approval")
    denied = berth(server, "deny", sid, "--message", "not that")
    assert denied.returncode == 0 and "denied Bash" in denied.stdout
    wait_until(lambda: call(server, "GET", f"/api/sessions/{sid}")[1]["session"]["status"] == "idle")
    nothing = berth(server, "approve", sid)
    assert nothing.returncode == 1 and "no tool call waiting for approval" in nothing.stderr
    assert berth(server, "send", sid, "/ask Proceed?").returncode == 0
    wait_until(lambda: call(server, "GET", f"/api/sessions/{sid}")[1]["pendingQuestion"], what="the question")
    assert berth(server, "answer", sid, "1").returncode == 0
    wait_until(lambda: call(server, "GET", f"/api/sessions/{sid}")[1]["session"]["status"] == "idle")
    assert berth(server, "send", sid, "/slow 400").returncode == 0
    wait_until(lambda: call(server, "GET", f"/api/sessions/{sid}")[1]["session"]["status"] == "running")
    assert berth(server, "interrupt", sid).returncode == 0
    wait_until(lambda: call(server, "GET", f"/api/sessions/{sid}")[1]["session"]["status"] == "idle")
    contents = [m["content"] for m in call(server, "GET", f"/api/sessions/{sid}")[1]["messages"]]
    assert "denied: not that" in contents and "You answered: Proceed? = yes" in contents


def test_stop_keeps_the_session_readable_and_rm_deletes_it(server):
    sid = _new(server, "doomed")
    follow = subprocess.Popen(
        [sys.executable, "-m", "transport.cli", "logs", "-f", sid],
        cwd=REPO,
        env=_env(server),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert follow.stdout is not None
    assert (
        "Session container ready"
        in follow.stdout.readline() + follow.stdout.readline() + follow.stdout.readline()
    )
    assert berth(server, "stop", sid).returncode == 0
    out, _ = follow.communicate(timeout=60)
    assert follow.returncode == 0
    assert "· status: terminated (Session terminated: stopped with berth stop)" in out
    wait_until(lambda: call(server, "GET", f"/api/sessions/{sid}")[1]["session"]["status"] == "terminated")
    assert sid not in berth(server, "ls").stdout
    assert sid in berth(server, "ls", "--all").stdout
    refused = berth(server, "send", sid, "hello?")
    assert refused.returncode == 1 and "berth:" in refused.stderr and "HTTP 409" in refused.stderr
    assert berth(server, "rm", sid).returncode == 0
    assert call(server, "GET", f"/api/sessions/{sid}")[0] == 404
    gone = berth(server, "rm", sid)
    assert gone.returncode == 1 and f"no session '{sid}'" in gone.stderr


def test_exit_codes_name_an_unreachable_server_a_wrong_token_and_bad_usage(server, tmp_path):
    unreachable = berth(server, "ls", url="http://127.0.0.1:9")
    assert unreachable.returncode == 3
    assert "cannot reach the Berth server at http://127.0.0.1:9 (from BERTH_URL)" in unreachable.stderr
    wrong = berth(server, "ls", BERTH_TOKEN="wrong-token")
    assert wrong.returncode == 1 and "API token" in wrong.stderr and "BERTH_TOKEN" in wrong.stderr
    usage = berth(server, "send")
    assert usage.returncode == 2 and "usage:" in usage.stderr
    flag = berth(server, "ls", "--server", server.server.http_url, url="http://127.0.0.1:9")
    assert flag.returncode == 0, "--server wins over BERTH_URL"


def test_send_wait_survives_a_network_blip_with_every_token_shown_once(server):
    sid = _new(server)
    proxy = TcpProxy(server.server.port)
    process = subprocess.Popen(
        [sys.executable, "-m", "transport.cli", "send", sid, "/slow 100", "--wait", "--json"],
        cwd=REPO,
        env=_env(server, proxy.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] != "stream" or "t2 " not in frames[-1]["tokens"]:
            frames.append(json.loads(process.stdout.readline()))
        proxy.cut()
        out, err = process.communicate(timeout=60)
    finally:
        proxy.close()
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    assert process.returncode == 0, err
    frames += [json.loads(line) for line in out.splitlines()]
    tokens = [t.strip() for f in frames if f["type"] == "stream" for t in f["tokens"]]
    assert tokens == [f"t{i}" for i in range(100)]
    assert "reconnecting" in err and "reconnected" in err
    assert frames[-1]["type"] == "result"


def test_berth_serve_prints_where_the_token_is_and_the_token_when_it_made_it_even_if_the_start_fails(
    tmp_path,
):
    state = tmp_path / "state"
    outside = tmp_path / "elsewhere" / ".claude"
    outside.mkdir(parents=True)
    env = {**os.environ, "BERTH_STATE_DIR": str(state), "HOME": str(tmp_path / "home")}
    failed = subprocess.run(
        [sys.executable, "-m", "transport.cli", "serve", "--port", "0", "--claude-dir", str(outside)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 2 and "berth:" in failed.stderr
    token = (state / "api-token").read_text().strip()
    assert f"API token: kept in {state / 'api-token'} (mode 0600)" in failed.stdout
    assert f"New API token (shown only now): {token}" in failed.stdout
    serving = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "transport.cli",
            "serve",
            "--port",
            "0",
            "--runtime",
            "external",
            "--instance",
            "t2",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serving.stdout is not None
        lines = [serving.stdout.readline() for _ in range(2)]
        assert lines[0].strip() == f"API token: kept in {state / 'api-token'} (mode 0600)"
        assert lines[1].startswith("Berth is serving on http://127.0.0.1:") and token not in lines[1]
        url = (state / "server-url").read_text().strip()
        listed = subprocess.run(
            [sys.executable, "-m", "transport.cli", "ls"], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert listed.returncode == 0, listed.stderr  # found from the state dir: its URL and token
        assert listed.stdout.split() == ["ID", "NAME", "STATUS", "CREATED", "LAST", "MESSAGE"]
        assert url in lines[1]
    finally:
        serving.send_signal(signal.SIGTERM)
        out, _ = serving.communicate(timeout=60)
    assert serving.returncode == 0 and "Shutting down" in out
    assert not (state / "server-url").exists()


def test_scripts_serve_py_runs_as_the_readme_shows(tmp_path):
    serving = subprocess.Popen(
        [sys.executable, "scripts/serve.py", "--port", "0", "--runtime", "external"],
        cwd=REPO,
        env={**os.environ, "BERTH_STATE_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serving.stdout is not None
        lines = [serving.stdout.readline() for _ in range(3)]
        assert lines[0].startswith(f"API token: kept in {tmp_path / 'api-token'}")
        assert lines[1].startswith("New API token (shown only now): ")
        assert lines[2].startswith("Berth is serving on http://127.0.0.1:")
        url = lines[2].split()[4]
        with urllib.request.urlopen(url + "/") as page:
            assert b"<title>Berth</title>" in page.read()
            assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    finally:
        serving.send_signal(signal.SIGTERM)
        _, err = serving.communicate(timeout=60)
    assert serving.returncode == 0, err
