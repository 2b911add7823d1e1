"""Authentication of API requests from the ``Authorization`` value.

An :class:`Authenticator` turns the value of the HTTP ``Authorization`` header (or the
``authorization`` field of a websocket ``connection_init`` payload) into a :class:`Principal`.
It raises :class:`AuthenticationError` when the credentials are missing or invalid, and
:class:`ForbiddenError` when they are valid but the user may not use this server.

Schemes, one module each: ``Bearer <Google ID token>`` (:mod:`api.auth.google`), and the
development token ``Bearer dev:<user-id>`` (:mod:`api.auth.dev`), accepted only where
``MAILSCAN_DEV_AUTH`` enables it.
"""

from __future__ import annotations

import logging

from api.auth.base import (
    AuthenticationError,
    Authenticator,
    AuthUnavailableError,
    ForbiddenError,
    Principal,
    bearer_token,
)
from api.auth.dev import DEV_TOKEN_PREFIX, DevAuthenticator
from api.auth.google import GoogleAuthenticator
from jobs.settings import Settings

logger = logging.getLogger(__name__)

__all__ = [
    "AuthUnavailableError",
    "AuthenticationError",
    "Authenticator",
    "DevAuthenticator",
    "ForbiddenError",
    "GoogleAuthenticator",
    "Principal",
    "SchemeAuthenticator",
    "bearer_token",
    "create_authenticator",
]


class SchemeAuthenticator:
    """Sends ``dev:`` tokens to the development authenticator and others to Google's."""

    def __init__(self, dev: DevAuthenticator, google: GoogleAuthenticator | None) -> None:
        self._dev = dev
        self._google = google

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        if token.startswith(DEV_TOKEN_PREFIX) or self._google is None:
            return await self._dev.authenticate(authorization)
        return await self._google.authenticate(authorization)


def create_authenticator(settings: Settings) -> Authenticator:
    """Return the authenticator the settings call for.

    Google sign-in is on when ``MAILSCAN_GOOGLE_CLIENT_IDS`` is set, development tokens when
    ``MAILSCAN_DEV_AUTH`` is.
    """
    if settings.dev_auth:
        logger.warning("development authentication is enabled; never enable it in production")
    google = GoogleAuthenticator.from_settings(settings) if settings.google_client_ids else None
    if google is None and not settings.dev_auth:
        logger.warning("no sign-in is configured; set MAILSCAN_GOOGLE_CLIENT_IDS")
    return SchemeAuthenticator(DevAuthenticator(enabled=settings.dev_auth), google)
