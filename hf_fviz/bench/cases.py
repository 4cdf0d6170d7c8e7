"""The speed cases and what one timed run of each side is: an hf_fviz `visualize` call, a
`horama.maco` run, or the bare model's forward and backward, each ticking a `StepClock` once per
step. Shared by the timing (`speed`) and the peak-memory children (`memory`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..api import visualize
from ..engine.methods import auto_batch_size
from ..settings import DEFAULT_CROPS, DEFAULT_SIZE
from .horama import HoramaSettings, LoadedPair, horama_objective, run_horama

CASES = ("a", "b", "c", "d", "e", "f")
SIXTEEN_CLASSES = (1, 9, 22, 76, 130, 207, 285, 291, 309, 323, 388, 409, 430, 574, 805, 954)


@dataclass(frozen=True)
class SpeedCase:
    """One speed case. `kind`: 'speedup' (ratio = horama / hf_fviz, goal: at least) or
    'overhead' (ratio = hf_fviz / bare model forward+backward, goal: at most)."""

    name: str
    title: str
    model: str
    layer: str
    units: tuple[int, ...]
    goal: float
    kind: str = "speedup"
    size: int = 1280
    crops: int = 6


def speed_cases(model: str = "builtin:mobilenetv2") -> dict[str, SpeedCase]:
    """The six cases of the speed benchmark (horama's default canvas and crops, except case f:
    the step overhead at our own defaults). Goals: issue 15's."""
    return {
        "a": SpeedCase("a", f"{model}, one class (goldfish), horama defaults", model, "logits", (1,), 2.8),
        "b": SpeedCase("b", f"{model}, 16 classes: one batched run vs 16 horama runs, per unit", model, "logits", SIXTEEN_CLASSES, 2.8),
        "c": SpeedCase("c", "ResNet-50 (random weights), channel 7 of the first stage (layer1)", "random:resnet50", "layer1", (7,), 3.0),
        "d": SpeedCase("d", "ViT-B/16 (random weights), channel 7 of the MLP hidden layer of block 6", "random:vit_base_patch16_224",
                       "blocks.6.mlp.act", (7,), 1.8),
        "e": SpeedCase("e", f"{model}, one class: hf_fviz step / bare model forward+backward on the same crop batch", model, "logits",
                       (1,), 1.3, kind="overhead"),
        "f": SpeedCase("f", f"{model}, one class: hf_fviz step / bare model forward+backward, hf_fviz defaults", model, "logits",
                       (1,), 1.3, kind="overhead", size=DEFAULT_SIZE, crops=DEFAULT_CROPS),
    }



class StepClock:
    """Timestamps of a per-step callback: wall clock and process CPU time (all threads).
    `steps(skip)` gives the wall gaps after the first `skip`, `cpu_steps(skip)` the CPU gaps."""

    def __init__(self, units_per_step: int = 1) -> None:
        self.units_per_step = units_per_step  # gaps are divided by it: seconds per unit-step
        self.stamps: list[float] = [time.perf_counter()]
        self.cpu: list[float] = [time.process_time()]

    def tick(self, *_args: Any) -> None:
        self.stamps.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def steps(self, skip: int) -> list[float]:
        return [float(g) / self.units_per_step for g in np.diff(np.asarray(self.stamps))[skip:]]

    def cpu_steps(self, skip: int) -> list[float]:
        return [float(g) / self.units_per_step for g in np.diff(np.asarray(self.cpu))[skip:]]


def hf_run(vm: Any, case: SpeedCase, *, steps: int, size: int, crops: int, seed: int) -> StepClock:
    """The step clock (every step, the first included) of one hf_fviz `visualize` run, with the
    chunk size a user gets (the CPU's crops rule, or a calibration once per process and setting
    elsewhere; see `engine.chunking`)."""
    chunk = auto_batch_size(vm, layer=case.layer, units=case.units, size=size, crops=crops) if len(case.units) > 1 else 1
    clock = StepClock(units_per_step=chunk)
    visualize(vm, layer=case.layer, units=list(case.units), steps=steps, size=size, crops=crops, seed=seed,
              batch_size=chunk, progress=clock.tick)
    return clock


def horama_run(pair: LoadedPair, case: SpeedCase, unit: int, *, steps: int, size: int, crops: int, seed: int) -> StepClock:
    """The step clock of one horama run: ticks at objective calls; its first gap is setup."""
    vm, module = pair.vision_model, pair.horama_module
    assert module is not None
    prefix = vm.layer(case.layer).prefix_tokens if case.layer != "logits" else 0
    objective, remove = horama_objective(module, case.layer, unit, prefix_tokens=prefix)
    clock = StepClock()
    try:
        run_horama(objective, steps=steps, settings=HoramaSettings(size=size, crops=crops), input_size=vm.input_size[0],
                   seed=seed, on_call=clock.tick)
    finally:
        remove()
    clock.stamps, clock.cpu = clock.stamps[1:], clock.cpu[1:]  # drop the setup before the first call
    return clock


def bare_step(vm: Any, case: SpeedCase, *, crops: int) -> Callable[[], None]:
    """One step of the bare model on a batch of the same crops: forward to the objective's
    layer, backward to the input."""
    h, w = vm.input_size
    x = torch.randn(len(case.units) * crops, 3, h, w, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    unit = case.units[0]

    def step() -> None:
        x.grad = None
        act = vm.activations(x, case.layer)
        (act[:, unit].sum() if act.ndim != 3 else act[:, :, unit].sum()).backward()

    return step


def bare_run(vm: Any, case: SpeedCase, *, steps: int, crops: int) -> StepClock:
    """`steps` bare-model steps (see `bare_step`), ticking a clock after each."""
    step = bare_step(vm, case, crops=crops)
    clock = StepClock()
    for _ in range(steps):
        step()
        clock.tick()
    return clock


class Laps:
    """Durations measured apart (wall clock and process CPU time), with `StepClock`'s `steps`
    and `cpu_steps`: for two sides that take turns inside one loop."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._start = (0.0, 0.0)

    def start(self) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def stop(self) -> None:
        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(time.process_time() - self._start[1])

    def steps(self, skip: int) -> list[float]:
        return self.wall[skip:]

    def cpu_steps(self, skip: int) -> list[float]:
        return self.cpu[skip:]


def paired_run(vm: Any, case: SpeedCase, *, steps: int, size: int, crops: int, seed: int) -> tuple[Laps, Laps]:
    """One hf_fviz run (one unit) with one bare-model step after each of its steps, each side
    timed apart: (hf_fviz steps, bare steps).

    Why step by step: on this shared machine the bare model's own step (4 crops) moved between
    0.15 and 0.29 s from one process to the next (a quiet CPU by `uptime`, the same fixed matmul
    time), so
    runs of a few steps each, taking turns, still left the ratio at the mercy of those swings;
    steps that alternate see the same machine."""
    other = bare_step(vm, case, crops=crops)
    ours, bare = Laps(), Laps()

    def tick(*_args: Any) -> None:
        ours.stop()
        bare.start()
        other()
        bare.stop()
        ours.start()

    ours.start()
    visualize(vm, layer=case.layer, units=list(case.units), steps=steps, size=size, crops=crops, seed=seed,
              batch_size=1, progress=tick)
    return ours, bare

