"""Quantiles from histogram buckets, as Prometheus' ``histogram_quantile`` computes them.

Hand-written because no library we depend on has it (prometheus_client only exposes and
parses; the query engine lives in Prometheus itself) and it is a dozen lines: find the
bucket the rank falls in, interpolate linearly inside it, answer the highest finite bound
when the rank falls in ``+Inf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["histogram_quantile"]


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The ``q`` quantile (0..1) of a histogram; None when it holds no observation.

    ``bounds`` are the buckets' upper bounds in increasing order, the last one ``inf``;
    ``counts`` the observations in each bucket (not cumulative). The first bucket is
    taken to start at 0 (latencies), so a quantile there is interpolated from 0.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is not between 0 and 1")
    if len(bounds) != len(counts) or not bounds or not math.isinf(bounds[-1]):
        raise ValueError("bounds must end with +Inf and match the counts")
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    below = 0.0
    for index, (bound, count) in enumerate(zip(bounds, counts, strict=True)):
        if count > 0 and below + count >= rank:
            if math.isinf(bound):
                # Prometheus answers the highest finite bound: nothing is known above it.
                return bounds[index - 1] if index > 0 else None
            lower = bounds[index - 1] if index > 0 else 0.0
            return lower + (bound - lower) * (rank - below) / count
        below += count
    return bounds[-2] if len(bounds) > 1 else None
