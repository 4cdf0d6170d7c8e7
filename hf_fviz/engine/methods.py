"""`visualize` in the engine: one image per target (a unit's or a custom objective), MACO, Fourier
or pixel, all crops of a chunk of units in one forward pass (in chunks of `batch_size` units).

The engine takes a `VisionModel`, targets and checked `Settings` (hf_fviz.settings); the public
keyword API (`hf_fviz.visualize`, in hf_fviz/api.py) builds and checks those. Defaults and why:
hf_fviz/settings.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InvalidSettings
from ..hub.vision_model import LOGITS, VisionModel
from ..results import Visualization, alpha_from_transparency
from ..settings import DEFAULT_UNITS, Settings
from . import budget, chunking
from . import objectives as obj
from .optimize import Progress
from .run import Run


@dataclass(frozen=True)
class Target:
    """One image to make: its objective, and how the result is named (`unit` None for a custom objective)."""

    unit: int | None
    objective: obj.Objective
    label: str
    layer: str


def unit_targets(
    model: VisionModel, layer: str | None, units: Sequence[int] | None, classes: Sequence[str | int] | None
) -> list[Target]:
    """Units of a layer (default the model's default layer, its first 4 units) or classes (logits)."""
    if units is not None and classes is not None:
        raise InvalidSettings("give units or classes, not both")
    if classes is not None:
        if layer not in (None, LOGITS):
            raise InvalidSettings(f"classes are logits; drop --layer {layer} or pass --units instead")
        if not model.has_head:
            model.layer(LOGITS)  # UnknownLayer with a hint
        picked = [model.class_index(c) for c in classes]
        if not picked:
            raise InvalidSettings("no classes given")
        name = LOGITS
    else:
        name = layer or model.default_layer
        info = model.layer(name)
        if units is None:
            picked = list(range(min(DEFAULT_UNITS, info.units)))
        elif not units:
            raise InvalidSettings("no units given")
        else:
            picked = model.check_units(info, list(units))
    return [Target(u, obj.for_unit(name, u), model.label(u, name), name) for u in picked]


def objective_targets(model: VisionModel, objectives: Sequence[obj.Objective]) -> list[Target]:
    """Custom objectives, one image each (text objectives embed their text here, once)."""
    bound = [o.bind(model) for o in objectives]
    return [Target(None, o, repr(o), ",".join(o.layers())) for o in bound]


def visualize(model: VisionModel, targets: Sequence[Target], settings: Settings, *,
              progress: Progress | None = None) -> list[Visualization]:
    """One `Visualization` per target, with checked `settings` (see `hf_fviz.api.visualize`).

    Raises `ResourceLimit` before any step when one chunk would not fit in the free memory
    (see `engine.budget`), with the estimate and what to change. With `settings.max_seconds`
    it stops at the first step boundary after that and returns the images as they are; chunks
    not started by then are left out (`extra['stopped_early']`, `['steps_done']`, `['units_skipped']`).
    """
    if not targets:
        raise InvalidSettings("nothing to visualize")
    settings = settings.resolved()
    steps = settings.steps
    deadline = time.perf_counter() + settings.max_seconds if settings.max_seconds is not None else None
    info = {layer_.name: layer_ for layer_ in model.layers()}
    for t in targets:
        for name in t.objective.layers():
            if name not in info:
                model.layer(name)  # UnknownLayer with suggestions

    used_layers = sorted({name for t in targets for name in t.objective.layers()})
    batch_size = settings.batch_size
    if batch_size is None:
        batch_size = _auto_batch_size(model, targets, settings, info, used_layers)
    budget.check(model, units=len(targets), crops=settings.crops, size=settings.size, batch_size=batch_size, layers=used_layers)

    total = steps * math.ceil(len(targets) / batch_size)
    out: list[Visualization] = []
    skipped = 0
    for chunk_start in range(0, len(targets), batch_size):
        if deadline is not None and out and time.perf_counter() >= deadline:
            skipped = len(targets) - chunk_start
            break
        chunk = targets[chunk_start : chunk_start + batch_size]
        done = (chunk_start // batch_size) * steps
        chunk_progress = None
        if progress is not None:
            chunk_progress = lambda s, _t, i, done=done: progress(done + s, total, i)  # noqa: E731
        out.extend(_run_chunk(model, chunk, settings, info, chunk_progress, chunk_index=chunk_start // batch_size,
                              deadline=deadline))
    if skipped or any(v.extra.get("steps_done", steps) < steps for v in out):
        for v in out:
            v.extra.update(stopped_early=True, units_skipped=skipped)
            v.extra.setdefault("steps_done", steps)
    return out


def auto_batch_size(model: VisionModel, *, layer: str, units: Sequence[int], method: str = "maco", size: int | None = None,
                    crops: int | None = None, seed: int = 0, measure: bool | None = None) -> int:
    """How many of `units` to optimize together on this machine (see `engine.chunking`): the CPU
    rule on a CPU, a short calibration elsewhere; `measure=True`/`False` forces one or the other."""
    targets = [Target(u, obj.for_unit(layer, u), "", layer) for u in units]
    settings = _settings(method=method, seed=seed, size=size, crops=crops)
    info = {layer_.name: layer_ for layer_ in model.layers()}
    return _auto_batch_size(model, targets, settings, info, [layer], measure=measure)


def chunk_plan(model: VisionModel, *, layer: str, units: Sequence[int], method: str = "maco", size: int | None = None,
               crops: int | None = None, seed: int = 0) -> chunking.ChunkPlan:
    """The chunk sizes of a long job (an atlas): on a CPU learned from the job's own first chunks
    (`chunking.ChunkPlan`) unless this process learned them already; elsewhere, or for a short
    job, `auto_batch_size`'s one size."""
    if model.device.type != "cpu":
        fixed = auto_batch_size(model, layer=layer, units=units, method=method, size=size, crops=crops, seed=seed)
        return chunking.ChunkPlan(units=len(units), largest=fixed, fallback=fixed, learn=False)
    settings = _settings(method=method, seed=seed, size=size, crops=crops)
    largest = budget.largest_fit(model, units=len(units), crops=settings.crops, size=settings.size, layers=[layer])
    key = _chunk_key(model, [layer], settings)
    fallback, learned = _cpu_size(key, units=len(units), crops=settings.crops, largest=largest)
    return chunking.ChunkPlan(units=len(units), largest=largest, fallback=fallback, learn=not learned, key=key)


def _cpu_size(key: tuple[Any, ...], *, units: int, crops: int, largest: int) -> tuple[int, bool]:
    """A CPU's chunk size without timing, and whether it was learned: the size a long job learned
    earlier in this process for `key`, else `chunking.cpu_chunk`."""
    known = chunking.recall(key, cap=min(units, largest))
    if known is not None:
        return known, True
    return chunking.cpu_chunk(units=units, crops=crops, largest=largest), False


def _settings(*, method: str, seed: int, size: int | None, crops: int | None) -> Settings:
    base = Settings(method=method, seed=seed)
    return base.replace(size=size if size is not None else base.size,
                        crops=crops if crops is not None else base.crops).resolved()


def _chunk_key(model: VisionModel, layers: Sequence[str], settings: Settings) -> tuple[Any, ...]:
    """What a chosen chunk size holds for: the model, its layers, the method, canvas and crops, the
    device and the thread count."""
    return (model.id, id(model.module), tuple(layers), settings.method, settings.size, settings.crops, str(model.device),
            torch.get_num_threads())


def _auto_batch_size(model: VisionModel, targets: Sequence[Target], settings: Settings, info, layers: Sequence[str], *,
                     measure: bool | None = None) -> int:
    """On a CPU, a size an atlas learned earlier in this process for the same work, else
    `chunking.cpu_chunk`; elsewhere time four-step throwaway runs of 1, 2, 4, ... units and keep
    the fastest per unit."""
    largest = budget.largest_fit(model, units=len(targets), crops=settings.crops, size=settings.size, layers=layers)
    key = _chunk_key(model, layers, settings)
    if measure is None and model.device.type == "cpu":
        return _cpu_size(key, units=len(targets), crops=settings.crops, largest=largest)[0]
    if measure is False:
        return chunking.cpu_chunk(units=len(targets), crops=settings.crops, largest=largest)
    probe = settings.replace(steps=4)
    cuda = model.device.type == "cuda"

    def seconds_per_step(c: int) -> float:
        stamps: list[float] = []

        def tick(*_args: Any) -> None:
            if cuda:
                torch.cuda.synchronize(model.device)
            stamps.append(time.perf_counter())

        _run_chunk(model, targets[:c], probe, info, tick)
        # The mean over the probe's steps after the first: each renders at another side (the
        # crops shrink over the schedule), and a size must pay over the whole schedule, not at
        # its cheapest step. `pick_chunk` keeps each size's best round.
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        return sum(gaps) / len(gaps)

    return chunking.pick_chunk(seconds_per_step, units=len(targets), largest=largest, key=key)


def _run_chunk(model: VisionModel, chunk: Sequence[Target], settings: Settings, info, progress, *, chunk_index: int = 0,
               deadline: float | None = None) -> list[Visualization]:
    run = Run(model, [t.objective for t in chunk], settings, whole_view=True, deadline=deadline, info=info)
    result = run.optimize(progress)
    rows = [{"unit": t.unit, "label": t.label, "layer": t.layer} for t in chunk]
    extra = {"seconds": result.seconds, "chunk": chunk_index, **({"steps_done": result.steps} if result.stopped_early else {})}
    return from_result(result, rows, method=settings.method, settings=settings, model=model, extra=extra)


def from_result(result: Any, rows: Sequence[dict[str, Any]], *, method: str, settings: Settings, model: VisionModel,
                extra: dict[str, Any]) -> list[Visualization]:
    """One `Visualization` per image of an optimization result (every method ends here). Each row
    gives that image's `unit`, `label` and `layer`; its other keys, after `extra`, go to `extra`."""
    images = result.images.permute(0, 2, 3, 1).numpy()
    trans = (result.transparency / 3.0).numpy()  # mean over colour channels
    every_view = getattr(result, "transparency_all", None)
    if every_view is not None and every_view is not result.transparency:  # kept for comparisons (bench)
        every_view = (every_view / 3.0).numpy()
    else:
        every_view = None
    vis = []
    for i, row in enumerate(rows):
        row = dict(row)
        vis.append(
            Visualization(
                image=np.ascontiguousarray(images[i], dtype=np.float32),
                alpha=alpha_from_transparency(trans[i]),
                transparency=trans[i],
                history=result.history[:, i].copy(),
                objective=float(result.final[i]),
                unit=row.pop("unit"),
                label=row.pop("label"),
                layer=row.pop("layer"),
                method=method,
                settings=settings,
                model_id=model.id,
                revision=model.revision,
                extra={**extra, **row, **({"transparency_all": every_view[i]} if every_view is not None else {})},
            )
        )
    return vis
