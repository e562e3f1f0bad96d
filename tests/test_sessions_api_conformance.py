"""docs/sessions-api.md covers every endpoint, field and event type of the SDK it claims to serve.

The lists come from the installed ``anthropic`` package (the specification),
so a newer SDK with a new event type fails here until the table says what
Berth does with it; and a row that says *supported* must match the code.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

from anthropic.resources.beta.sessions import events, resources, sessions
from anthropic.resources.beta.sessions.threads import events as thread_events
from anthropic.resources.beta.sessions.threads import threads
from anthropic.types.beta import session_create_params, session_list_params, session_update_params
from anthropic.types.beta.beta_managed_agents_session import BetaManagedAgentsSession
from anthropic.types.beta.sessions.beta_managed_agents_session_event_type import (
    BetaManagedAgentsSessionEventType,
)
from anthropic.types.beta.sessions.beta_managed_agents_stream_session_events import (
    BetaManagedAgentsStreamSessionEvents,
)

from transport.v1.app import ROUTES

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "sessions-api.md").read_text()
STATUSES = {"supported", "mapped", "not supported"}
HEADER_PARAMS = {"betas", "workspace_id"}


def table_rows() -> dict[str, tuple[str, str]]:
    """``name -> (status, notes)`` of every conformance table row."""
    rows = {}
    for match in re.finditer(r"^\| `([^`]+)` \| (supported|mapped|not supported) \|(.*)\|$", DOC, re.M):
        rows[match.group(1)] = (match.group(2), match.group(3).strip())
    return rows


ROWS = table_rows()


def stream_event_types() -> set[str]:
    members = typing.get_args(typing.get_args(BetaManagedAgentsStreamSessionEvents)[0])
    found: set[str] = set()
    for member in members:
        found.update(typing.get_args(member.model_fields["type"].annotation))
    return found


def endpoints() -> set[str]:
    resources_by_prefix = {
        "sessions": sessions.Sessions,
        "sessions.events": events.Events,
        "sessions.resources": resources.Resources,
        "sessions.threads": threads.Threads,
        "sessions.threads.events": thread_events.Events,
    }
    found = set()
    for prefix, cls in resources_by_prefix.items():
        for name, value in vars(cls).items():
            if callable(value) and not name.startswith("_"):
                found.add(f"{prefix}.{name}")
    return found


def test_every_event_type_of_the_sdk_has_a_conformance_row():
    types = stream_event_types() | set(typing.get_args(BetaManagedAgentsSessionEventType))
    assert len(types) > 40
    missing = sorted(t for t in types if t not in ROWS)
    assert not missing, f"docs/sessions-api.md has no row for event types {missing}"


def test_every_endpoint_of_the_sdk_has_a_conformance_row_and_the_supported_ones_are_routed():
    routed = {rule.endpoint for rule in ROUTES.iter_rules()}
    for endpoint in endpoints():
        assert endpoint in ROWS, f"docs/sessions-api.md has no row for {endpoint}"
        status = ROWS[endpoint][0]
        handler = endpoint.removeprefix("sessions.").replace(".", "_")
        if status == "not supported":
            assert handler not in routed, f"{endpoint} is routed but documented as not supported"
        else:
            assert handler in routed, f"{endpoint} is documented as {status} but not routed"


def test_every_session_field_and_request_parameter_has_a_conformance_row():
    for field in BetaManagedAgentsSession.model_fields:
        assert field in ROWS, f"docs/sessions-api.md has no row for session field {field!r}"
    for params, prefix in (
        (session_create_params.SessionCreateParams, ""),
        (session_update_params.SessionUpdateParams, "update."),
    ):
        for name in set(params.__annotations__) - HEADER_PARAMS:
            assert name in ROWS or prefix + name in ROWS, f"no row for {prefix}{name}"
    for name in set(session_list_params.SessionListParams.__annotations__) - HEADER_PARAMS:
        documented = (
            f"list.{name}" in ROWS or name.split("_gt")[0].split("_lt")[0] in ROWS["sessions.list"][1]
        )
        assert documented, f"sessions.list parameter {name!r} is not documented"


def test_rows_marked_supported_name_event_types_the_mapping_really_emits_or_accepts():
    source = "".join(p.read_text() for p in (REPO / "transport" / "v1").glob("*.py"))
    emitted = (REPO / "transport" / "v1" / "mapping.py").read_text()
    for name, (status, notes) in ROWS.items():
        assert status in STATUSES
        if "." not in name or name.startswith(("sessions.", "list.", "update.")):
            continue
        quoted = f'"{name}"'
        if status == "supported":
            assert quoted in source, f"{name} is documented as supported but appears nowhere in transport/v1"
        if status == "not supported":
            assert quoted not in emitted, f"{name} is documented as not supported but the mapping emits it"
        if status == "mapped":
            assert notes, f"{name} is mapped: the row must say how"
