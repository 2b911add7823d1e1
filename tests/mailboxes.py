"""Helpers of the dashboard, GraphiQL, CLI and REST tests: a filled mailbox connected as an
account through the API; this module contains no tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from scripts.demo_mailbox import generate_demo_messages
from tests.clients import graphql

CONNECT = """
mutation Connect($input: ImapAccountInput!) {
  connectImapAccount(input: $input) {
    __typename
    ... on ConnectAccountSuccess { account { id label } }
    ... on InvalidInput { code message field }
  }
}
"""


async def connect_filled_account(
    api_url: str, user_id: str, mail_user: Any, messages: int, label: str
) -> str:
    """Deliver ``messages`` demo messages of the last 2 months to ``mail_user`` and connect
    that mailbox over IMAPS as an account of ``user_id``; return the account id."""
    now = datetime.now(UTC)
    mail_user.deliver_many(generate_demo_messages(messages, months=2, now=now))
    variables = {
        "input": {
            "host": mail_user.host,
            "port": mail_user.imaps_port,
            "security": "SSL",
            "username": mail_user.name,
            "password": mail_user.password,
            "label": label,
        }
    }
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        data = await graphql(client, user_id, CONNECT, variables)
    result = data["connectImapAccount"]
    assert result["__typename"] == "ConnectAccountSuccess", result
    return str(result["account"]["id"])
