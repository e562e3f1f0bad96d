"""The web page ``berth serve`` shows at ``/``, in a real headless Chromium.

Debian's ``chromium`` driven by Playwright (no browser download), against a
real server whose sessions run in real containers. Screenshots of the chat at
desktop and phone width land in ``tests/artifacts/`` (gitignored).
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.served import API_TOKEN, call, served
from tests.tcp_proxy import TcpProxy
from transport.serve import RunningServer

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("BERTH_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: scripts/test.sh installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def server(base_config, docker_runtime) -> Iterator[RunningServer]:
    with served(base_config, docker_runtime, token_retry_delay=0) as running:
        yield running


def _until_idle(page: Any, server: RunningServer, sid: str, selector: str = "#chat-status.s-idle") -> None:
    """Wait for the page to show the session idle; on a timeout, say what the page
    and the server showed instead (a flake once waited 90 s here with no clue why)."""
    try:
        page.wait_for_selector(selector, timeout=90_000)
    except Exception as exc:
        status, body = call(server, "GET", f"/api/sessions/{sid}")
        shown = page.locator("#chat-status").all_inner_texts()
        history = body.get("messages", [])[-5:] if isinstance(body, dict) else body
        raise AssertionError(
            f"the page never showed {sid} idle ({exc}); the page shows {shown}; "
            f"the server answers {status}: {body.get('session') if isinstance(body, dict) else ''}; "
            f"its last history: {history}"
        ) from None


def _signed_in(browser: Any, server: RunningServer, viewport: dict[str, int], url: str = "") -> Any:
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(30_000)
    page.goto((url or server.server.http_url) + "/")
    page.fill("#token", API_TOKEN)
    page.click("#login-form button")
    page.wait_for_selector("#app:not([hidden])")
    return page


def _send(page: Any, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def test_the_page_refuses_a_wrong_token_and_names_the_fix(browser, server):
    page = browser.new_page(viewport=PHONE)
    page.goto(server.server.http_url + "/")
    page.fill("#token", "not-the-token")
    page.click("#login-form button")
    error = page.wait_for_selector("#login-error:not([hidden])")
    assert "refused" in error.inner_text() and "api-token" in error.inner_text()
    assert page.is_hidden("#app")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-phone-login.png"))
    page.close()


def test_a_session_created_on_the_page_streams_asks_for_approval_and_survives_a_reload(browser, server):
    page = _signed_in(browser, server, DESKTOP)
    page.click("#new-toggle")
    page.fill("#new-form input[name=name]", "web page test")
    page.click("#new-form button[type=submit]")
    page.wait_for_selector("#chat-status.s-idle", timeout=90_000)
    assert page.inner_text("#chat-name") == "web page test"

    _send(page, "hello from the browser")
    page.wait_for_selector(".msg.assistant:has-text('You said: hello from the browser')")

    _send(page, "/tool Bash echo hi")
    approval = page.wait_for_selector(".approval")
    assert "Bash" in approval.inner_text() and "echo hi" in approval.inner_text()
    page.click(".approval button[data-allow=true]")
    page.wait_for_selector(".msg.tool_result:has-text('Bash ran: echo hi')")
    page.wait_for_selector(".msg.assistant:has-text('Tool Bash ran.')")
    assert page.query_selector(".approval") is None

    _send(page, "/slow 80")
    page.wait_for_selector(".msg.streaming:has-text('t3 ')")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-desktop-streaming.png"))
    page.reload()
    page.wait_for_selector("#app:not([hidden])")  # signed in again from localStorage
    streamed = page.wait_for_selector(".msg.streaming, .msg.assistant:has-text('t79')")
    assert streamed.inner_text().startswith("t0 t1 t2 t3 "), "tokens streamed before the reload are lost"
    final = page.wait_for_selector(".msg.assistant:has-text('t79')")
    assert re.findall(r"t\d+", final.inner_text()) == [f"t{i}" for i in range(80)]
    texts = page.locator(".msg").all_inner_texts()
    assert "hello from the browser" in texts and "Bash ran: echo hi" in texts
    page.wait_for_selector("#chat-status.s-idle")
    sid = page.evaluate("location.hash").removeprefix("#/s/")
    assert call(server, "GET", f"/api/sessions/{sid}")[1]["session"]["status"] == "idle"
    page.screenshot(path=str(ARTIFACTS / "web-desktop.png"))
    page.close()


def test_on_a_phone_the_chat_answers_a_question_interrupts_stops_and_deletes(browser, server):
    status, created = call(server, "POST", "/api/sessions", {"name": "phone"})
    assert status == 201
    sid = created["session"]["id"]
    page = _signed_in(browser, server, PHONE)
    _until_idle(page, server, sid, f".session[data-id='{sid}'] .status.s-idle")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-phone-sessions.png"))
    page.click(f".session[data-id='{sid}'] a")
    page.wait_for_selector("#chat-status.s-idle", timeout=90_000)
    assert page.is_hidden("#list-pane"), "on a phone the chat takes the whole screen"

    _send(page, "/ask Ship it?")
    page.wait_for_selector(".question:has-text('Ship it?')")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-phone-question.png"))
    page.click(".question button:has-text('yes')")
    page.wait_for_selector(".msg.assistant:has-text('You answered: Ship it? = yes')")

    _send(page, "/slow 400")
    page.wait_for_selector(".msg.streaming")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-phone.png"))
    page.click("#interrupt")
    page.wait_for_selector("#chat-status.s-idle")
    assert call(server, "GET", f"/api/sessions/{sid}")[1]["session"]["status"] == "idle"

    page.click("#stop")
    page.wait_for_selector("#chat-status.s-terminated")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#delete")
    page.wait_for_selector("#list-pane:not([hidden]) #empty:not([hidden])")
    assert call(server, "GET", f"/api/sessions/{sid}")[0] == 404
    page.screenshot(path=str(ARTIFACTS / "web-phone-list.png"))
    page.close()


def test_a_dropped_connection_mid_stream_is_resumed_with_nothing_lost_or_shown_twice(browser, server):
    proxy = TcpProxy(server.server.port)
    try:
        status, created = call(server, "POST", "/api/sessions", {"name": "blip"})
        assert status == 201
        sid = created["session"]["id"]
        page = _signed_in(browser, server, DESKTOP, url=proxy.url)
        page.click(f".session[data-id='{sid}'] a")
        _until_idle(page, server, sid)
        _send(page, "/slow 120")
        page.wait_for_selector(".msg.streaming:has-text('t2 ')")
        proxy.cut()
        page.wait_for_selector("#link-state:has-text('reconnecting')")
        page.wait_for_selector("#link-state", state="hidden")
        live = page.wait_for_selector(".msg.streaming:has-text('t40 ')")
        tokens = re.findall(r"t\d+", live.inner_text())
        assert tokens == [f"t{i}" for i in range(len(tokens))], "tokens missed or doubled across the blip"
        final = page.wait_for_selector(".msg.assistant:not(.streaming):has-text('t119')")
        assert re.findall(r"t\d+", final.inner_text()) == [f"t{i}" for i in range(120)]
        assert page.locator(".msg.user").all_inner_texts() == ["/slow 120"]
        page.close()
    finally:
        proxy.close()


def test_the_page_serves_only_its_own_files_and_the_api_still_needs_the_token(server):
    base = server.server.http_url

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(base + path) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status("/") == 200 and status("/web/app.js") == 200 and status("/web/style.css") == 200
    assert status("/web/..%2fweb.py") == 404 and status("/web/nope.js") == 404 and status("/web/") == 404
    assert status("/api/sessions") == 401
