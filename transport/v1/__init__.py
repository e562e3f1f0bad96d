"""The sessions-and-events API under ``/v1/`` (the Managed Agents shape).

A second view of the same sessions Berth's REST and WebSocket protocol
serve: sessions are Berth sessions, events are Berth's journal events mapped
to the reference's event types (``docs/sessions-api.md``). One module per
concept: ids, errors, the event mapping, the per-session event view, the
session resource, the catalog of agents and environments, SSE streams and
the routes.
"""
