"""What a dead container's output says about why it stopped (actors.exit_output)."""

from __future__ import annotations

from actors.exit_output import why_it_stopped

AGENT_LOG = """\
2026-12-01 22:54:19,441 INFO agent.connection: connected to ws://127.0.0.1:38033/agent/pool/p1 (connection 1)
2026-12-01 22:54:19,457 INFO agent: assigned to session 8a4e35b2
2026-12-01 22:54:19,464 WARNING agent.connection: connection stopped for good: 4004 handshake refused (404)
2026-12-01 22:54:19,464 INFO agent.app: shutting down: the server closed the connection (4004)
2026-12-01 22:54:19,465 INFO agent.app: agent exiting with code 0
"""


def test_the_agents_warnings_are_quoted_and_its_info_lines_left_out():
    assert why_it_stopped(AGENT_LOG) == (
        "WARNING agent.connection: connection stopped for good: 4004 handshake refused (404)"
    )


def test_a_traceback_is_quoted_by_its_last_line_only():
    output = """\
2026-12-01 10:00:00,000 INFO agent: starting
Traceback (most recent call last):
  File "/opt/berth/agent/app.py", line 12, in run
    raise RuntimeError("the workspace is not writable")
RuntimeError: the workspace is not writable
"""
    assert why_it_stopped(output) == "RuntimeError: the workspace is not writable"


def test_only_the_last_three_telling_lines_are_quoted_each_cut_short():
    lines = [f"2026-12-01 10:00:0{i},000 ERROR agent: problem {i} " + "x" * 400 for i in range(5)]
    quoted = why_it_stopped("\n".join(lines)).split(" | ")
    assert [q.split(" x")[0] for q in quoted] == [f"ERROR agent: problem {i}" for i in (2, 3, 4)]
    assert all(len(q) <= 240 for q in quoted)


def test_anything_shaped_like_a_token_is_masked():
    output = (
        "2026-12-01 10:00:00,000 ERROR agent: refused sk-ant-oat01-abcdefghijklmnopqrstuvwxyz\n"
        "curl: Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123 failed\n"
        "git: ghp_abcdefghijklmnopqrstuvwxyz01 was refused\n"
    )
    quoted = why_it_stopped(output)
    assert "abcdefghijklmnop" not in quoted
    assert "sk-ant-***" in quoted and "Bearer ***" in quoted and "gh*_***" in quoted


def test_output_with_nothing_telling_says_nothing():
    assert why_it_stopped("") == ""
    assert why_it_stopped("2026-12-01 10:00:00,000 DEBUG agent: claude: a line of the CLI's stderr\n") == ""
