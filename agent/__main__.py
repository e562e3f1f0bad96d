"""Entry point of the session container: ``python3 -m agent`` / ``berth-agent``."""

from __future__ import annotations

import logging
import os
import sys

from agent.app import Agent
from agent.config import AgentConfig, ConfigError

log = logging.getLogger("agent")


def main() -> int:
    """Run the agent until it is told to stop; the process exit code."""
    logging.basicConfig(
        level=os.environ.get("BERTH_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = AgentConfig.from_env()
        config.session_token()
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        return 2
    # The development fallback must not leak into the tools the model runs.
    os.environ.pop("BERTH_SESSION_TOKEN", None)
    return Agent(config).run()


if __name__ == "__main__":
    sys.exit(main())
