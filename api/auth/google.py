"""Google sign-in: ``Bearer <Google ID token>`` verified with google-auth.

google-auth's ``id_token.verify_token`` fetches the certificates with a blocking HTTP
request on every call, so this module fetches and caches them itself
(:mod:`api.auth.certs`) and gives them to ``google.auth.jwt.decode``, which only checks the
signature, ``aud``, ``iat`` and ``exp`` in memory. The issuer and the email domain are checked
here.
"""

from __future__ import annotations

import logging
from typing import Any

from google.auth import exceptions as google_exceptions
from google.auth import jwt

from api.auth.base import AuthenticationError, ForbiddenError, Principal, bearer_token
from api.auth.certs import CertificateCache
from jobs.settings import Settings
from jobs.users import google_user_id, record_google_user

logger = logging.getLogger(__name__)

#: Values of ``iss`` that Google documents for its ID tokens.
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})


class GoogleAuthenticator:
    """Accepts Google ID tokens issued for one of ``client_ids``.

    ``allowed_domains``, when not empty, admits only verified email addresses in those
    domains; any other valid token raises ForbiddenError.
    """

    def __init__(
        self,
        *,
        client_ids: tuple[str, ...],
        certs: CertificateCache,
        clock_skew_s: int,
        allowed_domains: tuple[str, ...] = (),
    ) -> None:
        if not client_ids:
            raise ValueError("client_ids is empty; set MAILSCAN_GOOGLE_CLIENT_IDS")
        self._client_ids = list(client_ids)
        self._certs = certs
        self._clock_skew_s = clock_skew_s
        self._allowed_domains = frozenset(domain.lower() for domain in allowed_domains)
        self._known_subjects: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> GoogleAuthenticator:
        return cls(
            client_ids=settings.google_client_ids,
            certs=CertificateCache(settings.google_certs_url),
            clock_skew_s=settings.google_clock_skew_s,
            allowed_domains=settings.allowed_email_domains,
        )

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        claims = await self.verify(token)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError("invalid Google ID token: it has no 'sub' claim")
        self._check_domain(subject, claims)
        await self._remember(subject, claims)
        return Principal(user_id=google_user_id(subject))

    async def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid token; raises AuthenticationError otherwise."""
        try:
            header = jwt.decode_header(token)  # type: ignore[no-untyped-call]
        except (ValueError, google_exceptions.GoogleAuthError) as exc:
            raise AuthenticationError(f"malformed Google ID token: {exc}") from None
        key_id = header.get("kid")
        certs = await self._certs.certificates(key_id if isinstance(key_id, str) else None)
        try:
            claims: dict[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token,
                certs=certs,
                audience=self._client_ids,
                clock_skew_in_seconds=self._clock_skew_s,
            )
        except (ValueError, google_exceptions.GoogleAuthError) as exc:
            raise AuthenticationError(f"invalid Google ID token: {exc}") from None
        issuer = claims.get("iss")
        if issuer not in GOOGLE_ISSUERS:
            raise AuthenticationError(
                f"invalid Google ID token: issuer {issuer!r} is not accounts.google.com"
            )
        return claims

    def _check_domain(self, subject: str, claims: dict[str, Any]) -> None:
        if not self._allowed_domains:
            return
        email = claims.get("email")
        domain = email.rpartition("@")[2].lower() if isinstance(email, str) else ""
        if claims.get("email_verified") is True and domain in self._allowed_domains:
            return
        logger.info(
            "user %s rejected: email domain %r not allowed", google_user_id(subject), domain
        )
        raise ForbiddenError(
            f"the email domain {domain!r} is not allowed on this server; sign in with an "
            f"address in {', '.join(sorted(self._allowed_domains))}"
        )

    async def _remember(self, subject: str, claims: dict[str, Any]) -> None:
        # One write per subject and process; later sign-ins skip the database.
        if subject in self._known_subjects:
            return
        email = claims.get("email")
        name = claims.get("name")
        await record_google_user(
            subject,
            email if isinstance(email, str) else None,
            name if isinstance(name, str) else None,
        )
        self._known_subjects.add(subject)
