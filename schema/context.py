"""Per-request context shared by every resolver of one HTTP request or websocket connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

import strawberry
from graphql import GraphQLError
from strawberry.dataloader import DataLoader

from jobs.documents import EmailAccount
from jobs.hub import ProgressHub
from jobs.lifecycle import parse_object_id
from jobs.runtime import Runtime


@dataclass
class RequestContext:
    """Connections and identity of one request.

    ``user_id`` is None until the request is authenticated. A websocket gets it when its
    ``connection_init`` is accepted, and the protocol handler stores the payload of that
    message in ``connection_params``.
    """

    runtime: Runtime
    hub: ProgressHub
    user_id: str | None = None
    connection_params: dict[str, object] | None = None
    #: True on a graphql-transport-ws connection, whose handler closes a connection with
    #: invalid credentials with code 4401.
    closes_unauthenticated: bool = False
    #: Batches the account lookups of one execution; uncached because a websocket context
    #: lives as long as its connection and an account may be removed meanwhile.
    accounts: DataLoader[str, EmailAccount | None] = field(init=False)

    def __post_init__(self) -> None:
        self.accounts = DataLoader(load_fn=self._load_accounts, cache=False)

    def require_user_id(self) -> str:
        """Return the signed-in user's id; raises an UNAUTHENTICATED GraphQL error otherwise."""
        if self.user_id is None:
            raise GraphQLError("authentication required", extensions={"code": "UNAUTHENTICATED"})
        return self.user_id

    async def _load_accounts(self, account_ids: list[str]) -> list[EmailAccount | None]:
        user_id = self.require_user_id()
        object_ids = [oid for oid in map(parse_object_id, account_ids) if oid is not None]
        query = {"_id": {"$in": object_ids}, "user_id": user_id}
        found = await EmailAccount.find(query).to_list()
        by_id = {str(account.id): account for account in found}
        return [by_id.get(account_id) for account_id in account_ids]


Info: TypeAlias = strawberry.Info[RequestContext, None]
