"""Experiment: can a started Claude Code CLI be warmed before it has a session?

Not part of ``scripts/bench.sh``: the measurements behind the pooled CLI's
warm-up (``agent/api_standin.py``, ``SdkRunner.warm_up``), kept so they can
be repeated on a new CLI release. Run inside a loopback-only network
namespace (nothing can leave the machine)::

    unshare -n sh -c 'ip link set lo up && exec python3 -m scripts.bench.claude_warmup 10'
    unshare -n sh -c 'ip link set lo up && exec python3 -m scripts.bench.claude_warmup 10 fresh,stand-in-30'

Drives the bundled CLI directly with ``ClaudeSDKClient`` against the fake
Messages API (``tests/fake_messages_api.py``, in its own process, logging
every request it sees). Each variant starts fresh CLIs, as a pool would
(placeholder token until the "claim", then the real one), warms them its
way, and measures the first real prompt → first token, each sample paired
with a warm turn of one long-running CLI (the floor) run just before it, so
that drift on a shared machine hits both. It also checks the harm: did the
real prompt's request carry the real token and the OAuth beta, and only
the real prompt (no warm-up residue the model would see)?

Variants (results in BENCHMARKS.md, "the warm-pool first token"):

- ``fresh``: no warm-up (what a pooled CLI did before).
- ``local-401``: one warm-up prompt sent with the placeholder to an API that
  answers 401 (possible only with a local API), then rewound.
- ``clear``: one turn answered by the stand-in, then ``/clear``.
- ``settings-env``: base URL from ``settings.json``'s ``env``, rewritten at the claim.
- ``flag-env``: the stand-in's turn, rewound, then ``apply_flag_settings``
  switching ``ANTHROPIC_BASE_URL`` to the real API at the claim.
- ``stand-in-N``: N turns answered by the stand-in, each rewound; at the
  claim the stand-in forwards (what the pool does, N = 60).
- ``hop``: what the stand-in's forwarding adds to one streamed request.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.api_standin import ApiStandIn
from agent.credentials import write_access_token
from agent.sdk_credentials import PLACEHOLDER_TOKEN

TOKEN = "sk-ant-oat01-warmup-experiment-token-AAAAAAAA"
QUIET = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
}

FAKE_API = """
import json, sys, time
from tests.fake_messages_api import FakeMessagesApi
log = open(sys.argv[1], "a", buffering=1)
RESIDUE = ("warm-up", "command-name")
class Logged(FakeMessagesApi):
    def _record(self, request):
        body = request.body if isinstance(request.body, dict) else {}
        log.write(json.dumps({"at": time.time(), "bearer": request.bearer, "betas": request.betas,
            "conversation": request.is_conversation, "prompt": request.prompt,
            "roles": [m.get("role") for m in body.get("messages") or []],
            "residue": any(w in json.dumps(body.get("messages")) for w in RESIDUE)}) + "\\n")
        super()._record(request)
api = Logged()
api.reject(sys.argv[2])
api.start()
print("fake api on", api.url, flush=True)
sys.stdin.read()
"""


class FakeApi:
    """The fake Messages API in its own process; it refuses the placeholder with 401."""

    def __init__(self, work: Path) -> None:
        self.log = work / "requests.jsonl"
        argv = [sys.executable, "-c", FAKE_API, str(self.log), PLACEHOLDER_TOKEN]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().split()[-1]

    def since(self, at: float) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [r for r in map(json.loads, lines) if r["at"] >= at and r["conversation"]]

    def stop(self) -> None:
        self.proc.kill()


async def _allow(*_: Any) -> Any:
    from claude_agent_sdk import PermissionResultAllow

    return PermissionResultAllow()


class Cli:
    """One CLI with a config dir of its own, like a pooled container's."""

    def __init__(self, work: Path, base_url: str, token: str, settings_env: dict[str, str] | None = None):
        from claude_agent_sdk import ClaudeAgentOptions

        self.dir = work / f"cli-{uuid.uuid4().hex[:8]}"
        self.config_dir = self.dir / "claude"
        (self.dir / "ws").mkdir(parents=True)
        self.config_dir.mkdir()
        self.set_token(token)
        if settings_env is not None:
            self.write_settings(settings_env)
        env = {"CLAUDE_CONFIG_DIR": str(self.config_dir), "CLAUDE_CODE_OAUTH_TOKEN": "", **QUIET}
        if base_url:
            env["ANTHROPIC_BASE_URL"] = base_url
        self.options = ClaudeAgentOptions(
            cwd=str(self.dir / "ws"),
            include_partial_messages=True,
            can_use_tool=_allow,
            permission_mode="default",
            env=env,
            system_prompt={"type": "preset", "preset": "claude_code", "append": "You are benchmarked."},
            setting_sources=["user", "project"],
        )
        self.client: Any = None
        self.messages: Any = None

    async def open(self) -> Cli:
        from claude_agent_sdk import ClaudeSDKClient

        self.client = ClaudeSDKClient(self.options)
        await self.client.connect()
        self.messages = self.client.receive_messages().__aiter__()
        return self

    async def turn(self, prompt: str, message_id: str | None = None) -> tuple[float, Any]:
        """(prompt → first token, the result message)."""
        from claude_agent_sdk import ResultMessage, StreamEvent

        started = time.perf_counter()
        user = {"type": "user", "message": {"role": "user", "content": prompt}, "parent_tool_use_id": None}
        if message_id is not None:
            user["uuid"] = message_id

        async def one() -> Any:
            yield user

        await self.client.query(one())
        first = float("nan")
        async for message in self.messages:
            delta = isinstance(message, StreamEvent) and message.event.get("type") == "content_block_delta"
            if first != first and delta:
                first = time.perf_counter() - started
            if isinstance(message, ResultMessage):
                return first, message
        raise RuntimeError("the CLI's stream ended")

    async def control(self, request: dict[str, Any]) -> Any:
        return await self.client._query._send_control_request(request)

    async def rewound_turn(self, prompt: str) -> bool:
        """A turn, then the conversation rewound to before it (what the pool does)."""
        message_id = str(uuid.uuid4())
        await self.turn(prompt, message_id)
        response = await self.control({"subtype": "rewind_conversation", "target_message_uuid": message_id})
        return bool(response.get("rewound"))

    def write_settings(self, env: dict[str, str]) -> None:
        (self.config_dir / "settings.json").write_text(json.dumps({"env": env}))

    def set_token(self, token: str) -> None:
        write_access_token(self.config_dir / ".credentials.json", token, None)

    async def close(self) -> None:
        await self.client.disconnect()


def _ms(values: list[float]) -> float:
    good = [v for v in values if v == v]
    return statistics.median(good) * 1000 if good else float("nan")


async def warmed(api: FakeApi, work: Path, how: str, turns: int = 1) -> dict[str, Any]:
    """A fresh CLI warmed ``how``, then the claim and its first real prompt."""
    stand = await ApiStandIn().start()
    local = how in ("local-401", "fresh")
    if how == "settings-env":
        cli = await Cli(work, "", PLACEHOLDER_TOKEN, settings_env={"ANTHROPIC_BASE_URL": stand.url}).open()
    else:
        cli = await Cli(work, api.url if local else stand.url, PLACEHOLDER_TOKEN).open()
    out: dict[str, Any] = {"rewound": True}
    if how == "clear":
        await cli.turn("warm-up")
        await cli.turn("/clear")
    elif how != "fresh":
        for _ in range(turns):
            out["rewound"] &= await cli.rewound_turn("warm-up")
    await asyncio.sleep(0.5)
    # The claim.
    if how == "settings-env":
        cli.write_settings({"ANTHROPIC_BASE_URL": api.url})
        await asyncio.sleep(0.5)
    elif how == "flag-env":
        await cli.control(
            {"subtype": "apply_flag_settings", "settings": {"env": {"ANTHROPIC_BASE_URL": api.url}}}
        )
    else:
        stand.forward_to(api.url)
    cli.set_token(TOKEN)
    since = time.time()
    out["first"], _ = await cli.turn("real first prompt")
    out["second"], _ = await cli.turn("real second prompt")
    [request, *_] = api.since(since) or [{}]
    out["clean"] = (
        request.get("bearer") == TOKEN
        and "oauth-2025-04-20" in (request.get("betas") or [])
        and "assistant" not in (request.get("roles") or ["assistant"])
        and request.get("residue") is False
    )
    await cli.close()
    await stand.close()
    return out


def hop_cost(api_url: str, n: int) -> dict[str, float]:
    """One streamed request's first-delta latency straight to the fake API and through
    a forwarding stand-in (on a loop of its own thread, as in the agent), alternately
    on kept-alive connections: what the hop adds."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    stand = asyncio.run_coroutine_threadsafe(ApiStandIn().start(), loop).result()
    stand.forward_to(api_url)

    def connect(url: str) -> socket.socket:
        parts = urlsplit(url)
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    body = json.dumps(
        {
            "model": "m",
            "stream": True,
            "tools": [{"name": "t"}],
            "messages": [{"role": "user", "content": "hop"}],
        }
    ).encode()
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"anthropic-beta: oauth-2025-04-20\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    def one(sock: socket.socket) -> float:
        started = time.perf_counter()
        sock.sendall(head + body)
        seen, first = b"", float("nan")
        while not (b"message_stop" in seen and seen.endswith(b"\r\n0\r\n\r\n")):
            seen += sock.recv(65536)
            if first != first and b"content_block_delta" in seen:
                first = time.perf_counter() - started
        return first

    direct, via = connect(api_url), connect(stand.url)
    for _ in range(20):
        one(direct), one(via)
    pairs = [(one(direct), one(via)) for _ in range(n)]
    asyncio.run_coroutine_threadsafe(stand.close(), loop).result()
    return {
        "direct_ms": _ms([d for d, _ in pairs]),
        "via_stand_in_ms": _ms([v for _, v in pairs]),
        "paired_difference_ms": _ms([v - d for d, v in pairs]),
    }


async def main_async(n: int, work: Path, only: set[str]) -> dict[str, Any]:
    api = FakeApi(work)
    results: dict[str, Any] = {}
    if not only or "hop" in only:
        results["hop"] = hop_cost(api.url, 300)
        print("hop:", json.dumps({k: round(v, 3) for k, v in results["hop"].items()}), flush=True)
    floor = await Cli(work, api.url, TOKEN).open()
    for k in range(30):
        await floor.turn(f"warm-up of the floor {k}")

    async def variant(name: str, body: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        if only and name not in only:
            return
        samples = []
        for i in range(n):
            floor_first, _ = await floor.turn(f"paired floor {name} {i}")
            sample = await body()
            samples.append({**sample, "floor": floor_first, "ratio": sample["first"] / floor_first})
        results[name] = samples
        clean = sum(1 for s in samples if s["clean"] and s["rewound"])
        print(
            f"{name}: first prompt → first token {_ms([s['first'] for s in samples]):.1f} ms, "
            f"{_ms([s['ratio'] for s in samples]) / 1000:.2f}x the paired warm turn "
            f"({_ms([s['floor'] for s in samples]):.1f} ms); second prompt "
            f"{_ms([s['second'] for s in samples]):.1f} ms; real token, OAuth beta, no residue: "
            f"{clean}/{n}",
            flush=True,
        )

    for how in ("fresh", "local-401", "clear", "settings-env", "flag-env"):
        await variant(how, lambda how=how: warmed(api, work, how))
    for turns in (1, 10, 30, 60):
        await variant(f"stand-in-{turns}", lambda turns=turns: warmed(api, work, "stand-in", turns))
    await floor.close()
    api.stop()
    return results


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 10
    only = set(argv[1].split(",")) if len(argv) > 1 else set()
    work = Path(os.environ.get("WARMUP_WORK", f"/tmp/berth-warmup-{os.getpid()}"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(work / "home")
    results = asyncio.run(main_async(n, work, only))
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"samples in {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
