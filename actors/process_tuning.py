"""Two process-wide settings that a thread per session needs at 10,000 sessions.

Both are measured (BENCHMARKS.md): creating sessions fell from ~1,400/s to
~330/s between 100 and 10,000 sessions, and is flat with them.

- Linux 6.16 gave each threaded process its own futex hash table, sized for
  its CPUs (16 slots on 2 CPUs) and not for its threads. Every thread that
  waits (each idle session's actor waits for its next message) sits in one
  slot's list, and each wake-up (every GIL hand-off, every message) walks
  it: with 10,000 threads about 600 entries a slot. ``prctl(PR_FUTEX_HASH)``
  sizes it; older kernels refuse the call, which changes nothing.
- Python's young-generation GC threshold (700 allocations) makes collections
  that also walk the older generations' survivors ever more often as
  sessions accumulate; a larger one keeps their cost per create flat.

Berth applies both when it starts (``Berth.start``); 0 in the configuration
leaves either as the process had it, for a host app that manages them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys

from actors.config import BerthConfig

log = logging.getLogger(__name__)

PR_FUTEX_HASH = 78
PR_FUTEX_HASH_SET_SLOTS = 1
PR_FUTEX_HASH_GET_SLOTS = 2


def tune_process(config: BerthConfig) -> None:
    if config.gc_young_threshold:
        _young, *older = gc.get_threshold()
        gc.set_threshold(config.gc_young_threshold, *older)
    if config.futex_hash_slots:
        size_futex_hash(config.futex_hash_slots)


def size_futex_hash(slots: int) -> int | None:
    """Ask for ``slots`` slots in this process's futex hash; the slots it has
    afterwards (0: the kernel's shared table), or None where there is no such call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None
    current = int(libc.prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS, 0, 0, 0))
    if current < 0:
        return None  # a kernel before 6.16: one shared table, nothing to size
    if current >= slots:
        return current
    if libc.prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, slots, 0, 0) != 0:
        errno = ctypes.get_errno()
        log.info("could not size the futex hash to %d slots (errno %d); it keeps %d", slots, errno, current)
        return current
    return int(libc.prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS, 0, 0, 0))
