"""The development scheme ``Bearer dev:<user-id>``: any user, no proof; never for production."""

from __future__ import annotations

import re

from api.auth.base import AuthenticationError, Principal, bearer_token

DEV_TOKEN_PREFIX = "dev:"
_DEV_USER_ID = re.compile(r"[A-Za-z0-9._@-]{1,64}")


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
                "unsupported bearer token; this server accepts only development tokens "
                "'dev:<user-id>'"
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
