"""The ``berth`` command: run the server (``serve``, ``demo``), show the
configuration (``config``), and drive sessions on a running server (``ls``,
``new``, ``attach``, ...).

Every option may come before or after the sub-command. Exit codes: 0 ok,
1 the server said no, 2 usage or configuration, 3 the server cannot be reached.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

from actors.runtime import EngineUnavailable, ExternalRuntime
from transport import cli_commands, config_loader
from transport.auth import API_TOKEN_FILE, load_or_create_api_token, read_token_file
from transport.cli_client import SERVER_URL_FILE, Client, Refused, Unreachable, find_server
from transport.cli_view import dump_json
from transport.config_loader import ConfigError, Loaded
from transport.demo import run_demo
from transport.manager_demo import run_manager_demo
from transport.serve import start_server


def version() -> str:
    try:
        return metadata.version("berth")
    except metadata.PackageNotFoundError:
        return "unknown"


def _common(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """The options every sub-command takes (so they work after it, too)."""
    config_loader.add_flags(parser, skip_aliases=skip)
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    parser.add_argument(
        "--server", default=argparse.SUPPRESS, metavar="URL", help="the Berth server (or BERTH_URL)"
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _common(
        argparse.ArgumentParser(
            prog="berth",
            description="Run coding-agent sessions in containers, and drive them.",
            epilog="Options can be given before or after the sub-command.",
            allow_abbrev=False,
        )
    )
    parser.add_argument("--version", action="version", version=f"berth {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = _common(
        commands.add_parser("demo", allow_abbrev=False, help="run one session end to end and clean up")
    )
    demo.add_argument(
        "--manager", action="store_true", help="a manager session orchestrating two child sessions instead"
    )
    serve = _common(
        commands.add_parser(
            "serve", allow_abbrev=False, help="serve the REST and WebSocket API and the web page"
        )
    )
    serve.add_argument(
        "--runtime",
        choices=["docker", "external"],
        default="docker",
        help="external: start no containers; agents connect from elsewhere (benchmarks, development)",
    )
    serve.add_argument("--api-token-file", default=None, help="read the API token from this file")
    config = _common(
        commands.add_parser("config", allow_abbrev=False, help="the effective configuration and its sources")
    )
    config.add_argument("--json", action="store_true")
    cli_commands.add_parsers(commands, _common)
    return parser


def _show_config(loaded: Loaded, as_json: bool) -> int:
    values = loaded.values()
    if as_json:
        dump_json(
            {
                k: {"value": config_loader.shown_value(v), "source": loaded.sources[k]}
                for k, v in values.items()
            },
            sys.stdout,
        )
        return 0
    width = max(len(k) for k in values)
    for name, value in values.items():
        print(f"{name.ljust(width)}  {config_loader.shown_value(value)}  ({loaded.sources[name]})")
    return 0


def _serve(args: argparse.Namespace, loaded: Loaded) -> int:
    config, settings = loaded.config, loaded.server
    options: dict[str, Any] = {}
    if args.runtime == "external":
        options["runtime"] = ExternalRuntime()
    try:  # a missing, empty or weak token file, a port in use, a full disk: one line
        if args.api_token_file:
            token = read_token_file(Path(args.api_token_file))
            print(f"API token: read from {args.api_token_file}", flush=True)
        else:
            token, created = load_or_create_api_token(config.state_dir)
            token_file = config.state_dir / API_TOKEN_FILE
            print(f"API token: kept in {token_file} (mode 0600)", flush=True)
            if created:
                print(f"New API token (shown only now): {token.reveal()}", flush=True)
        running = start_server(config, settings, api_token=token, **options)
    except (EngineUnavailable, ValueError) as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return 2
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    url_file = config.state_dir / SERVER_URL_FILE
    url_file.write_text(running.server.http_url + "\n")
    stop = threading.Event()  # before saying it serves: a SIGTERM from then on is an orderly stop
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(
        f"Berth is serving on {running.server.http_url} (web page: {running.server.http_url}/, "
        f"agents: {running.server.ws_url}/agent/<id>)",
        flush=True,
    )
    stop.wait()
    if config.stop_sessions_on_exit:
        print("Shutting down: terminating sessions and removing their containers…", flush=True)
    else:
        print("Shutting down: sessions keep running and wait for the next start…", flush=True)
    running.stop()
    url_file.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        loaded = config_loader.load(args)
    except ConfigError as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        return _show_config(loaded, args.json)
    if args.command == "demo":
        return run_manager_demo(loaded.config) if args.manager else run_demo(loaded.config)
    if args.command == "serve":
        return _serve(args, loaded)
    client = Client(find_server(loaded, getattr(args, "server", None)), loaded.client.request_timeout)
    try:
        return cli_commands.COMMANDS[args.command](args, client, loaded.client)
    except Refused as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return 1
    except Unreachable as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
