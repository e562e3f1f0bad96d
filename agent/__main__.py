"""Entry point of the session container: ``python3 -m agent`` / ``berth-agent``.

As PID 1 (or with ``BERTH_SUPERVISE=1``) it supervises a forked worker
process that is the actual agent; otherwise (or with ``--worker``) it is the
agent itself.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from agent import isolation
from agent.app import Agent
from agent.config import AgentConfig, ConfigError
from agent.pool import (
    WarmRunner,
    assigned_env,
    assignment_path,
    load_assignment,
    pool_token,
    save_assignment,
    wait_for_assignment,
)
from agent.supervisor import Supervisor
from transport.protocol import Assign

log = logging.getLogger("agent")


def main(argv: list[str] | None = None) -> int:
    """Run the agent until it is told to stop; the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=os.environ.get("BERTH_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if "--worker" not in args and (os.getpid() == 1 or os.environ.get("BERTH_SUPERVISE") == "1"):
        return Supervisor(os.environ, run_worker).run()
    return run_worker()


def run_worker() -> int:
    env = dict(os.environ)
    try:
        isolation.prepare(env)  # before a warm CLI starts or a pool assignment is saved
    except (ValueError, OSError, isolation.IsolationError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    warm: WarmRunner | None = None
    if env.get("BERTH_POOL_SLOT"):
        if env.get("BERTH_RUNNER") == "sdk" and load_assignment(assignment_path(env)) is None:
            warm = WarmRunner(env)
            if not warm.start():
                warm.close()
                return 1
        pooled = _pooled_env(env, warm)
        if pooled is None:
            if warm is not None:
                warm.close()
                return 1 if warm.died else 0
            return 0
        env = pooled
    try:
        config = AgentConfig.from_env(env)
        config.session_token()
    except (ConfigError, OSError, isolation.IsolationError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    # The development fallback must not leak into the tools the model runs.
    os.environ.pop("BERTH_SESSION_TOKEN", None)
    os.environ.pop("CLAUDE_CODE_OAUTH_TOKEN", None)
    if warm is not None and warm.fits(config):
        return Agent(config, runner=warm.adopt(config)).run(loop=warm.loop)
    if warm is not None:
        log.info("this session needs Claude Code started in its own workspace; restarting it")
        warm.close()
    return Agent(config).run()


def _pooled_env(env: dict[str, str], warm: WarmRunner | None = None) -> dict[str, str] | None:
    """The session environment once the server assigned one (saved for restarts)."""
    path = assignment_path(env)
    assignment = load_assignment(path)
    if assignment is None:
        token = pool_token(env)
        if token is None:
            log.error("cannot start: BERTH_POOL_SLOT is set but there is no pool-token secret")
            return None
        stop = threading.Event()
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
        server_url, slot = env.get("BERTH_SERVER_URL", ""), env["BERTH_POOL_SLOT"]

        def wait() -> Assign | None:
            assert token is not None
            return wait_for_assignment(server_url, slot, token, stop)

        try:
            assignment = warm.wait(wait, stop) if warm is not None else wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if assignment is None:
            return None
        save_assignment(path, assignment)
        log.info("assigned to session %s", assignment.session_id)
    return assigned_env(env, assignment)


if __name__ == "__main__":
    sys.exit(main())
