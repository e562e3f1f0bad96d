"""The part of the configuration a manager's rules (and a child's reports) read.

Built once from ``BerthConfig`` and kept in the session's rules, so the pure
cores never see the whole configuration (nor its secrets).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from actors.config import BerthConfig


@dataclass(frozen=True)
class ManagerRules:
    manager_batch_delay: float = 2.0
    manager_continue_delay: float = 3.0
    manager_backoff_base: float = 2.0
    manager_backoff_max: float = 60.0
    manager_fast_turn: float = 3.0
    manager_fast_turn_tokens: int = 50
    manager_child_stale: float = 30.0
    manager_activity_interval: float = 1.0
    manager_child_output_limit: int = 4000
    manager_approval_input_limit: int = 1000
    manager_event_queue_limit: int = 200
    manager_max_pause: float = 86400.0
    manager_orphans_children: bool = False

    @classmethod
    def of(cls, config: BerthConfig) -> ManagerRules:
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})
