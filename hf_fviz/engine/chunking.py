"""How many units to optimize together: measured, not guessed.

Why: the best chunk depends on the machine. On a GPU one forward pass over many crops costs little
more than over a few, so large chunks pay; on a CPU the time per crop is lowest at a modest batch
(about 12 crops for MobileNetV2 on 2 cores) and rises beyond it as activations fall out of cache.
A fixed default of 16 units (96 crops) made each unit 2.65x slower on a 2-core CPU than alone.

`pick_chunk` times a few real steps (canvas, crops, model, objective, backward: the whole step) at
chunk sizes 1, 2, 4, ... up to the number of units and keeps the one with the lowest time per
unit-step; it stops doubling once a size is clearly slower than the best so far. Then it times the
same sizes again, largest first, and keeps each size's faster time: with one round, a moment of
other load during one size's probe made the choice 18-22 % slower than the best size. The sizes
still within 8 % of the best then get a third, deciding round (smallest first): on a CPU the
per-unit curve is flat beyond a few units, so the choice between near-equal sizes is where noise
decided (the 3 % tie of the last round picked 8 units where 16 measured 10 % faster). Sizes within
2 % of the best count as equal and the smallest of them wins (less memory, earlier first results).
The choice is remembered per model, layers, method, canvas, crops, device and thread count, so an
atlas or a Space pays for the calibration once per process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

TIE = 0.02  # sizes within 2 % of the best per-unit time count as equal
CLOSE = 0.08  # sizes this close to the best after the rounds are timed once more
WORSE = 0.15  # stop doubling once a size is this much slower per unit than the best so far
ROUNDS = 2  # times each size is timed; one round picked 18-22 % off the best on a 2-core CPU

_cache: dict[Hashable, tuple[int, int]] = {}  # key -> (chosen, largest size tried)
_lock = threading.Lock()


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
