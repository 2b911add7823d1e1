"""Google sign-in: ID tokens signed by a local RSA key, certificates served on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from jobs.documents import EmailAccount, User
from jobs.users import google_user_id
from tests.test_api_harness import Api, drop_database, isolated_settings, open_api

CLIENT_ID = "mailscan-test.apps.googleusercontent.com"
KEY_ID = "test-key-1"
ACCOUNTS = "{ accounts { id } }"
SKEW_S = 30


@dataclass
class SigningKey:
    private_pem: bytes
    certificate_pem: str


def new_signing_key() -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailscan test signer")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey(private_pem, certificate.public_bytes(serialization.Encoding.PEM).decode())


@dataclass
class CertServer:
    url: str
    key: SigningKey
    #: Paths of the GET requests served, in order.
    requests: list[str]
    #: PEM certificates by key id that the server returns; tests may add keys.
    certificates: dict[str, str]


@pytest.fixture(scope="module")
def cert_server() -> Iterator[CertServer]:
    """Google's certificate endpoint format ({key id: PEM}) on a free port of 127.0.0.1."""
    key = new_signing_key()
    served: list[str] = []
    certificates = {KEY_ID: key.certificate_pem}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.append(self.path)
            body = json.dumps(certificates).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "public, max-age=3600")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/oauth2/v1/certs"
    yield CertServer(url, key, served, certificates)
    server.shutdown()
    server.server_close()


def sign(key: SigningKey, key_id: str = KEY_ID, **changes: Any) -> str:
    """Return an ID token for CLIENT_ID issued now, with ``changes`` to its claims."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "aud": CLIENT_ID,
        "sub": "1234567890",
        "email": "alice@example.com",
        "email_verified": True,
        "name": "Alice Example",
        "iat": now,
        "exp": now + 3600,
    }
    claims.update(changes)
    signer = crypt.RSASigner.from_string(key.private_pem, key_id=key_id)  # type: ignore[no-untyped-call]
    token: bytes = jwt.encode(signer, claims, key_id=key_id)  # type: ignore[no-untyped-call]
    return token.decode()


def google_settings(cert_server: CertServer, **changes: Any) -> dict[str, Any]:
    return {
        "google_client_ids": ("another-client", CLIENT_ID),
        "google_certs_url": cert_server.url,
        "google_clock_skew_s": SKEW_S,
        **changes,
    }


@pytest.fixture
async def api(services: Any, cert_server: CertServer) -> AsyncIterator[Api]:
    async with open_api(**google_settings(cert_server)) as api:
        yield api


async def post_token(api: Api, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    response = await api.client.post("/graphql", json={"query": ACCOUNTS}, headers=headers)
    return response.status_code, response.json()


def rejection(status: int, body: dict[str, Any]) -> str:
    assert status == 401, body
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    message: str = error["message"]
    return message


async def test_valid_token_signs_in_and_creates_user(api: Api, cert_server: CertServer) -> None:
    subject = f"sub-{time.time_ns()}"
    status, body = await post_token(api, sign(cert_server.key, sub=subject))
    assert status == 200, body
    assert body == {"data": {"accounts": []}}
    user = await User.find_one({"subject": subject})
    assert user is not None
    assert user.email == "alice@example.com"
    assert user.name == "Alice Example"


async def test_second_sign_in_keeps_one_user(api: Api, cert_server: CertServer) -> None:
    subject = f"sub-{time.time_ns()}"
    for _ in range(3):
        status, _body = await post_token(api, sign(cert_server.key, sub=subject))
        assert status == 200
    assert await User.find({"subject": subject}).count() == 1


async def test_accounts_belong_to_google_user(api: Api, cert_server: CertServer) -> None:
    subject = f"sub-{time.time_ns()}"
    token = sign(cert_server.key, sub=subject)
    mutation = """mutation { connectImapAccount(input: {host: "127.0.0.1", username: "u",
      password: "p"}) { __typename } }"""
    response = await api.client.post(
        "/graphql", json={"query": mutation}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.json() == {
        "data": {"connectImapAccount": {"__typename": "ConnectAccountSuccess"}}
    }
    [account] = await EmailAccount.find({"user_id": google_user_id(subject)}).to_list()
    assert account.username == "u"


async def test_expired_token_is_401(api: Api, cert_server: CertServer) -> None:
    now = int(time.time())
    token = sign(cert_server.key, iat=now - 7200, exp=now - SKEW_S - 60)
    assert "Token expired" in rejection(*await post_token(api, token))


async def test_token_expired_within_skew_is_accepted(api: Api, cert_server: CertServer) -> None:
    now = int(time.time())
    token = sign(cert_server.key, iat=now - 7200, exp=now - SKEW_S + 20)
    status, body = await post_token(api, token)
    assert status == 200, body


async def test_token_from_future_is_401(api: Api, cert_server: CertServer) -> None:
    now = int(time.time())
    token = sign(cert_server.key, iat=now + SKEW_S + 60, exp=now + 3600)
    assert "Token used too early" in rejection(*await post_token(api, token))


async def test_token_issued_within_skew_is_accepted(api: Api, cert_server: CertServer) -> None:
    now = int(time.time())
    token = sign(cert_server.key, iat=now + SKEW_S - 20, exp=now + 3600)
    status, body = await post_token(api, token)
    assert status == 200, body


async def test_wrong_audience_is_401(api: Api, cert_server: CertServer) -> None:
    token = sign(cert_server.key, aud="someone-else.apps.googleusercontent.com")
    assert "Token has wrong audience" in rejection(*await post_token(api, token))


async def test_wrong_issuer_is_401(api: Api, cert_server: CertServer) -> None:
    token = sign(cert_server.key, iss="https://evil.example.com")
    message = rejection(*await post_token(api, token))
    assert message == (
        "invalid Google ID token: issuer 'https://evil.example.com' is not accounts.google.com"
    )


async def test_plain_issuer_is_accepted(api: Api, cert_server: CertServer) -> None:
    status, body = await post_token(api, sign(cert_server.key, iss="accounts.google.com"))
    assert status == 200, body


async def test_bad_signature_is_401(api: Api, cert_server: CertServer) -> None:
    other_key = new_signing_key()
    token = sign(other_key)
    assert "Could not verify token signature" in rejection(*await post_token(api, token))


async def test_tampered_claims_are_401(api: Api, cert_server: CertServer) -> None:
    header, _payload, signature = sign(cert_server.key).split(".")
    forged = sign(cert_server.key, sub="someone-else").split(".")[1]
    token = ".".join([header, forged, signature])
    assert "Could not verify token signature" in rejection(*await post_token(api, token))


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..", "e30.e30.!!"])
async def test_malformed_token_is_401(api: Api, token: str) -> None:
    message = rejection(*await post_token(api, token))
    assert message.startswith(("malformed Google ID token", "invalid Google ID token"))


async def test_missing_token_is_401(api: Api) -> None:
    message = rejection(*await post_token(api, None))
    assert message == "missing Authorization header; send 'Authorization: Bearer <token>'"


async def test_certificates_are_fetched_once(api: Api, cert_server: CertServer) -> None:
    before = len(cert_server.requests)
    for _ in range(5):
        status, _body = await post_token(api, sign(cert_server.key))
        assert status == 200
    # The app was created for this test, so its cache starts empty: exactly one fetch.
    assert len(cert_server.requests) - before == 1


async def test_new_signing_key_is_fetched(
    api: Api, cert_server: CertServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without this, an unknown key id triggers at most one fetch per 30 s.
    monkeypatch.setattr("api.auth.certs.MIN_REFRESH_INTERVAL_S", 0.0)
    status, _body = await post_token(api, sign(cert_server.key))
    assert status == 200
    rotated = new_signing_key()
    cert_server.certificates["test-key-2"] = rotated.certificate_pem
    before = len(cert_server.requests)
    status, body = await post_token(api, sign(rotated, key_id="test-key-2"))
    assert status == 200, body
    assert len(cert_server.requests) - before == 1


async def test_unknown_key_refetch_is_rate_limited(api: Api, cert_server: CertServer) -> None:
    status, _body = await post_token(api, sign(cert_server.key))
    assert status == 200
    before = len(cert_server.requests)
    for _ in range(3):
        message = rejection(*await post_token(api, sign(new_signing_key(), key_id="unknown")))
        assert "unknown" in message
    assert len(cert_server.requests) == before


async def test_unreachable_certificates_are_503(services: Any, cert_server: CertServer) -> None:
    # Nothing listens on port 1 of the loopback interface.
    settings = google_settings(cert_server, google_certs_url="http://127.0.0.1:1/certs")
    async with open_api(**settings) as api:
        response = await api.client.post(
            "/graphql",
            json={"query": ACCOUNTS},
            headers={"Authorization": f"Bearer {sign(cert_server.key)}"},
        )
    assert response.status_code == 503
    [error] = response.json()["errors"]
    assert error == {
        "message": "the server cannot verify Google ID tokens right now; try again later",
        "extensions": {"code": "UNAVAILABLE"},
    }


async def test_dev_token_off_beside_google(api: Api) -> None:
    async with open_api(dev_auth=False, google_client_ids=(CLIENT_ID,)) as api_without_dev:
        message = rejection(*await post_token(api_without_dev, "dev:alice"))
    assert message == "development tokens are disabled on this server (MAILSCAN_DEV_AUTH is off)"


async def test_domain_not_allowed_is_403(services: Any, cert_server: CertServer) -> None:
    settings = google_settings(cert_server, allowed_email_domains=("example.org",))
    async with open_api(**settings) as api:
        status, body = await post_token(api, sign(cert_server.key))
        allowed, _ = await post_token(api, sign(cert_server.key, email="bob@example.org"))
    assert status == 403
    [error] = body["errors"]
    assert error["extensions"] == {"code": "FORBIDDEN"}
    assert allowed == 200


async def test_unverified_email_is_403(services: Any, cert_server: CertServer) -> None:
    settings = google_settings(cert_server, allowed_email_domains=("example.com",))
    async with open_api(**settings) as api:
        status, _body = await post_token(api, sign(cert_server.key, email_verified=False))
    assert status == 403


# --- websockets ----------------------------------------------------------------------------


@pytest.fixture
def ws_client(services: Any, cert_server: CertServer) -> Iterator[TestClient]:
    settings = isolated_settings(
        **google_settings(cert_server, allowed_email_domains=("example.com",))
    )
    with TestClient(create_app(settings)) as client:
        yield client
        assert client.portal is not None
        client.portal.call(drop_database, client.app.state.runtime)  # type: ignore[attr-defined]


def ws_close_code(client: TestClient, token: str) -> int | None:
    """Send connection_init with ``token``; return the close code, or None when acked."""
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        try:
            message = ws.receive_json()
        except WebSocketDisconnect as closed:
            return closed.code
    assert message == {"type": "connection_ack"}
    return None


def test_ws_valid_token_is_acked(ws_client: TestClient, cert_server: CertServer) -> None:
    assert ws_close_code(ws_client, sign(cert_server.key)) is None


def test_ws_expired_token_closes_4401(ws_client: TestClient, cert_server: CertServer) -> None:
    now = int(time.time())
    token = sign(cert_server.key, iat=now - 7200, exp=now - 3600)
    assert ws_close_code(ws_client, token) == 4401


def test_ws_bad_signature_closes_4401(ws_client: TestClient) -> None:
    assert ws_close_code(ws_client, sign(new_signing_key())) == 4401


def test_ws_malformed_token_closes_4401(ws_client: TestClient) -> None:
    assert ws_close_code(ws_client, "not-a-jwt") == 4401


def test_ws_domain_not_allowed_closes_4403(ws_client: TestClient, cert_server: CertServer) -> None:
    assert ws_close_code(ws_client, sign(cert_server.key, email="eve@example.net")) == 4403
