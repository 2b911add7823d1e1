"""Authentication of API requests from the ``Authorization`` value.

An :class:`Authenticator` turns the value of the HTTP ``Authorization`` header (or the
``authorization`` field of a websocket ``connection_init`` payload) into a :class:`Principal`,
or raises :class:`AuthenticationError` with a message the client can act on. The only
scheme so far is the development token ``Bearer dev:<user-id>``, accepted only where
``MAILSCAN_DEV_AUTH`` enables it. A Google ID token authenticator will be a second
implementation of the same protocol.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Protocol

from jobs.settings import Settings

logger = logging.getLogger(__name__)

DEV_TOKEN_PREFIX = "dev:"
_DEV_USER_ID = re.compile(r"[A-Za-z0-9._@-]{1,64}")


@dataclass(frozen=True)
class Principal:
    """The signed-in user a request acts for."""

    user_id: str


class AuthenticationError(Exception):
    """The request carries no valid credentials; the message explains what is wrong."""


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None) -> Principal:
        """Return the principal named by ``authorization``; raise AuthenticationError otherwise."""
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


class DevAuthenticator:
    """Accepts ``Bearer dev:<user-id>`` when enabled, for development and tests only.

    The user id is 1 to 64 characters of letters, digits and ``. _ @ -``.
    """

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        if not token.startswith(DEV_TOKEN_PREFIX):
            raise AuthenticationError(
                "unsupported bearer token; the only form implemented is the development "
                "token 'dev:<user-id>'"
            )
        if not self._enabled:
            raise AuthenticationError(
                "development tokens are disabled on this server (MAILSCAN_DEV_AUTH is off)"
            )
        user_id = token.removeprefix(DEV_TOKEN_PREFIX)
        if not _DEV_USER_ID.fullmatch(user_id):
            raise AuthenticationError(
                f"invalid development user id {user_id!r}; use 1 to 64 characters of "
                "letters, digits and . _ @ -"
            )
        return Principal(user_id=user_id)


def create_authenticator(settings: Settings) -> Authenticator:
    """Return the authenticator the settings call for."""
    if settings.dev_auth:
        logger.warning("development authentication is enabled; never enable it in production")
    return DevAuthenticator(enabled=settings.dev_auth)
