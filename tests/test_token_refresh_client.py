"""The OAuth refresh client and the credentials write-back, against a real endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.credentials import CredentialsError, read_credentials, write_refreshed
from actors.refresh import OAuthClient, OAuthRefresher, RefreshError, check_endpoint
from actors.secret import Secret
from tests.oauth_server import OLD_ACCESS, OLD_REFRESH, OAuthServer, write_credentials

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"


@pytest.fixture
def server() -> Iterator[OAuthServer]:
    with OAuthServer() as srv:
        yield srv


def client(server: OAuthServer, timeout: float = 5.0) -> OAuthClient:
    return OAuthClient(server.url, CLIENT_ID, timeout)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_grant_is_a_form_post_of_grant_type_refresh_token_and_client_id_returning_the_rotated_tokens(
    server: OAuthServer,
) -> None:
    grant = client(server).refresh_grant(Secret(OLD_REFRESH))
    (request,) = server.requests
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "grant_type": "refresh_token",
        "refresh_token": OLD_REFRESH,
        "client_id": CLIENT_ID,
    }
    access, refresh = server.issued[0]
    assert grant.access_token.reveal() == access
    assert grant.refresh_token is not None and grant.refresh_token.reveal() == refresh
    assert grant.expires_in == 3600


def test_a_server_that_does_not_rotate_leaves_the_refresh_token_unset(server: OAuthServer) -> None:
    server.rotate = False
    grant = client(server).refresh_grant(Secret(OLD_REFRESH))
    assert grant.refresh_token is None


def test_an_http_error_names_the_status_and_description_without_the_refresh_token(
    server: OAuthServer,
) -> None:
    body = json.dumps({"error": "server_error", "error_description": f"could not use {OLD_REFRESH}"})
    server.fail_next(1, status=503, body=body)
    with pytest.raises(RefreshError) as err:
        client(server).refresh_grant(Secret(OLD_REFRESH))
    message = str(err.value)
    assert "HTTP 503" in message and "server_error" in message and "could not use" in message
    assert OLD_REFRESH not in message and OLD_REFRESH not in repr(err.value)
    assert err.value.status == 503 and not err.value.permanent


def test_a_rejected_refresh_token_is_a_permanent_failure_and_a_server_error_is_not(
    server: OAuthServer,
) -> None:
    server.fail_next(1, status=400, body=json.dumps({"error": "invalid_grant"}))
    with pytest.raises(RefreshError) as rejected:
        client(server).refresh_grant(Secret(OLD_REFRESH))
    assert rejected.value.permanent and "invalid_grant" in str(rejected.value)
    server.fail_next(1, status=500, body="<html>oops</html>")
    with pytest.raises(RefreshError) as transient:
        client(server).refresh_grant(Secret(OLD_REFRESH))
    assert not transient.value.permanent and "HTTP 500" in str(transient.value)


def test_a_success_without_an_access_token_fails_without_quoting_the_body(server: OAuthServer) -> None:
    server.fail_next(1, status=200, body=json.dumps({"refresh_token": "sk-ant-ort01-leaky-refresh-0000000"}))
    with pytest.raises(RefreshError) as err:
        client(server).refresh_grant(Secret(OLD_REFRESH))
    assert "without an access_token" in str(err.value) and "leaky" not in str(err.value)


def test_a_slow_endpoint_fails_within_the_timeout(server: OAuthServer) -> None:
    release = server.hold()
    started = time.monotonic()
    with pytest.raises(RefreshError) as err:
        client(server, timeout=0.3).refresh_grant(Secret(OLD_REFRESH))
    assert time.monotonic() - started < 5
    assert "timed out" in str(err.value)
    release.set()


def test_an_unreachable_endpoint_fails_naming_it(server: OAuthServer) -> None:
    url = server.url
    server.close()  # nothing listens on that port any more
    with pytest.raises(RefreshError) as err:
        OAuthClient(url, CLIENT_ID, 2).refresh_grant(Secret(OLD_REFRESH))
    assert "cannot reach" in str(err.value) and url in str(err.value)


def test_a_token_endpoint_must_be_https_except_on_loopback() -> None:
    check_endpoint("https://console.anthropic.com/v1/oauth/token")
    check_endpoint("http://127.0.0.1:8080/token")
    check_endpoint("http://localhost/token")
    for bad in ("http://example.com/token", "ftp://127.0.0.1/x", "console.anthropic.com", "https://a b/"):
        with pytest.raises(ValueError, match="token_endpoint"):
            check_endpoint(bad)


# ---------------------------------------------------------------- write-back


def test_the_refresher_writes_back_new_tokens_and_expiry_keeping_every_other_field_with_mode_0600(
    tmp_path: Path, server: OAuthServer
) -> None:
    path = write_credentials(tmp_path / ".claude", expires_at_ms=1, mcpOAuth={"srv": {"accessToken": "x"}})
    path.chmod(0o644)
    creds = OAuthRefresher(client(server), wall_ms=lambda: 5_000_000).refresh(path)
    access, refresh = server.issued[0]
    data = json.loads(path.read_text())
    assert data["claudeAiOauth"] == {
        "accessToken": access,
        "refreshToken": refresh,
        "expiresAt": 5_000_000 + 3_600_000,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }
    assert data["mcpOAuth"] == {"srv": {"accessToken": "x"}}
    assert mode(path) == 0o600
    assert creds.access_token.reveal() == access and creds.expires_at_ms == 8_600_000
    assert sorted(p.name for p in path.parent.iterdir()) == [".credentials.json"]


def test_without_rotation_the_old_refresh_token_stays_in_the_file(
    tmp_path: Path, server: OAuthServer
) -> None:
    server.rotate = False
    path = write_credentials(tmp_path / ".claude", expires_at_ms=1)
    creds = OAuthRefresher(client(server)).refresh(path)
    assert json.loads(path.read_text())["claudeAiOauth"]["refreshToken"] == OLD_REFRESH
    assert creds.refresh_token is not None and creds.refresh_token.reveal() == OLD_REFRESH


def test_the_file_is_re_read_just_before_the_write_so_a_concurrent_cli_change_is_kept(
    tmp_path: Path, server: OAuthServer
) -> None:
    path = write_credentials(tmp_path / ".claude", expires_at_ms=1)
    release = server.hold()
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(OAuthRefresher(client(server)).refresh(path)))
    worker.start()
    server.wait_for_requests(1)
    # while the request is in flight the Claude CLI writes the file
    data = json.loads(path.read_text())
    data["claudeAiOauth"]["scopes"] = ["user:inference", "user:profile", "user:sessions"]
    data["oauthAccount"] = {"emailAddress": "someone@example.com"}
    path.write_text(json.dumps(data))
    release.set()
    worker.join(timeout=10)
    after = json.loads(path.read_text())
    assert after["oauthAccount"] == {"emailAddress": "someone@example.com"}
    assert after["claudeAiOauth"]["scopes"][-1] == "user:sessions"
    assert after["claudeAiOauth"]["accessToken"] == server.issued[0][0]


def test_a_symlinked_credentials_file_is_updated_through_its_link(tmp_path: Path) -> None:
    real = write_credentials(tmp_path / "store" / ".claude")
    claude = tmp_path / "home" / ".claude"
    claude.mkdir(parents=True)
    (claude / ".credentials.json").symlink_to(real)
    write_refreshed(claude / ".credentials.json", Secret("sk-ant-oat01-through-the-link-0000"), None, 123)
    assert (claude / ".credentials.json").is_symlink()
    assert (
        json.loads(real.read_text())["claudeAiOauth"]["accessToken"] == "sk-ant-oat01-through-the-link-0000"
    )
    assert mode(real) == 0o600


def test_without_expires_in_the_old_expiry_is_dropped_rather_than_left_looking_expired(
    tmp_path: Path,
) -> None:
    path = write_credentials(tmp_path / ".claude", expires_at_ms=1)
    write_refreshed(path, Secret("sk-ant-oat01-no-expiry-given-00000"), None, None)
    assert "expiresAt" not in json.loads(path.read_text())["claudeAiOauth"]
    assert read_credentials(path).expires_at_ms is None


def test_a_file_without_a_refresh_token_is_a_permanent_failure_and_sends_nothing(
    tmp_path: Path, server: OAuthServer
) -> None:
    path = write_credentials(tmp_path / ".claude", refresh=None, expires_at_ms=1)
    with pytest.raises(RefreshError) as err:
        OAuthRefresher(client(server)).refresh(path)
    assert err.value.permanent and "no refresh token" in str(err.value)
    assert server.count == 0


def test_a_malformed_credentials_file_is_reported_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / ".credentials.json"
    path.parent.mkdir()
    path.write_text('{"claudeAiOauth": {"accessToken": "' + OLD_ACCESS + '"')
    with pytest.raises(CredentialsError) as err:
        read_credentials(path)
    assert "not valid JSON" in str(err.value) and OLD_ACCESS not in str(err.value)
