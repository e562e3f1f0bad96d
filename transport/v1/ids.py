"""The API's ids: ``sesn_`` session ids and ``sevt_`` event ids that sort in event order.

A session's id is its Berth id with the reference's prefix, so both views
name the same session. An event id encodes the event's key: its journal
``seq`` times ``KEY_SPAN`` plus a small index (one journal event may become
several API events), zero-padded so that ids compare like their keys.
"""

from __future__ import annotations

SESSION_PREFIX = "sesn_"
EVENT_PREFIX = "sevt_"
PAGE_PREFIX = "page_"
#: Keys per journal seq: room for the API events one journal event becomes.
KEY_SPAN = 1000
_DIGITS = 18


def session_id(berth_id: str) -> str:
    return SESSION_PREFIX + berth_id


def berth_session_id(api_id: str) -> str:
    """The Berth id behind ``sesn_<id>`` (a bare Berth id is accepted as well)."""
    return api_id[len(SESSION_PREFIX) :] if api_id.startswith(SESSION_PREFIX) else api_id


def event_id(key: int) -> str:
    return f"{EVENT_PREFIX}{key:0{_DIGITS}d}"


def event_key(api_id: str) -> int | None:
    """The key inside an event id; None when it is not one of ours."""
    digits = api_id[len(EVENT_PREFIX) :] if api_id.startswith(EVENT_PREFIX) else ""
    if len(digits) != _DIGITS or not digits.isdigit():
        return None
    return int(digits)


def page_token(position: str) -> str:
    return PAGE_PREFIX + position


def page_position(token: str) -> str | None:
    return (
        token[len(PAGE_PREFIX) :] if token.startswith(PAGE_PREFIX) and len(token) > len(PAGE_PREFIX) else None
    )
