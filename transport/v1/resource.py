"""The session resource: a Berth session in the reference's ``session`` shape.

Berth's statuses map to the reference's four: ``starting`` and ``idle`` and
the two ``awaiting_*`` are ``idle`` (the session takes input: messages sent
while starting are queued, pending approvals and questions wait for an
answer), ``running`` is ``running``, ``reconnecting`` is ``rescheduling``,
``error`` and ``terminated`` are ``terminated``. Berth's own status and
reason ride along as ``berth_status`` / ``berth_status_reason``.
"""

from __future__ import annotations

import time
from typing import Any

from transport.protocol import SessionInfo
from transport.protocol import SessionStatus as S
from transport.v1.catalog import Agent
from transport.v1.ids import session_id
from transport.v1.mapping import timestamp
from transport.v1.records import SessionRecord

STATUSES = {
    S.STARTING: "idle",
    S.IDLE: "idle",
    S.AWAITING_APPROVAL: "idle",
    S.AWAITING_ANSWER: "idle",
    S.RUNNING: "running",
    S.RECONNECTING: "rescheduling",
    S.ERROR: "terminated",
    S.TERMINATED: "terminated",
}


def api_status(status: S) -> str:
    return STATUSES[status]


def agent_body(agent: Agent, model: str | None) -> dict[str, Any]:
    return {
        "type": "agent",
        "id": agent.id,
        "version": 1,
        "name": agent.name,
        "description": agent.description,
        "model": {"id": model or agent.default_model},
        "system": None,
        "tools": [],
        "mcp_servers": [],
        "skills": [],
        "execution_identity": {"type": "service_account"},
        "berth_runner": agent.runner,
    }


def session_body(info: SessionInfo, record: SessionRecord, agent: Agent) -> dict[str, Any]:
    usage = info.context_usage
    created = timestamp(info.created_at)
    updated = max(record.updated_at, info.last_message_at or info.created_at)
    resources = []
    if info.repo_url:
        checkout = {"type": "branch", "name": info.branch} if info.branch else None
        resources.append(
            {
                "type": "github_repository",
                "id": f"sesrsc_{info.id}_repo",
                "url": info.repo_url,
                "mount_path": "/workspace",
                "checkout": checkout,
                "created_at": created,
                "updated_at": created,
            }
        )
    return {
        "type": "session",
        "id": session_id(info.id),
        "title": info.name,
        "status": api_status(info.status),
        "agent": agent_body(agent, info.model or record.model),
        "environment_id": record.environment_id,
        "metadata": dict(record.metadata),
        "resources": resources,
        "vault_ids": [],
        "outcome_evaluations": [],
        "budget": None,
        "archived_at": timestamp(record.archived_at) if record.archived_at else None,
        "created_at": created,
        "updated_at": timestamp(updated),
        "stats": {"duration_seconds": max(0.0, time.time() - info.created_at)},
        "usage": {
            "input_tokens": usage.input_tokens if usage else 0,
            "output_tokens": usage.output_tokens if usage else 0,
            "cache_read_input_tokens": usage.cache_read_tokens if usage else 0,
        },
        "berth_status": info.status.value,
        "berth_status_reason": info.status_reason,
        "berth_permission_mode": info.permission_mode,
        "berth_total_cost_usd": info.total_cost_usd,
    }
