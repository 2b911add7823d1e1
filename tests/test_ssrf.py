"""Mail hosts on internal networks: rejected by connectImapAccount and again by the worker
on the address it connects to; TLS verified against the host name."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from jobs.errors import PermanentScanError, TransientScanError
from jobs.hosts import IPAddress
from jobs.imap import connection
from jobs.imap.connection import open_connection
from jobs.imap.errors import Endpoint
from jobs.settings import get_settings
from scripts.services.apps import WorkerProcess
from tests.clients import graphql
from tests.test_api_harness import Api, new_user_id, open_api

CONNECT = """
mutation Connect($input: ImapAccountInput!) {
  connectImapAccount(input: $input) {
    __typename
    ... on ConnectAccountSuccess { account { id host } }
    ... on InvalidInput { code field message }
  }
}
"""

REJECTED_HOSTS = [
    "127.0.0.1",
    "127.1.2.3",
    "localhost",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "fe80::1",
    "fc00::1",
    "224.0.0.1",
    "ff02::1",
    "100.100.100.200",
    "fd00:ec2::254",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "0.0.0.0",
    "100.64.0.1",
]


@pytest.fixture
async def strict_api(services: Any) -> AsyncIterator[Api]:
    async with open_api(allow_private_hosts=False, allow_insecure_imap=False) as api:
        yield api


async def connect_result(api: Api, host: str, security: str = "SSL") -> dict[str, Any]:
    variables = {
        "input": {"host": host, "security": security, "username": "u", "password": "secret"}
    }
    data = await api.data(new_user_id(), CONNECT, variables)
    result: dict[str, Any] = data["connectImapAccount"]
    return result


@pytest.mark.parametrize("host", REJECTED_HOSTS)
async def test_internal_host_is_rejected(strict_api: Api, host: str) -> None:
    result = await connect_result(strict_api, host)
    assert result["__typename"] == "InvalidInput", result
    assert result["field"] == "host"
    assert "loopback, private, link-local, multicast or metadata address" in result["message"]


async def test_public_address_is_accepted(strict_api: Api) -> None:
    # Resolving an address literal sends nothing over the network, and connecting an
    # account does not contact the server.
    result = await connect_result(strict_api, "8.8.8.8")
    assert result["__typename"] == "ConnectAccountSuccess", result


async def test_name_resolving_to_loopback_is_rejected(
    strict_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr("jobs.accounts.resolve", resolve)
    result = await connect_result(strict_api, "imap.example.com")
    assert result["__typename"] == "InvalidInput"
    assert result["message"].startswith("host 'imap.example.com' resolves to 127.0.0.1")


async def test_private_host_allowed_by_setting(services: Any) -> None:
    async with open_api(allow_private_hosts=True) as api:
        result = await connect_result(api, "127.0.0.1")
    assert result["__typename"] == "ConnectAccountSuccess"


@pytest.mark.parametrize("host", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"])
async def test_metadata_host_rejected_despite_setting(services: Any, host: str) -> None:
    async with open_api(allow_private_hosts=True) as api:
        result = await connect_result(api, host)
    assert result["__typename"] == "InvalidInput"
    assert result["field"] == "host"
    assert result["message"] == (
        f"host {host!r} is a cloud metadata address, not an IMAP server; "
        "enter the name of the IMAP server"
    )


def test_worker_rejects_metadata_despite_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    sockets: list[socket.socket] = []
    metadata = [ipaddress.ip_address("169.254.169.254")]
    monkeypatch.setattr(connection, "resolve", lambda host, port: metadata)
    with pytest.raises(PermanentScanError) as raised:
        open_connection(
            Endpoint("metadata.internal.test", 993, 10.0),
            "SSL",
            ca_file=None,
            allow_insecure=False,
            observer=sockets.append,
            allow_private_hosts=True,
        )
    assert raised.value.code == "HOST_NOT_ALLOWED"
    assert sockets == []


async def test_security_none_needs_setting(strict_api: Api, services: Any) -> None:
    result = await connect_result(strict_api, "8.8.8.8", security="NONE")
    assert result["__typename"] == "InvalidInput"
    assert result["field"] == "security"
    async with open_api(allow_insecure_imap=True, allow_private_hosts=False) as api:
        allowed = await connect_result(api, "8.8.8.8", security="NONE")
    assert allowed["__typename"] == "ConnectAccountSuccess"


# --- the worker's connection ---------------------------------------------------------------


def connect_to(
    dovecot: Any, host: str, *, security: str = "SSL", allow_private: bool, ca: bool = True
) -> tuple[list[socket.socket], Callable[[], None]]:
    """Open a connection to the test Dovecot under the name ``host``; return the sockets seen."""
    sockets: list[socket.socket] = []
    port = dovecot.imaps_port if security == "SSL" else dovecot.port
    imap = open_connection(
        Endpoint(host, port, 10.0),
        security,  # type: ignore[arg-type]
        ca_file=str(dovecot.cafile) if ca else None,
        allow_insecure=True,
        observer=sockets.append,
        allow_private_hosts=allow_private,
    )
    return sockets, imap.shutdown


def test_worker_rejects_loopback_without_connecting(dovecot: Any) -> None:
    sockets: list[socket.socket] = []
    with pytest.raises(PermanentScanError) as raised:
        open_connection(
            Endpoint("127.0.0.1", dovecot.imaps_port, 10.0),
            "SSL",
            ca_file=str(dovecot.cafile),
            allow_insecure=False,
            observer=sockets.append,
            allow_private_hosts=False,
        )
    assert raised.value.code == "HOST_NOT_ALLOWED"
    assert sockets == []


def test_worker_checks_the_current_answer(dovecot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The name resolved to a public address when the account was connected and now
    # resolves to loopback.
    answers = {"imap.rebind.test": [ipaddress.ip_address("127.0.0.1")]}
    monkeypatch.setattr(connection, "resolve", lambda host, port: answers[host])
    with pytest.raises(PermanentScanError) as raised:
        connect_to(dovecot, "imap.rebind.test", allow_private=False)
    assert raised.value.code == "HOST_NOT_ALLOWED"
    assert "resolves to 127.0.0.1" in raised.value.message


def test_worker_connects_to_the_checked_address(
    dovecot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def resolve_once(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(connection, "resolve", resolve_once)
    # "localhost" is in the certificate, so TLS verification by name succeeds while the
    # socket goes to the address resolved once.
    sockets, close = connect_to(dovecot, "localhost", allow_private=True)
    peer = sockets[-1].getpeername()[0]
    close()
    assert calls == ["localhost"]
    assert peer == "127.0.0.1"


def test_tls_verifies_the_host_name(dovecot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        connection, "resolve", lambda host, port: [ipaddress.ip_address("127.0.0.1")]
    )
    for security in ("SSL", "STARTTLS"):
        with pytest.raises(PermanentScanError) as raised:
            connect_to(dovecot, "imap.other-name.test", security=security, allow_private=True)
        assert raised.value.code == "TLS_ERROR", security


def test_tls_needs_the_ca_file(dovecot: Any) -> None:
    with pytest.raises(PermanentScanError) as raised:
        connect_to(dovecot, "127.0.0.1", allow_private=True, ca=False)
    assert raised.value.code == "TLS_ERROR"


def test_unresolvable_host_is_transient(dovecot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(connection, "resolve", fail)
    with pytest.raises(TransientScanError) as raised:
        connect_to(dovecot, "imap.missing.test", allow_private=False)
    assert raised.value.code == "CONNECTION_FAILED"


@pytest.fixture
def only_own_worker(shared_worker: WorkerProcess) -> None:
    """Stop the session's worker, so that only the worker this test starts consumes the scan
    queue. The ``worker`` fixture starts it again for later tests."""
    if shared_worker.is_alive():
        shared_worker.stop()


async def test_scan_fails_on_strict_worker(
    api_server: Any, services: Any, mail_user: Any, only_own_worker: None
) -> None:
    log_file = services.state_dir / f"strict-worker-{time.time_ns()}.log"
    env = {"MAILSCAN_ALLOW_PRIVATE_HOSTS": "0"}
    strict = WorkerProcess(log_file, 1, get_settings().queue_name, env=env)
    strict.start()
    try:
        user = mail_user()
        user_id = new_user_id()
        async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
            variables = {
                "input": {
                    "host": "127.0.0.1",
                    "port": user.imaps_port,
                    "username": user.name,
                    "password": user.password,
                }
            }
            data = await graphql(client, user_id, CONNECT, variables)
            account_id = data["connectImapAccount"]["account"]["id"]
            start = """mutation S($a: ID!) {
              startScan(accountId: $a) { ... on StartScanSuccess { task { id } } } }"""
            started = await graphql(client, user_id, start, {"a": account_id})
            task_id = started["startScan"]["task"]["id"]
            query = "query T($id: ID!) { task(id: $id) { status error { code message } } }"
            deadline = time.monotonic() + 30
            while True:
                task = (await graphql(client, user_id, query, {"id": task_id}))["task"]
                if task["status"] in {"FAILED", "COMPLETED"}:
                    break
                assert time.monotonic() < deadline, task
                await asyncio.sleep(0.3)
    finally:
        strict.stop()
    assert task["status"] == "FAILED"
    assert task["error"]["code"] == "HOST_NOT_ALLOWED"


def test_worker_rejects_plain_text_unless_allowed(dovecot: Any) -> None:
    with pytest.raises(PermanentScanError) as raised:
        open_connection(
            Endpoint("127.0.0.1", dovecot.port, 10.0),
            "NONE",
            ca_file=None,
            allow_insecure=False,
            observer=lambda sock: None,
            allow_private_hosts=True,
        )
    assert raised.value.code == "INSECURE_CONNECTION"
    _sockets, close = connect_to(dovecot, "127.0.0.1", security="NONE", allow_private=True)
    close()
