"""How many units to optimize together: a rule or a learned size on a CPU, a calibration elsewhere.

Why: the best chunk depends on the machine. On a GPU one forward pass over many crops costs little
more than over a few, so large chunks pay; on a CPU a fixed default of 16 units (96 crops) once
made each unit 2.65x slower than alone (the heap and step work of issue 15 fixed that cause).

On a CPU the best size differed on each of the three 2-core machines measured (`hf-fviz bench
chunks`, per unit against one unit alone): on the first, 8-16 units (0.79-0.84x); on a Zen 5, 2-4
(0.87-0.96x, 16 units 1.06-1.22x); on a Zen 3, 16 units at our settings (0.87x) but one unit alone
at horama's (2-16 units 1.03-1.11x). No fixed rule is within 5 % of the best on all three. So:

- A long job (an atlas of at least 14 units, `ChunkPlan`) learns its size from its own first
  chunks: real work, timed over all their steps, at most half of the units, no throwaway runs.
- A short job (`visualize`, the Space) takes a size a long job learned for the same work earlier
  in the process (`recall`), else `cpu_chunk`: as many units as keep one batch at or under
  `CPU_CROPS` crops (and in memory). Why not measure there: throwaway probes of a few steps swing
  10-15 % on these machines; on the first machine the calibration cost 3-21 % of the 160-step job
  it chose for (14-131 s, which a Space user would wait) and still chose more than 5 % off the best
  in 5 of 20 choices, up to 26 %. The rule: 4 units at horama's settings (24 crops) and at ours
  (16). On the Zen 5 and the Zen 3, two runs each, 4 units cost 0.89-1.08x of one unit alone per
  unit (medians 0.91-0.99x) and were within 3 % of the best size on the medians; single runs swing
  by 10-20 % on these machines (see the README). 6 units at ours (24 crops, the rule until
  2026-12-01 10:00) were 0.96x and 1.03x on the Zen 3, 10 % off the best on the median.

Elsewhere (CUDA, MPS), where probes take milliseconds and the curve was not measured here,
`pick_chunk` times a few real steps (canvas, crops, model, objective, backward: the whole step) at
chunk sizes 1, 2, 4, ... up to the number of units and keeps the one with the lowest time per
unit-step; it stops doubling once a size is clearly slower than the best so far. Then it times the
same sizes again, largest first, and keeps each size's faster time (one round picked 18-22 % off
the best). The sizes still within 8 % of the best get a third, deciding round (smallest first):
near-equal sizes are where noise decides. Sizes within 2 % of the best count as equal and the
smallest of them wins (less memory, earlier first results). The choice is remembered per model,
layers, method, canvas, crops, device and thread count, so an atlas or a Space pays for the
calibration once per process. `hf-fviz bench chunks` runs it on a CPU too, beside the rule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

TIE = 0.02  # sizes within 2 % of the best per-unit time count as equal
CLOSE = 0.08  # sizes this close to the best after the rounds are timed once more
WORSE = 0.15  # stop doubling once a size is this much slower per unit than the best so far
ROUNDS = 2  # times each size is timed; one round picked 18-22 % off the best on a 2-core CPU
CPU_CROPS = 24  # a short CPU job's batch, in crops (see `cpu_chunk` and the module docstring)

_cache: dict[Hashable, tuple[int, int]] = {}  # key -> (chosen, largest size tried)
_learned: dict[Hashable, tuple[int, int]] = {}  # the same, learned by a long CPU job (`ChunkPlan`)
_lock = threading.Lock()


def cpu_chunk(*, units: int, crops: int, largest: int) -> int:
    """The chunk size on a CPU: the largest power of two of units that keeps a batch at or under
    `CPU_CROPS` crops (the sizes `bench chunks` times on every machine), all `units` when fewer,
    and within `largest` (what fits in memory); at least one."""
    fit = CPU_CROPS // max(1, crops)
    power = 1 << (fit.bit_length() - 1) if fit >= 1 else 1
    return max(1, min(units, largest, power))


def pick_chunk(seconds_per_step: Callable[[int], float], *, units: int, largest: int, key: Hashable | None = None,
               rounds: int = ROUNDS) -> int:
    """The chunk size (units optimized together) with the lowest measured time per unit-step.

    `seconds_per_step(c)` runs a short throwaway optimization of `c` units and returns its
    steady step time; `largest` caps the sizes tried (what fits in memory). Each size is timed
    `rounds` times (the later rounds in reverse order), the sizes within `CLOSE` of the best once
    more, and each size's fastest time counts."""
    cap = max(1, min(units, largest))
    if cap == 1:
        return 1
    if key is not None:
        with _lock:
            known = _cache.get(key)
        if known is not None and (known[0] < known[1] or cap <= known[1]):
            return min(known[0], cap)  # a choice below its own cap holds for any larger cap
    sizes = []
    c = 1
    while c < cap:
        sizes.append(c)
        c *= 2
    sizes.append(cap)
    per_unit: dict[int, float] = {}
    for c in sizes:
        per_unit[c] = seconds_per_step(c) / c
        best = min(per_unit.values())
        if per_unit[c] > best * (1 + WORSE):
            break
    for _ in range(1, rounds):  # again, largest first: a slow moment then hits other sizes
        for c in sorted(per_unit, reverse=True):
            per_unit[c] = min(per_unit[c], seconds_per_step(c) / c)
    if rounds > 1:
        best = min(per_unit.values())
        close = sorted(c for c, t in per_unit.items() if t <= best * (1 + CLOSE))
        if len(close) > 1:  # the deciding round: near-equal sizes are where noise picks
            for c in close:
                per_unit[c] = min(per_unit[c], seconds_per_step(c) / c)
    best = min(per_unit.values())
    chosen = min(c for c, t in per_unit.items() if t <= best * (1 + TIE))
    if key is not None:
        with _lock:
            _cache[key] = (chosen, cap)
    return chosen


LEARN_MAX = 32  # the largest chunk a long CPU job tries (no CPU measured here gained past 16 units)


class ChunkPlan:
    """The chunk sizes of a long job on a CPU, learned from the job's own chunks.

    Why: no fixed rule is right on every CPU (see the module docstring), throwaway probes are
    noisy and cost time, and a long job (an atlas) has chunks to spare. Its first chunks are real
    work at sizes 1, 2, 4, ... (doubling while a size is not `WORSE` than the best so far, up to
    `LEARN_MAX`), each timed over all its steps; the sizes within `CLOSE` of the best run once more,
    in reverse order, when the budget allows (a slow moment of the machine then hits another
    size); each size's fastest chunk counts, and the rest of the job runs at the smallest size
    within `TIE` of the best. Trying uses at most half of the units, so a wrong size costs at most
    a part of that half. A job too short to try 1, 2 and 4 units (under 14 units) uses `fallback`.

    `take(remaining)` gives the next chunk's size, `timed(size, seconds)` reports how long that
    chunk took per unit-step."""

    def __init__(self, *, units: int, largest: int, fallback: int, learn: bool = True, key: Hashable | None = None) -> None:
        self.key = key
        self.cap = max(1, min(largest, LEARN_MAX, units))
        self.fallback = max(1, min(fallback, largest, units))
        self.budget = units // 2
        self.times: dict[int, list[float]] = {}
        self._queue: list[int] = []
        self._second_pass = False
        self.chosen: int | None = None
        if learn and self.cap >= 4 and 1 + 2 + 4 <= self.budget:
            self._queue = [1, 2]
        else:
            self.chosen = self.fallback

    @property
    def learning(self) -> bool:
        """True until the plan has settled on one size."""
        return self.chosen is None

    def take(self, remaining: int) -> int:
        """The size of the next chunk (at most `remaining`)."""
        if self.chosen is None and not self._queue:
            self._settle()
        size = self._queue[0] if self.chosen is None else self.chosen
        return max(1, min(size, remaining))

    def timed(self, size: int, seconds_per_unit_step: float) -> None:
        """Record a chunk's time per unit-step; `size` is the size it ran at."""
        if self.chosen is not None:
            return
        self.times.setdefault(size, []).append(seconds_per_unit_step)
        if self._queue and self._queue[0] == size:
            self._queue.pop(0)
        if self._queue or self._second_pass:
            return
        best = self._best()
        last = max(self.times)
        doubled = last * 2
        if (min(self.times[last]) <= best * (1 + WORSE) and doubled <= self.cap
                and self._explored() + doubled <= self.budget):
            self._queue.append(doubled)
            return
        close = sorted((c for c in self.times if min(self.times[c]) <= best * (1 + CLOSE)), reverse=True)
        if len(close) > 1 and self._explored() + sum(close) <= self.budget:
            self._second_pass = True
            self._queue = close

    def _explored(self) -> int:
        """Units run so far while learning."""
        return sum(c * len(t) for c, t in self.times.items())

    def _best(self) -> float:
        return min(min(t) for t in self.times.values())

    def _settle(self) -> None:
        best = self._best()
        self.chosen = min(c for c, t in self.times.items() if min(t) <= best * (1 + TIE))
        if self.key is not None:
            with _lock:
                _learned[self.key] = (self.chosen, max(self.times))

    def summary(self) -> dict[str, object]:
        """What was tried and chosen (for the atlas's shard summary)."""
        return {"chosen": self.chosen, "learned": bool(self.times),
                "seconds_per_unit_step": {str(c): [round(x, 5) for x in t] for c, t in sorted(self.times.items())}}


def recall(key: Hashable, *, cap: int) -> int | None:
    """The size a `ChunkPlan` learned for `key` in this process, when it holds for `cap` units
    (a choice below the largest size tried holds for any larger cap); else None."""
    with _lock:
        known = _learned.get(key)
    if known is None or (known[0] >= known[1] and cap > known[1]):
        return None
    return min(known[0], cap)


def forget() -> None:
    """Drop remembered choices (tests; after the machine's load changed)."""
    with _lock:
        _cache.clear()
        _learned.clear()
