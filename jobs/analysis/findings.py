"""Finding constructors, so each detail text is worded in one place.

Every detail names the value that triggered the finding, shortened to ``DETAIL_VALUE_CHARS``.
"""

from __future__ import annotations

from collections import Counter

from jobs.documents import FindingData, FindingKind

#: Longest quoted value inside a finding detail, in characters.
DETAIL_VALUE_CHARS = 120


def shorten(value: str, limit: int = DETAIL_VALUE_CHARS) -> str:
    """Return ``value`` cut to ``limit`` characters, marking a cut with an ellipsis."""
    if len(value) <= limit:
        return value
    return value[: limit - 1] + "\u2026"


def quoted(value: str) -> str:
    """Return ``value`` shortened and quoted for a detail text."""
    return repr(shorten(value))


def malformed_header(label: str, raw: str, reason: str) -> FindingData:
    return FindingData(
        kind=FindingKind.MALFORMED,
        detail=f"cannot decode {label}: {reason} in {quoted(raw)}",
    )


def malformed_defects(defects: list[str]) -> FindingData:
    """Summarize the message's parse defects in one finding, most frequent first."""
    counts = Counter(defects)
    listed = ", ".join(
        defect if count == 1 else f"{defect} (x{count})" for defect, count in counts.most_common()
    )
    noun = "defect" if len(defects) == 1 else "defects"
    return FindingData(
        kind=FindingKind.MALFORMED,
        detail=shorten(f"{len(defects)} parse {noun}: {listed}", 4 * DETAIL_VALUE_CHARS),
    )


def unparseable(error: BaseException) -> FindingData:
    return FindingData(
        kind=FindingKind.MALFORMED,
        detail=f"message cannot be parsed: {type(error).__name__}: {shorten(str(error))}",
    )


def oversized(size: int) -> FindingData:
    return FindingData(
        kind=FindingKind.OVERSIZED,
        detail=f"message of {size} bytes is over the size limit; analysed from its headers only",
    )
