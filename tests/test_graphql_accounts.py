"""connectImapAccount, accounts and removeAccount through the GraphQL API."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobs.documents import EmailAccount, ScannedMessage, ScanStatus, ScanTask, message_key
from jobs.secrets import decrypt_secret
from tests.test_api_harness import Api, insert_account, insert_tasks, new_user_id, open_api

CONNECT = """
mutation Connect($input: ImapAccountInput!) {
  connectImapAccount(input: $input) {
    __typename
    ... on ConnectAccountSuccess { account { id label host port security username folders } }
    ... on InvalidInput { message code field }
  }
}
"""

REMOVE = """
mutation Remove($id: ID!) {
  removeAccount(id: $id) {
    __typename
    ... on RemoveAccountSuccess { accountId }
    ... on NotFound { message code }
  }
}
"""

TASK = "query Task($id: ID!) { task(id: $id) { id status accountLabel account { id } } }"


def account_input(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 993,
        "security": "SSL",
        "username": "someone",
        "password": "secret password",
    }
    return {**values, **overrides}


@pytest.fixture
async def api(services: Any) -> AsyncIterator[Api]:
    async with open_api() as api:
        yield api


@pytest.fixture
async def strict_api(services: Any) -> AsyncIterator[Api]:
    """An API that rejects private hosts and plain-text IMAP, as in production."""
    async with open_api(allow_private_hosts=False, allow_insecure_imap=False) as api:
        yield api


async def connect(api: Api, user_id: str, **overrides: Any) -> dict[str, Any]:
    data = await api.data(user_id, CONNECT, {"input": account_input(**overrides)})
    result: dict[str, Any] = data["connectImapAccount"]
    return result


async def test_connect_stores_encrypted_password(api: Api) -> None:
    user_id = new_user_id()
    result = await connect(api, user_id)
    assert result["__typename"] == "ConnectAccountSuccess"
    account = result["account"]
    assert account["label"] == "someone@127.0.0.1"
    assert account["folders"] == ["INBOX"]
    assert account["security"] == "SSL"

    stored = await EmailAccount.get(account["id"])
    assert stored is not None
    assert stored.user_id == user_id
    assert "secret password" not in stored.password_encrypted
    assert decrypt_secret(api.runtime.settings, stored.password_encrypted) == "secret password"


async def test_connect_keeps_label_and_folders(api: Api) -> None:
    result = await connect(api, new_user_id(), label="  Work  ", folders=["INBOX", "Archive"])
    assert result["account"]["label"] == "Work"
    assert result["account"]["folders"] == ["INBOX", "Archive"]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"host": ""}, "host", "host is empty; enter the IMAP server name, e.g. imap.example.com"),
        (
            {"host": "imap example.com"},
            "host",
            "host 'imap example.com' is not a valid host name or IP address; "
            "enter the IMAP server name, e.g. imap.example.com",
        ),
        (
            {"host": "-imap.example.com"},
            "host",
            "host '-imap.example.com' is not a valid host name or IP address; "
            "enter the IMAP server name, e.g. imap.example.com",
        ),
        (
            {"port": 0},
            "port",
            "port must be from 1 to 65535, got 0; IMAPS is usually 993, IMAP 143",
        ),
        (
            {"port": 65536},
            "port",
            "port must be from 1 to 65535, got 65536; IMAPS is usually 993, IMAP 143",
        ),
        ({"username": ""}, "username", "username is empty; enter the username of the mailbox"),
        ({"password": ""}, "password", "password is empty; enter the password of the mailbox"),
        ({"folders": []}, "folders", "folders is empty; list at least one folder, e.g. INBOX"),
        (
            {"folders": ["INBOX", " "]},
            "folders",
            "folders[1] is empty; give each folder's name, e.g. INBOX",
        ),
        ({"label": "x" * 101}, "label", "label has 101 characters; use at most 100"),
    ],
)
async def test_connect_rejects_invalid_input(
    api: Api, overrides: dict[str, Any], field: str, message: str
) -> None:
    result = await connect(api, new_user_id(), **overrides)
    assert result == {
        "__typename": "InvalidInput",
        "message": message,
        "code": "INVALID_INPUT",
        "field": field,
    }


async def test_connect_accepts_label_of_100_characters(api: Api) -> None:
    result = await connect(api, new_user_id(), label="x" * 100)
    assert result["__typename"] == "ConnectAccountSuccess"


async def test_connect_rejects_plain_imap_by_default(strict_api: Api) -> None:
    result = await connect(strict_api, new_user_id(), host="imap.example.com", security="NONE")
    assert result["field"] == "security"
    assert result["message"] == (
        "security NONE (IMAP without TLS) is not allowed on this server; use SSL or STARTTLS"
    )


async def test_connect_allows_plain_imap_when_enabled(api: Api) -> None:
    result = await connect(api, new_user_id(), security="NONE", port=143)
    assert result["__typename"] == "ConnectAccountSuccess"


@pytest.mark.parametrize(
    ("host", "addresses"),
    [
        ("127.0.0.1", {"127.0.0.1"}),
        ("localhost", {"127.0.0.1", "::1"}),
        ("10.1.2.3", {"10.1.2.3"}),
        ("192.168.0.10", {"192.168.0.10"}),
        ("169.254.169.254", {"169.254.169.254"}),
        ("100.100.100.200", {"100.100.100.200"}),
        ("224.0.0.1", {"224.0.0.1"}),
        ("0.0.0.0", {"0.0.0.0"}),
        ("::1", {"::1"}),
        ("::ffff:127.0.0.1", {"::ffff:7f00:1"}),
    ],
)
async def test_connect_rejects_internal_hosts(
    strict_api: Api, host: str, addresses: set[str]
) -> None:
    result = await connect(strict_api, new_user_id(), host=host)
    assert result["__typename"] == "InvalidInput"
    assert result["field"] == "host"
    prefix = f"host {host!r} resolves to "
    assert result["message"].startswith(prefix)
    address, rest = result["message"].removeprefix(prefix).split(", ", 1)
    assert address in addresses
    assert rest == (
        "which is a loopback, private, link-local, multicast or metadata address; "
        "enter the public name of the IMAP server"
    )


async def test_connect_rejects_unresolvable_host(
    strict_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # Stands in for DNS, so the test sends no query to a resolver outside this machine.
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fail)
    result = await connect(strict_api, new_user_id(), host="imap.mailscan.invalid")
    assert result["field"] == "host"
    assert result["message"] == (
        "host 'imap.mailscan.invalid' cannot be resolved ([Errno -2] Name or service not "
        "known); check the server name"
    )


async def test_connect_accepts_public_address(strict_api: Api) -> None:
    result = await connect(strict_api, new_user_id(), host="93.184.215.14")
    assert result["__typename"] == "ConnectAccountSuccess"


async def test_accounts_lists_only_own(api: Api) -> None:
    user_id, other_id = new_user_id(), new_user_id()
    first = await connect(api, user_id, label="first")
    second = await connect(api, user_id, label="second")
    await connect(api, other_id, label="other")

    data = await api.data(user_id, "{ accounts { id label } }")
    assert data["accounts"] == [
        {"id": first["account"]["id"], "label": "first"},
        {"id": second["account"]["id"], "label": "second"},
    ]


async def test_remove_account_keeps_task_history(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id, label="old mailbox")
    [task] = await insert_tasks(user_id, account, [ScanStatus.COMPLETED])
    await ScannedMessage(
        id=message_key(str(account.id), "INBOX", 1, 1),
        user_id=user_id,
        account_id=str(account.id),
        folder="INBOX",
        uidvalidity=1,
        uid=1,
    ).insert()

    data = await api.data(user_id, REMOVE, {"id": str(account.id)})
    assert data["removeAccount"] == {
        "__typename": "RemoveAccountSuccess",
        "accountId": str(account.id),
    }

    assert await EmailAccount.get(account.id) is None
    assert await ScannedMessage.find({"account_id": str(account.id)}).count() == 0
    data = await api.data(user_id, TASK, {"id": str(task.id)})
    assert data["task"] == {
        "id": str(task.id),
        "status": "COMPLETED",
        "accountLabel": "old mailbox",
        "account": None,
    }


async def test_remove_account_cancels_active_scan(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    [task] = await insert_tasks(user_id, account, [ScanStatus.QUEUED])

    data = await api.data(user_id, REMOVE, {"id": str(account.id)})
    assert data["removeAccount"]["__typename"] == "RemoveAccountSuccess"

    stored = await ScanTask.get(task.id)
    assert stored is not None
    assert stored.status in {ScanStatus.CANCELLING, ScanStatus.CANCELLED}


async def test_remove_other_users_account_is_not_found(api: Api) -> None:
    account = await insert_account(new_user_id())
    data = await api.data(new_user_id(), REMOVE, {"id": str(account.id)})
    assert data["removeAccount"] == {
        "__typename": "NotFound",
        "message": f"account {str(account.id)!r} not found",
        "code": "NOT_FOUND",
    }
    assert await EmailAccount.get(account.id) is not None


async def test_remove_malformed_account_id_is_not_found(api: Api) -> None:
    data = await api.data(new_user_id(), REMOVE, {"id": "not-an-id"})
    assert data["removeAccount"]["__typename"] == "NotFound"
