"""`hf-fviz bench speed`: seconds per step and peak memory of hf_fviz against horama.

Each case times optimization steps of hf_fviz (the public `visualize()`, exactly what users run)
and of `horama.maco()` on the same model, canvas, number of crops and steps. Both run in one
process, interleaved in rounds (hf_fviz first on even rounds, horama first on odd ones) so that a
busy machine slows both alike; the first step of every run is a warm-up and is dropped; the figure
is the median step. A step is the gap between two successive per-step callbacks (hf_fviz's
`progress`, horama's objective call), so it covers everything the loop does: parametrization,
crops, model forward and backward, optimizer. The overhead cases (e, f) alternate one hf_fviz
step and one bare-model step inside a single run (`cases.paired_run`), each timed apart. Peak
memory: see `memory`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..engine.heap import steady_heap
from ..engine.speed import SPEEDUPS, apply
from ..errors import InvalidSettings
from .loadcheck import LoadMonitor
from .cases import CASES, Laps, SpeedCase, StepClock, hf_run, horama_run, paired_run, speed_cases
from .common import Log, median
from .horama import LoadedPair, load_pair
from .memory import measure_memory

@dataclass(frozen=True)
class SpeedSettings:
    """`steps`: measured steps per library and case (warm-ups excluded), split over `rounds`.
    `size`/`crops` override every case's canvas and crops (small smoke runs)."""

    steps: int = 8
    rounds: int = 2
    warmup: int = 1
    cases: tuple[str, ...] = CASES
    model: str = "builtin:mobilenetv2"
    size: int | None = None
    crops: int | None = None
    memory: bool = True
    speedups: tuple[str, ...] = ()


@dataclass
class SpeedResult:
    """One case. Seconds are per step (per unit and step in case b); peak memory in MiB."""

    case: str
    title: str
    hf_fviz_s_per_step: float
    horama_s_per_step: float | None
    ratio: float
    hf_fviz_peak_mb: float | None
    horama_peak_mb: float | None
    ratio_meaning: str
    goal: str
    met: bool
    size: int
    crops: int
    units: int
    bare_s_per_step: float | None = None
    bare_peak_mb: float | None = None
    hf_fviz_cpu_s_per_step: float | None = None
    other_cpu_s_per_step: float | None = None
    cpu_ratio: float | None = None
    speedups: list[str] = field(default_factory=list)
    memory_method: str | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    machine: dict[str, Any] | None = None  # loadcheck.MachineLoad of the whole run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



def time_case(case: SpeedCase, pair: LoadedPair, settings: SpeedSettings, log: Log) -> dict[str, list[float]]:
    """Interleaved timing of one case; returns the measured step times per side."""
    size = settings.size or case.size
    crops = settings.crops or case.crops
    rounds = max(1, settings.rounds)
    per_round = max(1, math.ceil(settings.steps / rounds))
    w = settings.warmup
    samples: dict[str, list[float]] = {"hf_fviz": [], "other": [], "hf_fviz_cpu": [], "other_cpu": []}
    other_units = list(case.units)

    def keep(side: str, clock: StepClock | Laps) -> None:
        samples[side] += clock.steps(w)
        samples[side + "_cpu"] += clock.cpu_steps(w)

    if case.kind == "overhead":  # the two sides take turns step by step (see `paired_run`)
        for r in range(rounds):
            log(f"  case {case.name} round {r + 1}/{rounds}: hf_fviz and the bare model, {w}+{per_round} steps each, alternating")
            ours_laps, bare_laps = paired_run(pair.vision_model, case, steps=w + per_round, size=size, crops=crops, seed=r)
            keep("hf_fviz", ours_laps)
            keep("other", bare_laps)
        return samples
    for r in range(rounds):
        def ours() -> None:
            log(f"  case {case.name} round {r + 1}/{rounds}: hf_fviz {w}+{per_round} steps")
            keep("hf_fviz", hf_run(pair.vision_model, case, steps=w + per_round, size=size, crops=crops, seed=r))

        def theirs() -> None:
            if len(other_units) == 1:
                log(f"  case {case.name} round {r + 1}/{rounds}: horama {w}+{per_round} steps")
                keep("other", horama_run(pair, case, other_units[0], steps=w + per_round + 1, size=size, crops=crops, seed=r))
                return
            share = other_units[r::rounds]  # many units: horama runs one unit per run, one measured step each
            log(f"  case {case.name} round {r + 1}/{rounds}: {len(share)} horama runs of {w}+1 steps")
            for i, unit in enumerate(share):
                keep("other", horama_run(pair, case, unit, steps=w + 2, size=size, crops=crops, seed=r * 1000 + i))

        for side in ((ours, theirs) if r % 2 == 0 else (theirs, ours)):
            side()
    return samples



def run_speed(settings: SpeedSettings = SpeedSettings(), *, log: Log | None = None) -> list[SpeedResult]:
    """Run the speed cases; see the module docstring for the method."""
    log = log or (lambda _msg: None)
    if settings.steps < 1 or settings.rounds < 1 or settings.warmup < 0:
        raise InvalidSettings("bench speed needs steps >= 1, rounds >= 1, warmup >= 0")
    bad = [x for x in settings.speedups if x not in SPEEDUPS]
    if bad:
        raise InvalidSettings(f"unknown speed-up(s) {', '.join(bad)}: choose from {','.join(SPEEDUPS)}")
    if settings.crops is not None and settings.crops < 2:
        raise InvalidSettings("bench speed needs --crops >= 2 (horama 0.3.0 squeezes away the batch of a single crop)")
    catalogue = speed_cases(settings.model)
    unknown = [c for c in settings.cases if c not in catalogue]
    if unknown or not settings.cases:
        raise InvalidSettings(f"unknown case(s) {', '.join(unknown) or '(none given)'}: choose from {','.join(CASES)}")
    pairs: dict[str, LoadedPair] = {}
    results = []
    monitor = LoadMonitor().start()
    for name in settings.cases:
        case = catalogue[name]
        size, crops = settings.size or case.size, settings.crops or case.crops
        if case.model not in pairs:
            log(f"loading {case.model}")
            pairs[case.model] = load_pair(case.model, with_horama=True)
            apply(pairs[case.model].vision_model, settings.speedups)
        log(f"case {name}: {case.title} (canvas {size}, {crops} crops)")
        # Every arm runs with the allocator settings of hf_fviz's loop: once a loop has changed
        # glibc's mmap/trim settings, code outside it page-faults more than in a fresh process
        # (the bare model: 23 thousand against 9 thousand faults per step), which flattered us.
        with steady_heap():
            samples = time_case(case, pairs[case.model], settings, log)
        per_unit = len(case.units)
        ours = median(samples["hf_fviz"])  # per unit-step already (StepClock.units_per_step)
        other = median(samples["other"])
        ours_cpu = median(samples["hf_fviz_cpu"])
        other_cpu = median(samples["other_cpu"])
        cpu_extra = {"hf_fviz_cpu_s_per_step": ours_cpu, "other_cpu_s_per_step": other_cpu,
                     "cpu_ratio": (ours_cpu / other_cpu) if case.kind == "overhead" else (other_cpu / ours_cpu),
                     "speedups": list(settings.speedups)}
        mem: dict[str, dict[str, Any]] = {}
        if settings.memory:
            sides = ("hf_fviz", "bare" if case.kind == "overhead" else "horama")
            for side in sides:
                log(f"  case {name}: peak memory of {side} (child process)")
                mem[side] = measure_memory(case, side, size=size, crops=crops, speedups=settings.speedups)
        if case.kind == "overhead":
            ratio = ours / other
            result = SpeedResult(
                case=name, title=case.title, hf_fviz_s_per_step=ours, horama_s_per_step=None, ratio=ratio,
                hf_fviz_peak_mb=mem.get("hf_fviz", {}).get("peak_mb"), horama_peak_mb=None,
                ratio_meaning="hf_fviz step / bare model forward+backward (lower is better)",
                goal=f"<= {case.goal}", met=ratio <= case.goal, size=size, crops=crops, units=per_unit,
                bare_s_per_step=other, bare_peak_mb=mem.get("bare", {}).get("peak_mb"),
                memory_method=mem.get("hf_fviz", {}).get("method"), samples=samples, **cpu_extra,
            )
        else:
            ratio = other / ours
            ours_mb, theirs_mb = mem.get("hf_fviz", {}).get("peak_mb"), mem.get("horama", {}).get("peak_mb")
            met = ratio >= case.goal and (ours_mb is None or theirs_mb is None or ours_mb <= theirs_mb)
            result = SpeedResult(
                case=name, title=case.title, hf_fviz_s_per_step=ours, horama_s_per_step=other, ratio=ratio,
                hf_fviz_peak_mb=ours_mb, horama_peak_mb=theirs_mb,
                ratio_meaning="horama s/step / hf_fviz s/step" + (" per unit" if per_unit > 1 else "") + " (higher is better)",
                goal=f">= {case.goal}x, peak memory <= horama's", met=met, size=size, crops=crops, units=per_unit,
                memory_method=mem.get("hf_fviz", {}).get("method"), samples=samples, **cpu_extra,
            )
        log(f"  -> hf_fviz {result.hf_fviz_s_per_step:.3f} s/step, other {other:.3f} s/step, ratio {ratio:.2f}")
        results.append(result)
    machine = monitor.stop().to_dict()
    for result in results:
        result.machine = machine
    return results

