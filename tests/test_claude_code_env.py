"""Claude Code's container environment comes from BerthConfig, never carrying a secret."""

from __future__ import annotations

from typing import Any

import pytest

from actors.claude_code import NO_NONESSENTIAL_TRAFFIC, claude_code_env
from actors.config import BerthConfig
from agent.pool import keep_warm_interval, warm_up_turns


def test_by_default_the_cli_talks_to_anthropic_and_may_send_its_non_essential_traffic():
    env = claude_code_env(BerthConfig())
    assert "ANTHROPIC_BASE_URL" not in env
    assert not set(NO_NONESSENTIAL_TRAFFIC) & set(env)
    assert env == {
        "BERTH_TOKEN_WAIT": "5",
        "BERTH_PARK_AFTER": "0",
        "BERTH_ALLOW_DANGEROUS": "1",
        "BERTH_WARM_UP_TURNS": "60",
        "BERTH_KEEP_WARM_INTERVAL": "20",
    }


def test_the_api_base_url_the_quiet_switches_and_the_runner_settings_reach_the_container():
    config = BerthConfig(
        claude_api_base_url="http://127.0.0.1:9999",
        claude_no_nonessential_traffic=True,
        claude_token_wait=0.5,
        claude_park_after=600,
        claude_allow_dangerous=False,
        claude_warm_up_turns=0,
        claude_keep_warm_interval=2.5,
    )
    env = claude_code_env(config)
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9999"
    assert {k: env[k] for k in NO_NONESSENTIAL_TRAFFIC} == NO_NONESSENTIAL_TRAFFIC
    assert (env["BERTH_TOKEN_WAIT"], env["BERTH_PARK_AFTER"], env["BERTH_ALLOW_DANGEROUS"]) == (
        "0.5",
        "600",
        "0",
    )
    assert warm_up_turns(env) == 0  # the pooled agent reads it so: no stand-in, no warm-up
    assert keep_warm_interval(env) == 2.5


@pytest.mark.parametrize("name", ["claude_token_wait", "claude_park_after", "claude_keep_warm_interval"])
def test_a_negative_claude_duration_is_refused_naming_the_field(name):
    with pytest.raises(ValueError, match=name):
        overrides: dict[str, Any] = {name: -1.0}
        BerthConfig(**overrides)


def test_a_negative_warm_up_count_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="claude_warm_up_turns"):
        BerthConfig(claude_warm_up_turns=-1)


def test_without_the_setting_a_pooled_agent_warms_its_cli_with_the_default_turns():
    assert warm_up_turns({}) == warm_up_turns(claude_code_env(BerthConfig())) == 60


def test_without_the_setting_a_pooled_agent_keeps_its_cli_warm_every_twenty_seconds():
    assert keep_warm_interval({}) == keep_warm_interval(claude_code_env(BerthConfig())) == 20.0
    assert keep_warm_interval({"BERTH_KEEP_WARM_INTERVAL": "0"}) == 0.0
