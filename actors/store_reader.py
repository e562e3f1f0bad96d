"""Reading the session store back: what the last committed batch left.

A connection of its own, so a reader never waits for the writer thread and
never sees a batch half-written (SQLite's WAL gives it the last commit).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec

from actors.store_records import StoredSession
from transport.protocol import MessageAdded, SessionEvent


def load_sessions(path: Path, session_id: str | None = None) -> list[StoredSession]:
    """Every stored session (or the one asked for) with its events; committed writes only."""
    decoder = msgspec.json.Decoder(SessionEvent)
    run_decoder = msgspec.json.Decoder(list[SessionEvent])
    reader = sqlite3.connect(path)
    where, args = ("WHERE s.session_id = ?", (session_id,)) if session_id is not None else ("", ())
    try:
        rows = reader.execute(
            "SELECT s.session_id, s.state, t.digest, s.ended_at, s.updated_at, s.trimmed_through, "
            "s.link_received, s.link_epoch "
            "FROM sessions s "
            f"LEFT JOIN tokens t ON t.session_id = s.session_id {where} ORDER BY s.rowid",
            args,
        ).fetchall()
        result = []
        for sid, state, digest, ended_at, updated_at, trimmed, link_received, link_epoch in rows:
            stored = reader.execute(
                "SELECT is_message, body FROM events WHERE session_id = ? ORDER BY seq", (sid,)
            ).fetchall()
            decoded: list[SessionEvent] = []
            for is_message, body in stored:
                if is_message:
                    decoded.append(decoder.decode(body))
                else:
                    decoded.extend(run_decoder.decode(body))
            events = tuple(event for event in decoded if event.seq > trimmed)
            history = tuple(e.message for e in decoded if isinstance(e, MessageAdded))
            result.append(
                StoredSession(
                    sid,
                    bytes(state),
                    digest,
                    ended_at,
                    updated_at,
                    events,
                    history,
                    link_received,
                    link_epoch,
                )
            )
        return result
    finally:
        reader.close()
