"""Google's token-signing certificates, fetched without blocking and cached.

The certificates URL returns a JSON object of PEM certificates by key id, with a
``Cache-Control: max-age`` header, and the cache keeps them for that long. Google rotates its
keys, so a token signed with a key id that is not cached triggers an early refresh, at most
one per ``MIN_REFRESH_INTERVAL_S``, which keeps forged key ids from causing a fetch per request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import httpx

from api.auth.base import AuthUnavailableError

logger = logging.getLogger(__name__)

#: Cache lifetime when the response has no ``max-age``, in seconds.
DEFAULT_MAX_AGE_S = 3600.0
#: Minimum interval between two fetches triggered by an unknown key id, in seconds.
MIN_REFRESH_INTERVAL_S = 30.0
#: Timeout of one fetch, in seconds.
FETCH_TIMEOUT_S = 10.0

_MAX_AGE = re.compile(r"max-age=(\d+)")


class CertificateCache:
    """PEM certificates by key id from ``url``; concurrent callers share one fetch."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._certs: dict[str, str] = {}
        self._expires_at = 0.0
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def certificates(self, key_id: str | None) -> dict[str, str]:
        """Return the certificates, fetched again when expired or when ``key_id`` is unknown.

        Raises AuthUnavailableError when they cannot be fetched.
        """
        async with self._lock:
            if self._needs_fetch(key_id):
                await self._fetch()
            return self._certs

    def _needs_fetch(self, key_id: str | None) -> bool:
        now = time.monotonic()
        if now >= self._expires_at:
            return True
        unknown = key_id is not None and key_id not in self._certs
        return unknown and now - self._fetched_at >= MIN_REFRESH_INTERVAL_S

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_S) as client:
                response = await client.get(self._url)
            response.raise_for_status()
            certs = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.error("fetching Google certificates from %s failed: %s", self._url, exc)
            raise AuthUnavailableError(
                "the server cannot verify Google ID tokens right now; try again later"
            ) from exc
        if not isinstance(certs, dict) or not all(isinstance(v, str) for v in certs.values()):
            logger.error("Google certificates from %s are not a JSON object of PEM", self._url)
            raise AuthUnavailableError(
                "the server cannot verify Google ID tokens right now; try again later"
            )
        now = time.monotonic()
        self._certs = certs
        self._fetched_at = now
        self._expires_at = now + _max_age_s(response.headers.get("cache-control", ""))
        logger.info("fetched %d Google certificates from %s", len(certs), self._url)


def _max_age_s(cache_control: str) -> float:
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else DEFAULT_MAX_AGE_S
