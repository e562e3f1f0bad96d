"""The ``berth`` command: ``berth demo`` and ``berth serve``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from actors.config import BerthConfig, default_state_dir
from actors.runtime import EngineUnavailable, ExternalRuntime
from actors.secret import Secret
from transport.demo import run_demo
from transport.serve import start_server
from transport.settings import ServerSettings


def _config(args: argparse.Namespace) -> BerthConfig:
    return BerthConfig(
        instance_id=args.instance,
        image=args.image,
        state_dir=Path(args.state_dir),
        max_sessions=args.max_sessions,
        claude_dir=Path(args.claude_dir) if args.claude_dir else None,
        agent_runner=args.runner,
        github_token=Secret(os.environ["GITHUB_TOKEN"]) if os.environ.get("GITHUB_TOKEN") else None,
    )


def _serve(args: argparse.Namespace) -> int:
    settings = ServerSettings(host=args.host, port=args.port)
    config = replace(_config(args), warm_pool_size=args.warm)
    options: dict[str, Any] = {}
    if args.runtime == "external":
        options["runtime"] = ExternalRuntime()
    if args.api_token_file:
        options["api_token"] = Secret(Path(args.api_token_file).read_text().strip())
    try:
        running = start_server(config, settings, **options)
    except (EngineUnavailable, ValueError) as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return 2
    print(
        f"Berth is serving on {running.server.http_url} (agents: {running.server.ws_url}/agent/<id>)",
        flush=True,
    )
    if running.new_token:
        token_file = Path(args.state_dir) / "api-token"
        print(f"API token (shown once; kept in {token_file}, mode 0600): {running.api_token.reveal()}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    print("Shutting down: terminating sessions and removing their containers…")
    running.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="berth", description="Run coding-agent sessions in containers.")
    parser.add_argument("--image", default="berth-session:latest", help="session image")
    parser.add_argument("--instance", default="default", help="instance id (labels its containers)")
    parser.add_argument("--state-dir", default=str(default_state_dir()))
    parser.add_argument("--max-sessions", type=int, default=50)
    parser.add_argument("--claude-dir", default=None, help="the .claude directory with .credentials.json")
    parser.add_argument("--runner", default="builtin", choices=["builtin", "sdk"])
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run one session end to end and clean up")
    serve = commands.add_parser("serve", help="serve the REST and WebSocket API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--warm", type=int, default=0, help="pre-started containers for instant sessions")
    serve.add_argument(
        "--runtime",
        choices=["docker", "external"],
        default="docker",
        help="external: start no containers; agents connect from elsewhere (benchmarks, development)",
    )
    serve.add_argument("--api-token-file", default=None, help="read the API token from this file")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return 2
    if args.command == "demo":
        return run_demo(config)
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
