"""The authenticator protocol, its result and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Principal:
    """The signed-in user a request acts for."""

    user_id: str


class AuthenticationError(Exception):
    """The request carries no valid credentials; the message explains what is wrong."""


class ForbiddenError(Exception):
    """The credentials are valid, but the user is not allowed to use this server."""


class AuthUnavailableError(Exception):
    """The credentials cannot be checked now, for example because Google's certificates
    cannot be fetched; the client may try again later."""


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None) -> Principal:
        """Return the principal named by ``authorization``.

        Raises AuthenticationError for missing or invalid credentials, ForbiddenError for a
        valid user who is not allowed in and AuthUnavailableError when the check cannot be
        made now.
        """
        ...


def bearer_token(authorization: str | None) -> str:
    """Return the token of a ``Bearer <token>`` value; raises AuthenticationError otherwise."""
    if not authorization:
        raise AuthenticationError(
            "missing Authorization header; send 'Authorization: Bearer <token>'"
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthenticationError(
            f"unsupported authorization scheme {scheme!r}; send 'Authorization: Bearer <token>'"
        )
    token = token.strip()
    if not token:
        raise AuthenticationError("empty bearer token; send 'Authorization: Bearer <token>'")
    return token
