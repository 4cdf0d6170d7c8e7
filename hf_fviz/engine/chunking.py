"""How many units to optimize together: a measured rule on a CPU, a calibration elsewhere.

Why: the best chunk depends on the machine. On a GPU one forward pass over many crops costs little
more than over a few, so large chunks pay; on a CPU a fixed default of 16 units (96 crops) once
made each unit 2.65x slower than alone (the heap and step work of issue 15 fixed that cause).

On a CPU, `cpu_chunk` takes as many units as keep one batch at or under `CPU_CROPS` crops (and in
memory). Why not measure there too: in five runs of `hf-fviz bench chunks` on the 2-core machine
(2026-11-30/12-01) every size from 2 to 16 units cost 0.79-0.92x of one unit alone per unit
(medians over the runs), the largest best (16 units: 0.83x at horama's settings, 0.79x at ours),
with single runs swinging 10-15 % around that; the calibration cost 3-21 % of the 160-step job it
chose for (14-131 s) and still chose more than 5 % off the best in 5 of 20 choices, up to 26 %
(one unit alone for 16 units at horama's settings, 24 % off, in the run the load check passed).
A Space on a CPU would also make its user wait that long before the first step. `CPU_CROPS` is
the most crops per batch measured to pay there. It was 128 (16 units x 6 crops at horama's
settings, 32 x 4 at ours) on the first 2-core machine; on the Zen-5 machine of 2026-12-01, 3x
faster per step, two runs of bench chunks gave 16 units 1.11x/1.20x (horama's settings) and
1.06x/1.22x (ours) of one unit alone per unit, 2-4 units 0.90-0.96x and 0.87-1.03x: 24 crops
(4 units at horama's settings, 6 at ours) never cost more than one unit alone on either machine.

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
CPU_CROPS = 24  # the most crops per batch measured to pay on both 2-core CPUs (see above)

_cache: dict[Hashable, tuple[int, int]] = {}  # key -> (chosen, largest size tried)
_lock = threading.Lock()


def cpu_chunk(*, units: int, crops: int, largest: int) -> int:
    """The chunk size on a CPU: as many units as keep a batch at or under `CPU_CROPS` crops and
    within `largest` (what fits in memory); at least one."""
    return max(1, min(units, largest, CPU_CROPS // max(1, crops)))


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


def forget() -> None:
    """Drop remembered choices (tests; after the machine's load changed)."""
    with _lock:
        _cache.clear()
