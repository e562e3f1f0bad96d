"""Berth sizes two process-wide settings for a thread per session (actors/process_tuning.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from actors.config import BerthConfig

REPO = Path(__file__).resolve().parent.parent

HOST = """
import gc, json, sys, threading
from pathlib import Path
from actors.api import Berth
from actors.config import BerthConfig
from actors.process_tuning import PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS
import ctypes
libc = ctypes.CDLL(None)
slots = lambda: int(libc.prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS, 0, 0, 0))
from tests.stub_runtime import StubRuntime
root = Path(sys.argv[1])
threading.Thread(target=lambda: None).start()  # a threaded process, as any host app is
before = {"gc": gc.get_threshold()[0], "slots": slots()}
config = BerthConfig(instance_id="tuned", state_dir=root / "state", claude_dir_root=root,
                     futex_hash_slots=int(sys.argv[2]), gc_young_threshold=int(sys.argv[3]))
berth = Berth.start(config, runtime=StubRuntime(), environ={"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-x"})
after = {"gc": gc.get_threshold()[0], "slots": slots()}
berth.shutdown()
print(json.dumps({"before": before, "after": after}))
"""


def _host(tmp_path: Path, slots: int, young: int) -> dict[str, dict[str, int]]:
    done = subprocess.run(
        [sys.executable, "-c", HOST, str(tmp_path), str(slots), str(young)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, dict[str, int]] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_FUTEX_HASH) is Linux's")
def test_starting_berth_sizes_the_futex_hash_and_the_young_gc_generation(tmp_path):
    seen = _host(tmp_path, 8192, 12_345)
    assert seen["after"]["gc"] == 12_345
    if seen["before"]["slots"] < 0:  # a kernel before 6.16 has one shared table and no such call
        assert seen["after"]["slots"] < 0
    else:
        assert seen["before"]["slots"] < 8192
        assert seen["after"]["slots"] == 8192


def test_zero_leaves_both_settings_as_the_process_had_them(tmp_path):
    seen = _host(tmp_path, 0, 0)
    assert seen["after"] == seen["before"]


def test_a_futex_hash_size_that_is_not_a_power_of_two_is_refused_naming_the_rule():
    with pytest.raises(ValueError, match=r"futex_hash_slots must be 0 .* or a power of two"):
        BerthConfig(futex_hash_slots=1000)
