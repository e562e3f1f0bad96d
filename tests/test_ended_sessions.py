"""Ended sessions keep their transcript after eviction, until deleted or retention passes."""

from __future__ import annotations

import pytest

from actors.api import BerthError
from tests.conftest import TreeFactory
from tests.waiting import wait_until


def test_an_evicted_session_stays_readable_and_listed_with_the_filter_until_deleted(
    tree: TreeFactory,
) -> None:
    berth = tree(eviction_ttl=0.2)
    sid = berth.create_session(name="remember me")
    berth.terminate_session(sid, "done for today")
    wait_until(lambda: sid not in berth._directory.ids(), timeout=10, what="the eviction")
    view = berth.get_session(sid)
    assert view.info.status.value == "terminated"
    assert [m.content for m in view.history][-1] == "Session terminated: done for today"
    assert sid not in [info.id for info in berth.list_sessions()]
    assert sid in [info.id for info in berth.list_sessions(include_ended=True)]
    berth.delete_session(sid)
    with pytest.raises(BerthError) as missing:
        berth.get_session(sid)
    assert missing.value.code == 404
    assert sid not in [info.id for info in berth.list_sessions(include_ended=True)]


def test_a_live_session_is_not_listed_twice_with_the_filter(tree: TreeFactory) -> None:
    berth = tree()
    sid = berth.create_session(name="live")
    assert [info.id for info in berth.list_sessions(include_ended=True)].count(sid) == 1
