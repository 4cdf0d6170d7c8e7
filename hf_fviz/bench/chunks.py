"""`hf-fviz bench chunks`: what batching costs per unit, and whether the automatic choice is right.

First ask `auto_batch_size` for its choice on the first 4 and on all 16 units, twice: the default
(on a CPU the crops rule of `engine.chunking`) and the measured calibration (a fresh one each, as
on a GPU). Then, for each setting (horama's canvas and crops, and ours), time one unit alone, chunks
of 2, 4, 8 and 16 units and every size chosen: seconds per unit-step, the median over interleaved
rounds (each round runs every size once, in an order that alternates between rounds), wall clock
and process CPU time; and compare each choice's per-unit time with the best measured size it could have
chosen and with one unit alone (issue 15's goals: never more per unit than one unit alone, within
5 % of the best), and what the calibration itself cost, as a share of the run it chose for (the
default steps): the evidence for which of the two a CPU uses. Everything runs in one process,
under a `LoadMonitor`; a busy machine marks the table.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..api import visualize
from ..engine import chunking
from ..engine.methods import auto_batch_size
from ..hub import load_model
from .loadcheck import LoadMonitor, MachineLoad
from ..settings import DEFAULT_CROPS, DEFAULT_SIZE, DEFAULT_STEPS
from .cases import SIXTEEN_CLASSES as UNITS16
from .common import Log
SETTINGS = {"horama": (1280, 6), "ours": (DEFAULT_SIZE, DEFAULT_CROPS)}  # canvas, crops


@dataclass
class ChunkRow:
    setting: str
    size: int
    crops: int
    chunk: int
    s_per_unit_step: float
    cpu_s_per_unit_step: float
    relative_to_one: float


AUTO_UNITS = (4, 16)  # the N of issue 15's goal


@dataclass
class ChunkReport:
    """`auto[setting][n]`: the default chunk size for n units (on a CPU, the crops rule);
    `auto_vs_best[setting][n]`: its measured time per unit-step over the best size up to n;
    `auto_vs_one[setting][n]`: over one unit alone. `measured`, `measured_vs_best`, `measured_vs_one`:
    the same for the calibration; `calibration_s[setting][n]`: the seconds it took;
    `calibration_share[setting][n]`: over the optimization it chose for (n units, the default steps,
    at the chosen size's measured speed)."""

    rows: list[ChunkRow]
    auto: dict[str, dict[int, int]]
    auto_vs_best: dict[str, dict[int, float]]
    auto_vs_one: dict[str, dict[int, float]]
    threads: int
    measured: dict[str, dict[int, int]] = field(default_factory=dict)
    measured_vs_best: dict[str, dict[int, float]] = field(default_factory=dict)
    measured_vs_one: dict[str, dict[int, float]] = field(default_factory=dict)
    calibration_s: dict[str, dict[int, float]] = field(default_factory=dict)
    calibration_share: dict[str, dict[int, float]] = field(default_factory=dict)
    machine: MachineLoad | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["machine"] = self.machine.to_dict() if self.machine else None
        return out


def _per_unit_step(vm: Any, units: Sequence[int], *, chunk: int, size: int, crops: int, steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per unit-step of one `visualize` call with `chunk` units per chunk;
    the first step of every chunk (set-up) is left out."""
    wall: list[float] = []
    cpu: list[float] = []
    last = [time.perf_counter(), time.process_time()]

    def tick(step: int, _total: int, _info: Any) -> None:
        now, cnow = time.perf_counter(), time.process_time()
        if (step - 1) % steps != 0:  # not the first step of a chunk
            wall.append(now - last[0])
            cpu.append(cnow - last[1])
        last[0], last[1] = now, cnow

    visualize(vm, layer="logits", units=list(units[:chunk]), steps=steps, size=size, crops=crops, batch_size=chunk,
              progress=tick)
    return statistics.median(wall) / chunk, statistics.median(cpu) / chunk


def run_chunks(*, model: str = "builtin:mobilenetv2", chunks: Sequence[int] = (1, 2, 4, 8, 16), steps: int = 4,
               rounds: int = 3, settings: Sequence[str] = ("horama", "ours"), units: Sequence[int] = UNITS16,
               log: Log = lambda _m: None) -> ChunkReport:
    vm = load_model(model, device="cpu")
    size, crops = SETTINGS[settings[0]]
    _per_unit_step(vm, units, chunk=1, size=size, crops=crops, steps=2)  # warm-up: first-call costs
    monitor = LoadMonitor().start()
    auto: dict[str, dict[int, int]] = {}
    measured: dict[str, dict[int, int]] = {}
    calibration_s: dict[str, dict[int, float]] = {}
    for name in settings:
        size, crops = SETTINGS[name]
        for n in [n for n in AUTO_UNITS if n <= len(units)] or [len(units)]:
            auto.setdefault(name, {})[n] = auto_batch_size(vm, layer="logits", units=list(units[:n]), size=size, crops=crops)
            chunking.forget()
            t0 = time.perf_counter()
            choice = auto_batch_size(vm, layer="logits", units=list(units[:n]), size=size, crops=crops, measure=True)
            calibration_s.setdefault(name, {})[n] = time.perf_counter() - t0
            measured.setdefault(name, {})[n] = choice
            log(f"{name}, {n} units: default chunk size {auto[name][n]}, calibrated {choice}")
    timed = {name: sorted(set(chunks) | set(auto[name].values()) | set(measured[name].values())) for name in settings}
    samples: dict[str, list[float]] = {}
    for r in range(rounds):
        for name in settings:
            size, crops = SETTINGS[name]
            order = timed[name] if r % 2 == 0 else list(reversed(timed[name]))
            for c in order:
                log(f"round {r + 1}/{rounds}: {name} (canvas {size}, {crops} crops), chunk {c}")
                wall, cpu = _per_unit_step(vm, units, chunk=c, size=size, crops=crops, steps=steps)
                samples.setdefault(f"{name}/{c}/wall", []).append(wall)
                samples.setdefault(f"{name}/{c}/cpu", []).append(cpu)
    machine = monitor.stop()
    rows: list[ChunkRow] = []
    ratios: dict[str, dict[str, dict[int, float]]] = {k: {} for k in ("auto_vs_best", "auto_vs_one", "measured_vs_best",
                                                                     "measured_vs_one", "calibration_share")}
    for name in settings:
        size, crops = SETTINGS[name]
        med = {c: statistics.median(samples[f"{name}/{c}/wall"]) for c in timed[name]}
        for c in timed[name]:
            rows.append(ChunkRow(name, size, crops, c, med[c], statistics.median(samples[f"{name}/{c}/cpu"]), med[c] / med[1]))
        for kind, choices in (("auto", auto), ("measured", measured)):
            for n, a in choices[name].items():
                ratios[f"{kind}_vs_best"].setdefault(name, {})[n] = med[a] / min(t for c, t in med.items() if c <= n)
                ratios[f"{kind}_vs_one"].setdefault(name, {})[n] = med[a] / med[1]
                if kind == "measured":
                    run_s = n * DEFAULT_STEPS * med[a]
                    ratios["calibration_share"].setdefault(name, {})[n] = calibration_s[name][n] / run_s
    return ChunkReport(rows, auto, ratios["auto_vs_best"], ratios["auto_vs_one"], torch.get_num_threads(), measured,
                       ratios["measured_vs_best"], ratios["measured_vs_one"], calibration_s, ratios["calibration_share"],
                       machine, samples)


def chunks_table(report: ChunkReport) -> str:
    lines = []
    if report.machine is not None and report.machine.busy:
        lines += [f"**Not trustworthy: the machine was busy ({report.machine.reason}).**", ""]
    lines += ["| setting | canvas, crops | units per chunk | s per unit-step | CPU s per unit-step | vs one unit alone |",
              "|---|---|---|---|---|---|"]
    for r in report.rows:
        marks = []
        for kind, choices in (("automatic", report.auto), ("calibrated", report.measured)):
            chosen = [str(n) for n, c in choices.get(r.setting, {}).items() if c == r.chunk]
            if chosen:
                marks.append(f"{kind} for {' and '.join(chosen)} units")
        mark = f" ({'; '.join(marks)})" if marks else ""
        lines.append(f"| {r.setting} | {r.size}, {r.crops} | {r.chunk}{mark} | {r.s_per_unit_step:.3f} | "
                     f"{r.cpu_s_per_unit_step:.3f} | {r.relative_to_one:.2f}x |")
    lines.append("")
    nan = float("nan")
    auto = "; ".join(
        f"{name}, {n} units: {c} per chunk, {report.auto_vs_one.get(name, {}).get(n, nan):.2f}x one unit alone, "
        f"{report.auto_vs_best.get(name, {}).get(n, nan):.2f}x the best measured size"
        for name, choices in report.auto.items() for n, c in choices.items())
    measured = "; ".join(
        f"{name}, {n} units: {c} per chunk, {report.measured_vs_one.get(name, {}).get(n, nan):.2f}x one unit alone, "
        f"{report.measured_vs_best.get(name, {}).get(n, nan):.2f}x the best measured size, calibration "
        f"{report.calibration_s.get(name, {}).get(n, nan):.0f} s "
        f"({100 * report.calibration_share.get(name, {}).get(n, nan):.0f} % of a {DEFAULT_STEPS}-step run)"
        for name, choices in report.measured.items() for n, c in choices.items())
    lines.append(f"Medians over interleaved rounds, torch threads {report.threads}. Automatic choice: {auto}. "
                 f"Calibrated choice: {measured}. " + (f"Machine: {report.machine.describe()}." if report.machine else ""))
    return "\n".join(lines)
