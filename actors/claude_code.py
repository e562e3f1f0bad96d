"""The environment that configures Claude Code in a session container.

Only settings, never a secret: the access token travels as a file
(``docs/credentials.md``). What each variable does: ``docs/claude-code.md``.
"""

from __future__ import annotations

from actors.config import BerthConfig

#: The CLI's switches that keep it from calling anything but the Messages API.
NO_NONESSENTIAL_TRAFFIC = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
}


def claude_code_env(config: BerthConfig) -> dict[str, str]:
    """Environment for the agent and the Claude Code CLI it starts."""
    env = {
        "BERTH_TOKEN_WAIT": f"{config.claude_token_wait:g}",
        "BERTH_PARK_AFTER": f"{config.claude_park_after:g}",
        "BERTH_ALLOW_DANGEROUS": "1" if config.claude_allow_dangerous else "0",
        "BERTH_WARM_UP_TURNS": str(config.claude_warm_up_turns),
        "BERTH_KEEP_WARM_INTERVAL": f"{config.claude_keep_warm_interval:g}",
    }
    if config.claude_api_base_url:
        env["ANTHROPIC_BASE_URL"] = config.claude_api_base_url
    if config.claude_no_nonessential_traffic:
        env.update(NO_NONESSENTIAL_TRAFFIC)
    return env
