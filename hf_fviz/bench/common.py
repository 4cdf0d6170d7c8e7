"""Small helpers every benchmark shares: the log callback type, the median, number formatting."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

Log = Callable[[str], None]


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)
