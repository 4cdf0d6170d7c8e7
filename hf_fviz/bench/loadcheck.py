"""Was the machine quiet while we timed? A speed table is only worth something if it was.

Why: the README's first speed table was taken while tests ran beside it and was off by a factor of
7. `LoadMonitor` measures, over the timed span, how much CPU *other* processes used: the kernel's
busy time for all CPUs (`/proc/stat`) less this process's own CPU time (children included), as a
share of the CPUs' capacity. It also times a fixed matrix product before and after: a drift
between the two means the machine's speed changed during the run (another job started or ended,
thermal throttling). Where `/proc/stat` is missing (macOS) the load average stands in.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

BUSY_SHARE = 0.10  # other processes may use at most 10 % of the CPUs
DRIFT = 0.15  # the fixed matmul may differ by at most 15 % between start and end


@dataclass(frozen=True)
class MachineLoad:
    """What the monitor saw. `other_share`: CPU used by other processes over the span, as a
    share of all CPUs (None where unknown); `matmul_drift`: after / before - 1."""

    cpus: int
    seconds: float
    other_share: float | None
    load_average: float
    matmul_before_s: float
    matmul_after_s: float
    matmul_drift: float
    busy: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        share = "unknown" if self.other_share is None else f"{100 * self.other_share:.0f} %"
        return (f"other processes used {share} of {self.cpus} CPUs during the run; fixed matmul "
                f"{1e3 * self.matmul_before_s:.1f} ms before, {1e3 * self.matmul_after_s:.1f} ms after")


def _busy_jiffies() -> int | None:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def matmul_seconds(reps: int = 7) -> float:
    """Best of `reps` timings of a fixed float32 matrix product (a speed probe of the machine)."""
    a = torch.randn(384, 384, generator=torch.Generator().manual_seed(0))
    # Warm-up: the first products also start the thread pool and wake the cores; with a single
    # one, the probe at the start of a run measured 26 ms against 17.5 ms at its end, a quiet run.
    until = time.perf_counter() + 0.3
    while time.perf_counter() < until:
        a @ a
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(20):
            a @ a
        best = min(best, time.perf_counter() - t0)
    return best


class LoadMonitor:
    """`start()` before the timed span, `stop()` after it: returns a `MachineLoad`."""

    def __init__(self) -> None:
        self._t0 = self._busy0 = self._own0 = self._mm0 = None

    def start(self) -> LoadMonitor:
        self._mm0 = matmul_seconds()
        self._t0 = time.perf_counter()
        self._busy0 = _busy_jiffies()
        self._own0 = _own_cpu_seconds()
        return self

    def stop(self) -> MachineLoad:
        if self._t0 is None:
            raise RuntimeError("LoadMonitor.stop() before start()")
        seconds = time.perf_counter() - self._t0
        busy1, own1 = _busy_jiffies(), _own_cpu_seconds()
        mm1 = matmul_seconds()
        cpus = os.cpu_count() or 1
        share = None
        if busy1 is not None and self._busy0 is not None and seconds > 0:
            hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            other = (busy1 - self._busy0) / hz - (own1 - self._own0)
            share = max(0.0, other) / (seconds * cpus)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        drift = mm1 / self._mm0 - 1.0
        reasons = []
        if share is not None and share > BUSY_SHARE:
            reasons.append(f"other processes used {100 * share:.0f} % of the CPUs (limit {100 * BUSY_SHARE:.0f} %)")
        if share is None and load > 0.5 * cpus + 1:
            reasons.append(f"load average {load:.1f} on {cpus} CPUs")
        if abs(drift) > DRIFT:
            reasons.append(f"a fixed matmul took {100 * drift:+.0f} % longer at the end than at the start")
        return MachineLoad(cpus=cpus, seconds=seconds, other_share=share, load_average=load, matmul_before_s=self._mm0,
                           matmul_after_s=mm1, matmul_drift=drift, busy=bool(reasons), reason="; ".join(reasons))
