"""A Berth server in its own process, with ExternalRuntime and a token dump on request.

The same server as ``berth serve --runtime external`` (``start_server`` with
the default ``ServerSettings`` and the CLI's ``BerthConfig``), plus one thing
a benchmark needs and the server rightly does not offer: the session tokens
of the agents it expects, which live only in the server's memory. The
benchmark creates sessions over REST as any client would, then writes
``tokens <path>`` on this process's stdin; the bootstrap writes
``{session id: session token}`` for every live session to ``<path>``
(mode 0600) and answers ``tokens <n>`` on stdout. Nothing is added to the
server itself. EOF on stdin, ``quit``, SIGTERM or SIGINT stop it
(``RunningServer.stop()``).

    python3 -m scripts.bench.server_boot --instance X --state-dir D --api-token-file F
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from actors.config import BerthConfig
from actors.runtime import ExternalRuntime
from actors.secret import Secret
from scripts.bench.common import raise_fd_limit
from transport.serve import RunningServer, start_server
from transport.settings import ServerSettings


def _write_tokens(running: RunningServer, path: Path) -> int:
    berth = running.berth
    tokens = {}
    for info in berth.list_sessions():
        entry = berth.lookup(info.id)
        if entry.ref is not None:
            tokens[info.id] = entry.agent_token.reveal()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(tokens, handle)
    tmp.replace(path)
    return len(tokens)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--max-sessions", type=int, default=50)
    parser.add_argument("--api-token-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--image", default="berth-session:latest")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument(
        "--default-agent-budgets",
        action="store_true",
        help="keep BerthConfig's per-session agent frame and byte budgets (else they are off)",
    )
    args = parser.parse_args()
    budgets: dict[str, Any] = {}
    if not args.default_agent_budgets:
        # The relay benchmarks measure the relay path, one token per frame
        # included; the per-session agent budgets would cap them instead.
        budgets = {
            "agent_frame_rate": 1e9,
            "agent_frame_burst": 1_000_000_000,
            "agent_byte_rate": 1e15,
            "agent_byte_burst": 1 << 60,
        }
        # (A Berth from before the byte budget, measured for a comparison, has no such fields.)
        budgets = {k: v for k, v in budgets.items() if k in BerthConfig.__dataclass_fields__}
    raise_fd_limit(1 << 20)
    config = BerthConfig(
        instance_id=args.instance,
        image=args.image,
        state_dir=Path(args.state_dir),
        max_sessions=args.max_sessions,
        agent_runner="builtin",
        startup_timeout=args.startup_timeout,
        max_connections=20_000,
        max_connections_per_address=20_000,
        # BERTH_BENCH_SESSION_STORE=none measures the relay without persistence, for a comparison.
        session_store=os.environ.get("BERTH_BENCH_SESSION_STORE", "sqlite"),
        **budgets,
    )
    running = start_server(
        config,
        ServerSettings(host="127.0.0.1", port=args.port),
        api_token=Secret(Path(args.api_token_file).read_text().strip()),
        runtime=ExternalRuntime(),
    )
    print(
        f"Berth is serving on {running.server.http_url} (agents: {running.server.ws_url}/agent/<id>)",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def commands() -> None:
        for line in sys.stdin:
            word, _, rest = line.strip().partition(" ")
            if word == "tokens":
                count = _write_tokens(running, Path(rest))
                print(f"tokens {count}", flush=True)
            elif word == "quit":
                break
        stop.set()

    threading.Thread(target=commands, name="bench-commands", daemon=True).start()
    stop.wait()
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
