"""Public entry points: `visualize()` (MACO, Fourier, pixel) returning `Visualization`s.

    >>> import hf_fviz
    >>> vis = hf_fviz.visualize("builtin:mobilenetv2", classes=["goldfish", "espresso"])
    >>> hf_fviz.render.save(vis, "out")

Defaults are tuned for a CPU (2 cores: six ImageNet classes of MobileNetV2 in a few minutes):
a 384 px canvas, 4 views per step (the whole canvas plus 3 random crops shrinking from 90 % to
40 % of the canvas), 160 steps, NAdam lr 0.3 (MACO), 1.0 (Fourier) or 0.05 (pixel). The
paper's presets are much heavier (xplique: 512 px, 32 crops, 256 steps; Horama: 1280 px, 6 crops,
1000 steps); pass them on a GPU for more detail. All units of a call are optimized together, one image per unit, all crops in one
forward pass (in chunks of `batch_size` units).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..errors import InvalidSettings
from ..hub.vision_model import LOGITS, VisionModel
from ..results import Visualization, alpha_from_transparency
from . import budget, chunking
from . import objectives as obj
from .optimize import LoopSettings, Progress, model_score, optimize
from .param import PARAMETRIZATIONS, make_param
from .transforms import CropSettings, RandomCrops, resize_whole

METHODS = tuple(PARAMETRIZATIONS)
LIMITS = {"steps": (1, 10000), "size": (32, 2048), "crops": (0, 64)}

DEFAULT_STEPS = 160
DEFAULT_SIZE = 384
DEFAULT_CROPS = 4
DEFAULT_CROP_SCALE = (0.9, 0.4)
DEFAULT_NOISE = 0.05


@dataclass(frozen=True)
class Settings:
    """Everything that fixes a run's result (with the model and its revision)."""

    method: str = "maco"
    steps: int = DEFAULT_STEPS
    size: int = DEFAULT_SIZE
    crops: int = DEFAULT_CROPS
    seed: int = 0
    lr: float = 1.0
    crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE
    noise: float = DEFAULT_NOISE
    spectrum: str | None = None

    def to_manifest(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("method")
        out["crop_scale"] = list(self.crop_scale)
        return out


MAX_SEED = 2**63 - 1


def validate(*, method: str, steps: int, size: int, crops: int, lr: float | None, seed: int | None = None,
             batch_size: int | None = None, max_seconds: float | None = None) -> None:
    """Raise `InvalidSettings` naming the allowed range for a setting outside it."""
    if method not in METHODS:
        raise InvalidSettings(f"unknown method '{method}': use one of {', '.join(METHODS)}")
    for name, value in (("steps", steps), ("size", size), ("crops", crops)):
        lo, hi = LIMITS[name]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise InvalidSettings(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise InvalidSettings(f"lr must be a positive number, got {lr!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED):
        raise InvalidSettings(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise InvalidSettings(f"batch size must be a positive integer, got {batch_size!r}")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and not isinstance(max_seconds, bool)
                                        and math.isfinite(max_seconds) and max_seconds > 0):
        raise InvalidSettings(f"max seconds must be a positive number, got {max_seconds!r}")


def _targets(
    model: VisionModel, layer: str | None, units: Sequence[int] | None, classes: Sequence[str | int] | None
) -> tuple[str, list[int]]:
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
        return LOGITS, picked
    name = layer or model.default_layer
    info = model.layer(name)
    if units is None:
        return name, list(range(min(4, info.units)))
    if not units:
        raise InvalidSettings("no units given")
    return name, model.check_units(info, list(units))


def visualize(
    model: VisionModel | str,
    *,
    layer: str | None = None,
    units: Sequence[int] | None = None,
    classes: Sequence[str | int] | None = None,
    objectives: Sequence[obj.Objective] | None = None,
    method: str = "maco",
    steps: int = DEFAULT_STEPS,
    size: int = DEFAULT_SIZE,
    crops: int = DEFAULT_CROPS,
    seed: int = 0,
    lr: float | None = None,
    crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE,
    noise: float = DEFAULT_NOISE,
    spectrum: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
    max_seconds: float | None = None,
) -> list[Visualization]:
    """Visualize units of a layer, one image per unit.

    Args:
        model: a `VisionModel` or a model id (loaded with `load_model`).
        layer: layer name (`hf-fviz layers MODEL`); default `logits` where the model has a head.
        units: unit indices (channels or classes); default the first 4.
        classes: class names (case-insensitive, any synonym) or indices; implies `logits`.
        objectives: custom `Objective`s instead of units (one image each), e.g. `objectives.text("a red apple")`
            on image-text models.
        method: 'maco' (phase only, natural magnitude), 'fourier' (Olah et al.) or 'pixel'.
        steps, size, crops: optimization steps, canvas side in pixels, crops per step.
        seed: fixes the result on one device (the same seed gives every unit the same start).
        lr: learning rate; default 0.3 for maco, 1.0 for fourier, 0.05 for pixel.
        crop_scale: mean crop side (fraction of the canvas) at the first and last step.
        noise: std of the noise added to each crop (model input space).
        spectrum: a .npy magnitude spectrum (`hf-fviz spectrum`) instead of the shipped one.
        batch_size: units optimized together per forward pass; None measures the fastest
            per unit on this machine (`engine.chunking`).
        progress: `progress(step, total, info)`, steps counted over all chunks.
        device: 'auto', 'cpu', 'cuda' or None (the model's device).
        max_seconds: stop at the first step boundary after this many seconds and return the
            images as they are; chunks not started by then are left out. Every returned
            visualization then has `extra['stopped_early']`, `extra['steps_done']` and
            `extra['units_skipped']`.

    Raises `ResourceLimit` before any step when one chunk would not fit in the free memory
    (see `engine.budget`), with the estimate and what to change.
    """
    validate(method=method, steps=steps, size=size, crops=crops, lr=lr, seed=seed, batch_size=batch_size,
             max_seconds=max_seconds)
    deadline = time.perf_counter() + max_seconds if max_seconds is not None else None
    if isinstance(model, str):
        from ..hub import load_model

        model = load_model(model, device=device or "auto")
    elif device is not None:
        from ..hub import resolve_device

        model.to(resolve_device(device))
    if objectives is not None:
        if units is not None or classes is not None:
            raise InvalidSettings("give objectives, or units/classes, not both")
        objectives = [o.bind(model) for o in objectives]  # text objectives embed their text here, once
        targets: list[tuple[int | None, obj.Objective, str, str]] = [(None, o, repr(o), ",".join(o.layers())) for o in objectives]
    else:
        name, picked = _targets(model, layer, units, classes)
        targets = [(u, obj.for_unit(name, u), model.label(u, name), name) for u in picked]
    if not targets:
        raise InvalidSettings("nothing to visualize")
    spec_path = os.fspath(spectrum) if spectrum is not None else None
    if spec_path is not None and not os.path.isfile(spec_path):
        raise InvalidSettings(f"spectrum file {spec_path} does not exist (build one with `hf-fviz spectrum IMAGE_DIR --out FILE`)")
    lr_used = float(lr) if lr is not None else PARAMETRIZATIONS[method].default_lr
    settings = Settings(method, steps, size, crops, seed, lr_used, tuple(crop_scale), float(noise), spec_path)
    info = {layer_.name: layer_ for layer_ in model.layers()}
    for _, o, _, _ in targets:
        for name in o.layers():
            if name not in info:
                model.layer(name)  # UnknownLayer with suggestions

    used_layers = sorted({name for _, o, _, _ in targets for name in o.layers()})
    if batch_size is None:
        batch_size = _auto_batch_size(model, targets, settings, info, used_layers)
    budget.check(model, units=len(targets), crops=crops, size=size, batch_size=batch_size, layers=used_layers)

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


def auto_batch_size(model: VisionModel, *, layer: str, units: Sequence[int], method: str = "maco", size: int = DEFAULT_SIZE,
                    crops: int = DEFAULT_CROPS, seed: int = 0) -> int:
    """How many of `units` to optimize together on this machine (measured; see `engine.chunking`)."""
    targets = [(u, obj.for_unit(layer, u), "", layer) for u in units]
    settings = Settings(method, 3, size, crops, seed, PARAMETRIZATIONS[method].default_lr)
    info = {layer_.name: layer_ for layer_ in model.layers()}
    return _auto_batch_size(model, targets, settings, info, [layer])


def _auto_batch_size(model: VisionModel, targets, settings: Settings, info, layers: Sequence[str]) -> int:
    """Time three-step throwaway runs of 1, 2, 4, ... units and keep the fastest per unit."""
    largest = budget.largest_fit(model, units=len(targets), crops=settings.crops, size=settings.size, layers=layers)
    probe = replace(settings, steps=3)
    cuda = model.device.type == "cuda"

    def seconds_per_step(c: int) -> float:
        stamps: list[float] = []

        def tick(*_args: Any) -> None:
            if cuda:
                torch.cuda.synchronize(model.device)
            stamps.append(time.perf_counter())

        _run_chunk(model, targets[:c], probe, info, tick)
        return min(b - a for a, b in zip(stamps, stamps[1:]))

    key = (model.id, id(model.module), tuple(layers), settings.method, settings.size, settings.crops, str(model.device),
           torch.get_num_threads())
    return chunking.pick_chunk(seconds_per_step, units=len(targets), largest=largest, key=key)


def _run_chunk(model: VisionModel, chunk, settings: Settings, info, progress, *, chunk_index: int = 0,
               deadline: float | None = None) -> list[Visualization]:
    device = model.device
    n = len(chunk)
    objs = [o for _, o, _, _ in chunk]
    layers = tuple(dict.fromkeys(name for o in objs for name in o.layers()))
    param = make_param(settings.method, n, settings.size, seeds=[settings.seed] * n, spectrum=settings.spectrum, device=device)
    crop_settings = CropSettings(crops=settings.crops, scale=settings.crop_scale, noise=settings.noise, whole_view=True)
    transforms = RandomCrops(crop_settings, out_size=model.input_size, steps=settings.steps, seed=settings.seed, device=device)
    param.render_size = transforms.render_size(settings.size)
    batch = obj.BatchObjective(objs, info, crops=transforms.crops)
    result = optimize(
        param,
        model_score(model, batch, layers),
        transforms=transforms,
        normalize=model.normalize,
        settings=LoopSettings(steps=settings.steps, lr=settings.lr, deadline=deadline),
        final_score=model_score(model, batch.with_crops(1), layers),
        final_transform=lambda x: resize_whole(x, model.input_size),
        progress=progress,
    )
    rows = [{"unit": unit, "label": label, "layer": layer_name} for unit, _o, label, layer_name in chunk]
    extra = {"seconds": result.seconds, "chunk": chunk_index, **({"steps_done": result.steps} if result.stopped_early else {})}
    return from_result(result, rows, method=settings.method, settings=settings, model=model, extra=extra)


def from_result(result: Any, rows: Sequence[dict[str, Any]], *, method: str, settings: Any, model: VisionModel,
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
