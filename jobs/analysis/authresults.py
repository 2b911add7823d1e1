"""SPF, DKIM and DMARC results read from the Authentication-Results header (RFC 8601)."""

from __future__ import annotations

import re

from jobs.documents import AuthenticationResults, FindingData, FindingKind

#: Results that mean the check failed. ``hardfail`` is an older spelling of ``fail``.
FAILING_RESULTS = frozenset({"fail", "softfail", "permerror", "hardfail"})

_METHODS = ("spf", "dkim", "dmarc")
_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"\s*([a-z0-9_.-]+)\s*(?:/\s*\d+\s*)?=\s*([a-z0-9_-]+)", re.IGNORECASE)


def parse_authentication_results(value: str) -> AuthenticationResults:
    """Read the spf, dkim and dmarc results of one Authentication-Results value.

    When a method appears more than once (one DKIM result per signature), ``pass`` wins if
    any instance passed, otherwise the first result counts. Results are lower-cased.
    """
    results: dict[str, list[str]] = {}
    # The first ";"-separated item is the authserv-id (with an optional version).
    for item in _split_items(_strip_comments(value))[1:]:
        match = _RESULT.match(item)
        if match is None:
            continue
        method = match[1].lower()
        if method in _METHODS:
            results.setdefault(method, []).append(match[2].lower())
    return AuthenticationResults(**{method: _verdict(found) for method, found in results.items()})


def _strip_comments(value: str) -> str:
    # Comments nest; remove the innermost ones until none is left, a bounded number of times.
    for _ in range(10):
        stripped = _COMMENT.sub(" ", value)
        if stripped == value:
            break
        value = stripped
    return value


def _split_items(value: str) -> list[str]:
    """Split on ";" outside quoted strings (a ``reason="a; b"`` property can contain one)."""
    if '"' not in value:
        return value.split(";")
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return items


def _verdict(found: list[str]) -> str:
    return "pass" if "pass" in found else found[0]


def authentication_failure(auth: AuthenticationResults) -> FindingData | None:
    """Flag SPF, DKIM or DMARC results of fail, softfail or permerror, naming each of them."""
    failed = [
        f"{method}={result}"
        for method, result in (("spf", auth.spf), ("dkim", auth.dkim), ("dmarc", auth.dmarc))
        if result in FAILING_RESULTS
    ]
    if not failed:
        return None
    return FindingData(
        kind=FindingKind.AUTH_FAILURE,
        detail=f"Authentication-Results reports {', '.join(failed)}",
    )
