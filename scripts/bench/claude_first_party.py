"""Experiment: what the CLI sends to Anthropic's own API, against through a loopback URL.

Why a pooled CLI is warmed only when the Messages API is a configured one
(``docs/claude-code.md``): run offline, in a network and mount namespace in
which ``api.anthropic.com`` is 127.0.0.1 and a TLS fake Messages API (a
throw-away certificate the CLI is told to trust) listens on port 443::

    d=$(mktemp -d) && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=api.anthropic.com \\
        -addext subjectAltName=DNS:api.anthropic.com -keyout $d/key.pem -out $d/cert.pem &&
    printf '127.0.0.1 localhost api.anthropic.com\\n' > $d/hosts &&
    unshare -n -m sh -c "ip link set lo up && mount --bind $d/hosts /etc/hosts &&
        exec python3 -m scripts.bench.claude_first_party $d"

It drives two CLIs, one with no ``ANTHROPIC_BASE_URL`` (so it talks to
``api.anthropic.com`` as a cold session does) and one pointed at the
agent's stand-in, which forwards to ``https://api.anthropic.com``, and
prints what differed in the requests the fake API saw. Set
``FIRST_PARTY_TOKEN`` to start the first one with another token (the
placeholder, to see what a pooled CLI sends before its claim).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent.api_standin import ApiStandIn
from scripts.bench.claude_warmup import TOKEN, Cli

FAKE = r"""
import json, ssl, sys, time
from tests.fake_messages_api import FakeMessagesApi
log = open(sys.argv[1], "a", buffering=1)
class Logged(FakeMessagesApi):
    def _record(self, request):
        body = request.body if isinstance(request.body, dict) else {}
        log.write(json.dumps({"method": request.method, "path": request.path, "headers": request.headers,
            "model": body.get("model"), "keys": sorted(body),
            "system": json.dumps(body.get("system"))}) + "\n")
        super()._record(request)
api = Logged(port=443)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2] + "/cert.pem", sys.argv[2] + "/key.pem")
api._server.socket = context.wrap_socket(api._server.socket, server_side=True)
api.start()
print("up", flush=True)
sys.stdin.read()
"""
VARYING = ("x-claude-code-session-id", "x-client-request-id", "x-claude-code-prompt-id", "content-length")


async def run(certs: Path, work: Path) -> list[dict[str, Any]]:
    log = work / "requests.jsonl"
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE, str(log), str(certs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None
    fake.stdout.readline()
    try:
        direct = await Cli(work, "", os.environ.get("FIRST_PARTY_TOKEN", TOKEN)).open()
        await direct.turn("straight to api.anthropic.com")
        await direct.close()
        os.environ["SSL_CERT_FILE"] = str(certs / "cert.pem")  # the stand-in's Python trusts it too
        stand = await ApiStandIn().start()
        stand.forward_to(None)
        via = await Cli(work, stand.url, TOKEN).open()
        await via.turn("through the stand-in")
        await via.close()
        await stand.close()
    finally:
        fake.kill()
    return [json.loads(line) for line in log.read_text().splitlines()]


def main(argv: list[str]) -> int:
    certs = Path(argv[0])
    work = certs / "work"
    work.mkdir(exist_ok=True)
    os.environ["HOME"] = str(work / "home")
    os.environ["NODE_EXTRA_CA_CERTS"] = str(certs / "cert.pem")  # the CLI inherits it
    requests = asyncio.run(run(certs, work))
    for r in requests:
        print(r["method"], r["path"], (r["headers"].get("authorization") or "")[:24] + "…")
    direct, via = [r for r in requests if r["path"].startswith("/v1/messages") and r["model"]][:2]
    betas = [set(r["headers"].get("anthropic-beta", "").split(",")) for r in (direct, via)]
    print("betas only straight to the API:", sorted(betas[0] - betas[1]))
    print("betas only through the stand-in:", sorted(betas[1] - betas[0]))
    for name in sorted(set(direct["headers"]) | set(via["headers"])):
        if (
            name not in VARYING
            and direct["headers"].get(name) != via["headers"].get(name)
            and name != "anthropic-beta"
        ):
            print(f"header {name}: {direct['headers'].get(name)!r} / {via['headers'].get(name)!r}")
    ids = re.compile(r"cc_version=[^;]*;|cch=[^;]*;|cc_prompt_id=[^;]*;|/[^ ]*/claude/projects/[^/]*")
    same = ids.sub("", direct["system"]) == ids.sub("", via["system"])
    print("system prompt the same (ids left out):", same, "; body keys:", direct["keys"], "/", via["keys"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
