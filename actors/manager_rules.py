"""The part of the configuration a manager's rules (and a child's reports) read.

Built once from ``BerthConfig`` and kept in the session's rules, so the pure
cores never see the whole configuration (nor its secrets).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from actors.config import BerthConfig


@dataclass(frozen=True)
class ManagerRules:
    manager_batch_delay: float
    manager_continue_delay: float
    manager_backoff_base: float
    manager_backoff_max: float
    manager_fast_turn: float
    manager_fast_turn_tokens: int
    manager_child_stale: float
    manager_activity_interval: float
    manager_child_output_limit: int
    manager_approval_input_limit: int
    manager_event_queue_limit: int
    manager_max_pause: float
    manager_orphans_children: bool

    @classmethod
    def of(cls, config: BerthConfig, **overrides: Any) -> ManagerRules:
        """The manager fields of ``config`` (where their defaults live), with test overrides."""
        return cls(**{f.name: overrides.get(f.name, getattr(config, f.name)) for f in fields(cls)})
