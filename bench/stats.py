"""Percentiles and the median-of-runs summaries printed in the report."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (``fraction`` from 0 to 1); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[rank]


@dataclass(frozen=True)
class Spread:
    """Median, minimum and maximum of the figures of several runs."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(values), min(values), max(values), len(values))

    def text(self, digits: int = 0) -> str:
        """``median (min-max, n runs)``, or the single value when there was one run."""
        if self.runs <= 1:
            return f"{self.median:,.{digits}f}"
        return (
            f"{self.median:,.{digits}f} ({self.low:,.{digits}f}-{self.high:,.{digits}f}, "
            f"{self.runs} runs)"
        )


def latency_row(samples_s: Sequence[float]) -> dict[str, float]:
    """p50, p95 and p99 in milliseconds, and the sample count."""
    return {
        "p50": percentile(samples_s, 0.50) * 1000,
        "p95": percentile(samples_s, 0.95) * 1000,
        "p99": percentile(samples_s, 0.99) * 1000,
        "count": float(len(samples_s)),
    }
