"""Where credentials may be read from, and the token settings, checked before anything starts."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pykka
import pytest

from actors.api import Berth
from actors.config import BerthConfig
from actors.credentials import ClaudeDirError, check_claude_dir
from actors.token import validate_token_config
from tests.stub_runtime import StubRuntime


@pytest.fixture
def config(tmp_path: Path) -> BerthConfig:
    return BerthConfig(state_dir=tmp_path / "state", claude_dir_root=tmp_path / "home")


def refused(config: BerthConfig) -> str:
    """Berth.start's error for ``config``; nothing may have started."""
    threads = set(threading.enumerate())
    with pytest.raises(ValueError) as err:
        Berth.start(config, runtime=StubRuntime(), environ={})
    assert pykka.ActorRegistry.get_all() == []
    assert set(threading.enumerate()) <= threads, "a thread was started before the check"
    return str(err.value)


def test_a_claude_dir_outside_the_allowed_root_is_refused_naming_the_root_and_the_fix(
    config: BerthConfig, tmp_path: Path
) -> None:
    message = refused(replace(config, claude_dir=tmp_path / "elsewhere" / ".claude"))
    assert "outside the allowed root" in message and str(tmp_path / "home") in message
    assert "claude_dir_root" in message


def test_a_claude_dir_that_escapes_the_root_by_dot_dot_or_symlink_is_refused(
    config: BerthConfig, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "secret" / ".claude").mkdir(parents=True)
    (home / "link").symlink_to(tmp_path / "secret")
    assert "outside the allowed root" in refused(
        replace(config, claude_dir=home / ".." / "secret" / ".claude")
    )
    message = refused(replace(config, claude_dir=home / "link" / ".claude"))
    assert "outside the allowed root" in message and "resolves to" in message


def test_a_claude_dir_not_named_dot_claude_is_refused(config: BerthConfig, tmp_path: Path) -> None:
    message = refused(replace(config, claude_dir=tmp_path / "home" / "claude"))
    assert "must point to a .claude directory" in message and "pass e.g." in message


def test_a_claude_dir_with_a_nul_byte_is_refused(config: BerthConfig, tmp_path: Path) -> None:
    message = refused(replace(config, claude_dir=Path(str(tmp_path / "home") + "/x\x00y/.claude")))
    assert "NUL byte" in message and "\x00" not in message


def test_an_absurdly_long_claude_dir_is_refused_without_echoing_it(
    config: BerthConfig, tmp_path: Path
) -> None:
    long_dir = tmp_path / "home" / ("a" * 600) / ".claude"
    message = refused(replace(config, claude_dir=long_dir))
    assert "characters long (at most 500)" in message and "a" * 600 not in message


def test_a_claude_dir_that_is_a_file_is_refused(config: BerthConfig, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".claude").write_text("not a directory")
    assert "is not a directory" in refused(replace(config, claude_dir=tmp_path / "home" / ".claude"))


def test_refusals_are_claude_dir_errors() -> None:
    with pytest.raises(ClaudeDirError):
        check_claude_dir("/definitely/not/home/.claude")


def test_by_default_the_allowed_root_is_the_users_home(tmp_path: Path) -> None:
    assert check_claude_dir("~/.claude") == Path.home() / ".claude"
    with pytest.raises(ClaudeDirError, match="outside the allowed root") as err:
        check_claude_dir(tmp_path / ".claude")
    assert str(Path.home()) in str(err.value) and "the user's home" in str(err.value)


def test_an_accepted_claude_dir_is_made_absolute_and_need_not_exist_yet(
    config: BerthConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path / "home")
    checked = validate_token_config(replace(config, claude_dir=Path("sub/../.claude")))
    assert checked.claude_dir == tmp_path / "home" / ".claude"
    assert validate_token_config(replace(config, claude_dir=None)).claude_dir is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"token_endpoint": "http://console.anthropic.com/v1/oauth/token"}, "must be an https:// URL"),
        ({"token_refresh_cooldown": -1}, "token_refresh_cooldown must be >= 0"),
        ({"token_refresh_margin": -5}, "token_refresh_margin must be >= 0"),
        ({"token_check_interval": 0}, "token_check_interval must be > 0"),
        ({"token_http_timeout": 0}, "token_http_timeout must be > 0"),
        ({"token_client_id": ""}, "token_client_id"),
    ],
)
def test_bad_token_settings_are_refused_before_anything_starts(
    config: BerthConfig, change: dict[str, object], expected: str
) -> None:
    assert expected in refused(replace(config, **change))  # type: ignore[arg-type]
