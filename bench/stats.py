"""Interval statistics for accuracies (counts of n points), shared by the rows, the tables and the site."""
from __future__ import annotations

import math


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for an accuracy; well-behaved at 0 and 1 and for small n."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))
