#!/usr/bin/env python3
"""The Berth server as a plain script (the same as ``berth serve``).

    python3 scripts/serve.py --port 8765 --image berth-session:latest
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transport.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
