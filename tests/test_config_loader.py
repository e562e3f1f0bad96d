"""One configuration: TOML file < BERTH_<FIELD> variables < flags, defaults from the dataclasses."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.config import BerthConfig
from actors.secret import Secret
from transport import config_loader
from transport.cli import build_parser
from transport.config_loader import ConfigError, load
from transport.settings import ClientSettings, ServerSettings

REPO = Path(__file__).resolve().parent.parent


def _load(argv: list[str], environ: dict[str, str] | None = None, file_text: str | None = None, tmp=None):
    env = dict(environ or {})
    if file_text is not None:
        path = tmp / "config.toml"
        path.write_text(file_text)
        env["BERTH_CONFIG"] = str(path)
    return load(build_parser().parse_args(argv), environ={"HOME": str(tmp or "/nonexistent"), **env})


def berth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "transport.cli", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_flag_beats_a_variable_which_beats_the_file(tmp_path):
    loaded = _load(
        ["config", "--eviction-ttl", "3"],
        {"BERTH_EVICTION_TTL": "2", "BERTH_MAX_SESSIONS": "9"},
        "eviction_ttl = 1\nmax_sessions = 4\nhistory_limit = 77\n",
        tmp_path,
    )
    assert loaded.config.eviction_ttl == 3.0 and loaded.sources["eviction_ttl"] == "flag --eviction-ttl"
    assert loaded.config.max_sessions == 9 and loaded.sources["max_sessions"] == "env BERTH_MAX_SESSIONS"
    assert loaded.config.history_limit == 77 and loaded.sources["history_limit"] == str(
        tmp_path / "config.toml"
    )
    assert loaded.config.startup_timeout == BerthConfig.startup_timeout
    assert loaded.sources["startup_timeout"] == "default"


def test_options_work_after_the_sub_command_and_before_it(tmp_path):
    after = _load(["serve", "--instance", "x", "--port", "0"], tmp=tmp_path)
    before = _load(["--instance", "y", "serve"], tmp=tmp_path)
    assert after.config.instance_id == "x" and after.server.port == 0
    assert before.config.instance_id == "y"


def test_every_field_has_a_flag_a_variable_and_a_file_key_with_its_dataclass_default(tmp_path):
    parser = build_parser()
    options = {o for action in parser._actions for o in action.option_strings}
    defaults = {
        **dataclasses.asdict(BerthConfig(state_dir=tmp_path)),
        **dataclasses.asdict(ServerSettings()),
        **dataclasses.asdict(ClientSettings()),
    }
    loaded = _load(["config"], {"BERTH_STATE_DIR": str(tmp_path)}, tmp=tmp_path)
    for name in config_loader.fields():
        assert f"--{name.replace('_', '-')}" in options, name
        assert loaded.sources[name] == ("env BERTH_STATE_DIR" if name == "state_dir" else "default"), name
        assert loaded.values()[name] == defaults[name], name


def test_every_kind_of_field_is_decoded_from_text(tmp_path):
    loaded = _load(
        [
            "config",
            "--container-env",
            "A=1",
            "--container-env",
            "B=x=y",
            "--claude-dir",
            str(tmp_path),
            "--ping-interval",
            "",
        ],
        {
            "BERTH_CONTAINER_COMMAND": "sleep 'a long time'",
            "BERTH_CONTAINER_MEMORY": "",
            "BERTH_GITHUB_TOKEN": "ghp_0123456789abcdefghij",
            "BERTH_WARM_POOL_SIZE": "2",
        },
        tmp=tmp_path,
    )
    config = loaded.config
    assert config.container_env == (("A", "1"), ("B", "x=y"))
    assert config.container_command == ("sleep", "a long time")
    assert config.container_memory is None and loaded.server.ping_interval is None
    assert config.claude_dir == tmp_path and config.warm_pool_size == 2
    assert config.github_token == Secret("ghp_0123456789abcdefghij")


def test_the_file_takes_native_toml_values_and_a_table_for_the_container_environment(tmp_path):
    loaded = _load(
        ["config"],
        file_text=(
            'container_command = ["sleep", "9"]\nport = 9001\nping_interval = 2.5\n'
            '[container_env]\nANTHROPIC_BASE_URL = "http://127.0.0.1:9"\n'
        ),
        tmp=tmp_path,
    )
    assert loaded.config.container_command == ("sleep", "9")
    assert loaded.config.container_env == (("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),)
    assert loaded.server.port == 9001 and loaded.server.ping_interval == 2.5


def test_a_missing_default_file_is_fine_but_a_missing_given_one_is_an_error(tmp_path):
    assert _load(["config"], tmp=tmp_path).config == _load(["config"], tmp=tmp_path).config
    with pytest.raises(ConfigError, match=r"config file .*nope.toml does not exist"):
        _load(["config", "--config", str(tmp_path / "nope.toml")], tmp=tmp_path)


@pytest.mark.parametrize(
    ("argv", "environ", "file_text", "expected"),
    [
        (
            ["--eviction-ttl", "soon"],
            {},
            None,
            "eviction_ttl = 'soon' (from flag --eviction-ttl) is not allowed: expected a number",
        ),
        (
            [],
            {"BERTH_MAX_SESSIONS": "many"},
            None,
            "max_sessions = 'many' (from env BERTH_MAX_SESSIONS) is not allowed: expected a whole number",
        ),
        ([], {}, 'port = "x"', "port = 'x' (from {file}) is not allowed: expected a whole number"),
        (
            ["--max-sessions", "-1"],
            {},
            None,
            "max_sessions = '-1' (from flag --max-sessions) is not allowed: max_sessions must be >= 0",
        ),
        (
            ["--port", "70000"],
            {},
            None,
            "port = '70000' (from flag --port) is not allowed: port must be 0..65535",
        ),
        (
            ["--runner", "gpt"],
            {},
            None,
            "agent_runner = 'gpt' (from flag --agent-runner) is not allowed: "
            "agent_runner must be one of builtin, sdk",
        ),
        (["--instance", "a b"], {}, None, "instance_id = 'a b' (from flag --instance-id) is not allowed"),
        (["--container-env", "NOEQUALS"], {}, None, "container_env: 'NOEQUALS' is not KEY=VALUE"),
        ([], {}, "evicton_ttl = 5", "unknown key 'evicton_ttl'"),
        ([], {}, "eviction_ttl = ", "is not valid TOML"),
        ([], {}, "github_token = 5", "github_token = 5 (from {file}) is not allowed: expected a string"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_field_the_value_and_what_is_allowed(
    tmp_path, argv, environ, file_text, expected
):
    with pytest.raises(ConfigError) as caught:
        _load(["config", *argv], environ, file_text, tmp_path)
    message = str(caught.value)
    assert expected.format(file=tmp_path / "config.toml") in message
    assert "\n" not in message


def test_a_secret_is_masked_in_a_bad_value_message(tmp_path):
    with pytest.raises(ConfigError) as caught:
        _load(["config"], file_text="[github_token]\nx = 1\n", tmp=tmp_path)
    assert "github_token" in str(caught.value)
    secret = "ghp_supersecretvalue0123456789"
    loaded = _load(["config"], {"BERTH_GITHUB_TOKEN": secret}, tmp=tmp_path)
    assert secret not in repr(loaded)


def test_berth_config_prints_each_value_with_its_source_and_masks_secrets(tmp_path):
    secret = "ghp_supersecretvalue0123456789"
    (tmp_path / "c.toml").write_text("max_sessions = 3\n")
    done = berth(
        "config",
        "--config",
        str(tmp_path / "c.toml"),
        "--port",
        "9100",
        env={"BERTH_GITHUB_TOKEN": secret, "BERTH_STATE_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert lines["max_sessions"].endswith(f"3  ({tmp_path / 'c.toml'})")
    assert lines["port"].endswith("9100  (flag --port)")
    assert "(env BERTH_GITHUB_TOKEN)" in lines["github_token"]
    assert secret not in done.stdout and "ghp_…6789" in lines["github_token"]
    assert lines["eviction_ttl"].endswith("300.0  (default)")
    as_json = json.loads(berth("config", "--json", env={"BERTH_GITHUB_TOKEN": secret}).stdout)
    assert as_json["github_token"]["value"] == "ghp_…6789" and as_json["image"]["source"] == "default"


def test_a_bad_value_on_the_command_line_exits_2_with_one_line(tmp_path):
    done = berth("serve", "--eviction-ttl", "soon", env={"BERTH_STATE_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "berth: eviction_ttl = 'soon' (from flag --eviction-ttl) is not allowed: expected a number"
    ]


def test_berth_version_names_the_installed_version():
    done = berth("--version")
    assert done.returncode == 0 and done.stdout.startswith("berth ") and done.stdout.split()[1][0].isdigit()
