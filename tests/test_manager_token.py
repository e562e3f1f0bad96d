"""The manager token issued anew after a restart, as the agent finds it in its secrets dir."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from actors.manager_token import FILE_NAME, reissue


def test_a_reissued_token_replaces_the_file_whole_with_mode_0600_and_nothing_staged_is_left(tmp_path: Path):
    secrets = tmp_path / "session"
    secrets.mkdir(mode=0o700)
    (secrets / FILE_NAME).write_text("the-old-token")
    token = reissue(secrets)
    path = secrets / FILE_NAME
    assert path.read_text() == token.reveal() != "the-old-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in secrets.iterdir()) == [FILE_NAME]
    assert token.reveal() not in repr(token)


def test_a_secrets_dir_that_is_gone_is_not_recreated(tmp_path: Path):
    token = reissue(tmp_path / "gone")
    assert token.reveal() and not (tmp_path / "gone").exists()


def test_the_new_file_keeps_the_old_files_owner_the_containers_user(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user (CI runs as root)")
    secrets = tmp_path / "session"
    secrets.mkdir(mode=0o700)
    old = secrets / FILE_NAME
    old.write_text("the-old-token")
    os.chown(old, 4321, 4322)
    reissue(secrets)
    assert (old.stat().st_uid, old.stat().st_gid) == (4321, 4322)
