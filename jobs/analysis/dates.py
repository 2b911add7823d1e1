"""Parse the Date header into an aware UTC datetime, tolerating the odd forms mailers send."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_date(value: str) -> datetime:
    """Return the instant of a Date header value in UTC.

    Accepts RFC 5322 dates including obsolete zone names and two-digit years, ISO 8601 dates,
    and years written as ``years since 1900`` (``0102`` for 2002, a C ``tm_year`` bug of old
    mailers). A date without a zone, or with ``-0000``, is taken as UTC. Raises ValueError
    when ``value`` has none of these forms or names an impossible instant.
    """
    value = value.strip()
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = _parse_iso(value)
    if 100 <= parsed.year < 200:
        parsed = _add_1900_years(parsed)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"date {value!r} is out of range") from None


def _parse_iso(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"invalid date {value!r}") from None


def _add_1900_years(parsed: datetime) -> datetime:
    try:
        return parsed.replace(year=parsed.year + 1900)
    except ValueError:
        # 29 February of a leap year that is no leap year 1900 years later.
        raise ValueError(f"invalid date {parsed.isoformat()!r}") from None
