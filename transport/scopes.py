"""Who a bearer token speaks for: the API token (everything) or a manager
token (its manager session and that manager's children, nothing else).

A manager token is valid while its manager session lives (not ``error`` or
``terminated``); it dies with it. Requests outside the scope are answered
403 naming the scope, unknown sessions included (a manager learns nothing
of sessions that are not its own).
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.api import Berth
from actors.secret import Secret
from transport.auth import matches


@dataclass(frozen=True)
class Scope:
    #: None: the API token, every operation; else the manager session the token belongs to.
    manager_id: str | None = None


FULL = Scope()

#: What a manager may do to itself.
OWN = frozenset({"get", "manager_step", "manager_pause", "manager_resume"})
#: What a manager may do to its children.
CHILD = frozenset(
    {"get", "delete", "message", "approve", "answer", "interrupt", "settings", "model", "models", "terminate"}
)
#: Operations without a session a manager may use (``create`` makes a child; ``list`` shows only its own).
WIDE = frozenset({"health", "create", "list"})


def scope_for(given: str | None, api_token: Secret, berth: Berth) -> Scope | None:
    """The scope of a presented token; None when it is no valid token."""
    if matches(given, api_token):
        return FULL
    manager = berth.manager_for_token(given)
    return Scope(manager) if manager is not None else None


def refusal(scope: Scope, endpoint: str, sid: str | None, berth: Berth) -> str | None:
    """Why ``scope`` may not call ``endpoint`` on ``sid`` (None: it may)."""
    manager = scope.manager_id
    if manager is None:
        return None
    if sid is None:
        if endpoint in WIDE:
            return None
        return f"this manager token is scoped to manager session {manager} and its children, not {endpoint}"
    if sid == manager:
        if endpoint in OWN:
            return None
        return f"a manager token cannot {endpoint} its own manager session; use the API token"
    if endpoint in CHILD and any(child.id == sid for child in berth.children_of(manager)):
        return None
    return f"this manager token is scoped to manager session {manager} and its children; {sid} is not one"
