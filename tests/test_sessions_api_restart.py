"""The /v1/ sessions API across a restart of a real ``berth serve`` with real containers:
what the API showed before is shown after, and a stream resumes where it stopped."""

from __future__ import annotations

from typing import Any

import anthropic

from tests.deployment import API_TOKEN, Deployment
from tests.waiting import wait_until


def client(d: Deployment) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=d.url, auth_token=API_TOKEN, max_retries=0, timeout=60)


def user_message(text: str) -> Any:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def texts(events: list[Any], kind: str) -> list[str]:
    return [e.content[0].text for e in events if e.type == kind]


def test_after_a_restart_the_api_lists_the_same_events_metadata_and_archive_and_a_stream_resumes(
    deployment: Deployment,
) -> None:
    d = deployment
    d.start()
    api = client(d)
    session = api.beta.sessions.create(
        agent="builtin", environment_id="default", title="kept", metadata={"team": "berth"}
    )
    api.beta.sessions.update(session.id, metadata={"phase": "one"})
    api.beta.sessions.events.send(session.id, events=[user_message("before the restart")])

    def answered() -> list[Any] | None:
        events = list(api.beta.sessions.events.list(session.id, limit=1000))
        return events if texts(events, "agent.message") else None

    before = wait_until(answered, timeout=60, what="the reply before the restart")
    assert before is not None
    d.terminate()
    d.start()
    api = client(d)
    wait_until(lambda: api.beta.sessions.retrieve(session.id).status == "idle", timeout=60, what="idle again")
    after = list(api.beta.sessions.events.list(session.id, limit=1000))
    got, want = [(e.id, e.type) for e in after[: len(before)]], [(e.id, e.type) for e in before]
    assert got == want, f"{got}\n{want}"
    assert texts(after, "user.message") == ["before the restart"]
    kept = api.beta.sessions.retrieve(session.id)
    assert kept.title == "kept" and kept.metadata == {"team": "berth", "phase": "one"}
    with api.beta.sessions.events.stream(
        session.id, extra_headers={"Last-Event-ID": before[-1].id}
    ) as events:
        api.beta.sessions.events.send(session.id, events=[user_message("after the restart")])
        seen = []
        for event in events:
            seen.append(event)
            if event.type == "agent.message":
                break
    assert texts(seen, "user.message") == ["after the restart"]
    assert texts(seen, "agent.message") == ["You said: after the restart"]
    api.beta.sessions.archive(session.id)
    d.kill9()  # the API's own writes are committed before it answers
    d.start()
    assert client(d).beta.sessions.retrieve(session.id).archived_at is not None
