"""The inside of a test that runs in a loopback-only network namespace.

Real-CLI tests start a subprocess in a namespace that has only ``lo`` (so
nothing the CLI does can reach the outside), run one scenario there and read
its result from the ``RESULT {json}`` line it prints. This is that
subprocess's side: check the namespace, run, print.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

LOOPBACK_ONLY = {"interfaces": ["lo"], "outside": "unreachable"}


def isolation() -> dict[str, Any]:
    """What this network namespace offers: its interfaces, and whether the outside is reachable."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: any route at all would accept this
        outside = "reachable"
    except OSError:
        outside = "unreachable"
    finally:
        probe.close()
    return {"interfaces": sorted(name for _, name in socket.if_nameindex()), "outside": outside}


def run_scenario(scenario: Callable[[], dict[str, Any]], env: Mapping[str, str] = {}) -> int:
    """Exit status 3 outside a loopback-only namespace, 1 if ``scenario`` raised
    (its traceback on stderr), else 0 after printing its result."""
    for key, value in env.items():
        os.environ.setdefault(key, value)
    found = isolation()
    if found != LOOPBACK_ONLY:
        print(f"refusing to run: this is not a loopback-only network namespace: {found}", file=sys.stderr)
        return 3
    try:
        result = scenario()
    except BaseException:
        traceback.print_exc()
        return 1
    print("RESULT " + json.dumps({**result, "isolation": found}), flush=True)
    return 0
