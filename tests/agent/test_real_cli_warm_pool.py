"""A pooled agent's real Claude Code, warmed before its claim, offline.

As in ``tests/agent/test_real_cli.py`` (whose helpers this uses), the CLI
runs in a network namespace with only loopback against the fake Messages
API. ``WarmRunner`` starts it the way a pooled container does: placeholder
token, its ``ANTHROPIC_BASE_URL`` on the agent's stand-in, warm-up turns
answered by the stand-in, each rewound. The test checks what a user would
care about: nothing reached the API before the claim, the session's first
prompt reached it with the session's token and the OAuth beta and with no
trace of the warm-up (in the conversation, in the frames, after a park and
resume), and it was answered.

    unshare -n sh -c 'ip link set lo up && exec python3 -m tests.agent.test_real_cli_warm_pool /tmp/w'
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.sdk_runner import WARM_UP_TURNS
from tests.agent.helpers import RunnerHarness
from tests.agent.test_real_cli import (
    QUIET_ENV,
    TOKEN_A,
    TURN_TIMEOUT,
    bundled_cli,
    namespace,  # noqa: F401  (the fixture)
    run_module_isolated,
)
from tests.fake_messages_api import OAUTH_BETA, FakeMessagesApi
from tests.namespace_scenario import run_scenario
from tests.waiting import wait_until
from transport.protocol import encode

pytestmark = pytest.mark.timeout(300)


def test_a_pooled_cli_is_warmed_offline_and_its_session_sees_no_trace_of_the_warm_up(
    namespace: list[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    result = run_module_isolated(
        namespace, "tests.agent.test_real_cli_warm_pool", [str(tmp_path)], tmp_path / "home"
    )
    assert result["isolation"] == {"interfaces": ["lo"], "outside": "unreachable"}
    # Before the claim: the CLI ran a turn, answered by the stand-in; nothing left.
    assert result["warmed"] is True
    assert result["stand_in_answered"] >= WARM_UP_TURNS
    # ... and, waiting for its claim, more turns that keep it warm, each rewound too.
    assert result["keep_warm_turns"] >= 2 and result["died_while_waiting"] is False
    # The rewound turns are gone from the transcript too (~100 KB each, read back on resume).
    assert result["warm_up_transcript_bytes"] < 20_000
    assert result["api_requests_before_claim"] == []
    assert result["held_before_claim"] == [], "the warm-up's messages would reach the session"
    # The claimed session's first prompt: the session's token, the OAuth beta, a clean conversation.
    assert result["outcomes"] == [["You said: first real prompt", False], ["You said: after parking", False]]
    first, resumed = result["conversation"]
    assert (first["bearer"], first["oauth_beta"]) == (TOKEN_A, True)
    assert first["user_prompts"] == ["first real prompt"]
    assert resumed["user_prompts"] == ["first real prompt", "after parking"]
    assert result["parked_and_resumed"] is True
    assert "warm-up" not in json.dumps(result["conversation"]).lower()
    assert "warm-up" not in json.dumps(result["frames"]).lower()
    assert result["stand_in_forwarded"] == len(result["conversation"])
    assert TOKEN_A not in result["stderr"], "a token was logged"


def _user_prompts(body: dict[str, Any]) -> list[str]:
    """The user's own texts in a request (the CLI's reminders and tool results left out)."""
    prompts = []
    for message in body.get("messages") or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for block in blocks:
            text = str(block.get("text", "")) if block.get("type") == "text" else ""
            if text and not text.lstrip().startswith(("<system-reminder>", "# Environment")):
                prompts.append(text)
    return prompts


def scenario(work: Path) -> dict[str, Any]:
    from agent.config import AgentConfig
    from agent.pool import WarmRunner

    secrets = work / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "session-token").write_text("session-secret\n")
    (work / "workspace").mkdir()
    with FakeMessagesApi() as api:
        # What a pooled container's agent has: its slot, the configured API, no session.
        os.environ["ANTHROPIC_BASE_URL"] = api.url
        os.environ["CLAUDE_CONFIG_DIR"] = str(work / "claude")
        env = {
            **os.environ,
            "BERTH_POOL_SLOT": "pool-warm",
            "BERTH_SERVER_URL": "ws://127.0.0.1:9",
            "BERTH_RUNNER": "sdk",
            "BERTH_CLI_PATH": str(bundled_cli()),
            "BERTH_WORKSPACE": str(work / "workspace"),
            "BERTH_SECRETS_DIR": str(secrets),
            "BERTH_CLOSE_TIMEOUT": "60",
            "BERTH_PARK_AFTER": "1",
            "BERTH_KEEP_WARM_INTERVAL": "0.2",
        }
        warm = WarmRunner(env)
        assert warm.start(), "the pooled CLI did not start"
        runner = warm.runner
        assert runner.stand_in is not None
        before: dict[str, Any] = {
            "warmed": runner.stand_in.answered >= 1 and runner._cli is not None,
            "stand_in_answered": runner.stand_in.answered,
            "api_requests_before_claim": [f"{r.method} {r.path}" for r in api.snapshot()],
            # Frames kept for the session until it runs: none may come from the warm-up turn.
            "held_before_claim": [
                kind
                for kind in (json.loads(encode(f))["type"] for f in runner._held)
                if kind in ("stream", "result", "sdk_message", "status_update", "error")
            ],
        }
        # Waiting for its claim, the CLI is kept warm: more turns the stand-in answers, each rewound.
        warmed_turns = runner.stand_in.answered
        stand_in_now = runner.stand_in

        def claim_after_two_keep_warm_turns() -> None:
            wait_until(lambda: stand_in_now.answered >= warmed_turns + 2, timeout=60, what="keep-warm turns")

        warm.wait(claim_after_two_keep_warm_turns, threading.Event())
        before["keep_warm_turns"] = runner.stand_in.answered - warmed_turns
        before["died_while_waiting"] = warm.died
        before["api_requests_before_claim"] = [f"{r.method} {r.path}" for r in api.snapshot()]
        transcripts = list((work / "claude" / "projects").glob(f"*/{runner.conversation_id}.jsonl"))
        before["warm_up_transcript_bytes"] = sum(t.stat().st_size for t in transcripts)
        # The claim: the session's token arrives in its secrets, as the agent writes it.
        (secrets / "oauth-token").write_text(TOKEN_A + "\n")
        config = AgentConfig.from_env({**env, "BERTH_SESSION_ID": "warm-session"})
        adopted = warm.adopt(config)
        stand_in = runner.stand_in

        async def session() -> dict[str, Any]:
            async with RunnerHarness(adopted, close_bound=30.0) as h:
                outcomes = [await h.turn(h.send("first real prompt"), TURN_TIMEOUT)]
                deadline = time.monotonic() + 30
                while not runner.parked and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                parked = runner.parked
                outcomes.append(await h.turn(h.send("after parking"), TURN_TIMEOUT))
                resumed = bool(runner.resume_seconds)
                frames = [json.loads(encode(f)) for f in h.host.snapshot()]
            return {"outcomes": outcomes, "frames": frames, "parked_and_resumed": parked and resumed}

        during = warm.loop.run_until_complete(session())
        warm.loop.close()
        conversation = [
            {"bearer": r.bearer, "oauth_beta": OAUTH_BETA in r.betas, "user_prompts": _user_prompts(r.body)}
            for r in api.conversation()
        ]
        return {
            **before,
            "outcomes": [[o.result, o.is_error] for o in during["outcomes"]],
            "frames": during["frames"],
            "parked_and_resumed": during["parked_and_resumed"],
            "conversation": conversation,
            "stand_in_forwarded": stand_in.forwarded,
        }


def main(argv: list[str]) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    work = Path(argv[0])
    work.mkdir(parents=True, exist_ok=True)
    (work / "home").mkdir(exist_ok=True)
    os.environ["HOME"] = str(work / "home")
    return run_scenario(lambda: scenario(work), QUIET_ENV)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
