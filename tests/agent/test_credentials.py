"""The credentials file and the masked secret wrapper."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from actors.secret import Secret
from agent.credentials import default_credentials_path, read_access_token, write_access_token

TOKEN = "sk-ant-oat01-abcdefghijklmnopqrstuvwxyz-0123456789"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_access_token_is_written_as_claude_credentials_with_private_modes(tmp_path):
    path = tmp_path / "claude" / ".credentials.json"
    write_access_token(path, TOKEN, 1_700_000_000_000)
    assert json.loads(path.read_text()) == {
        "claudeAiOauth": {"accessToken": TOKEN, "expiresAt": 1_700_000_000_000, "scopes": ["user:inference"]}
    }
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_a_new_token_replaces_the_file_without_leaving_temp_files(tmp_path):
    path = tmp_path / ".credentials.json"
    write_access_token(path, "first-token-value-000000", None)
    write_access_token(path, TOKEN, None)
    data = json.loads(path.read_text())["claudeAiOauth"]
    assert (data["accessToken"], data["expiresAt"]) == (TOKEN, None)
    assert "refreshToken" not in data
    assert [p.name for p in tmp_path.iterdir()] == [".credentials.json"]


def test_every_rewrite_changes_the_mtime_the_claude_cli_watches(tmp_path):
    # The CLI re-reads the file only when its mtime changed; coarse clocks
    # (or a clock set back) must not hide a new token.
    path = tmp_path / ".credentials.json"
    write_access_token(path, "first-token-value-000000", None)
    later = path.stat().st_mtime_ns + 3_600 * 10**9
    os.utime(path, ns=(later, later))
    write_access_token(path, TOKEN, None)
    assert path.stat().st_mtime_ns > later
    assert read_access_token(path) == TOKEN


def test_reading_a_missing_or_damaged_credentials_file_gives_no_token(tmp_path):
    path = tmp_path / ".credentials.json"
    assert read_access_token(path) is None
    path.write_text("{not json")
    assert read_access_token(path) is None
    path.write_text(json.dumps({"claudeAiOauth": {"accessToken": ""}}))
    assert read_access_token(path) is None


def test_the_credentials_path_follows_claude_config_dir(tmp_path):
    assert default_credentials_path({"CLAUDE_CONFIG_DIR": str(tmp_path)}) == tmp_path / ".credentials.json"
    assert default_credentials_path({}) == Path.home() / ".claude" / ".credentials.json"


def test_a_secret_shows_only_its_first_and_last_four_characters():
    secret = Secret(TOKEN)
    assert repr(secret) == "Secret(sk-a…6789)"
    assert TOKEN not in f"{secret} {secret!r} {[secret]}"
    assert secret.reveal() == TOKEN


def test_a_short_secret_is_masked_completely():
    assert repr(Secret("hunter2")) == "Secret(…)"
