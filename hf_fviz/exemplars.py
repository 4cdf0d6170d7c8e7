"""Natural exemplars: the images of a source that excite each unit most, shown beside its visualization.

    >>> from hf_fviz.exemplars import find_exemplars
    >>> found = find_exemplars(model, layer="blocks.5", units=range(16), source="org/pets", top=8)
    >>> found.top[3][0].activation, found.top[3][0].name, found.top[3][0].box

The images are streamed through the model once, in batches, each forward pass stopping at the
layer (`VisionModel.activations`). Per unit the activation is the channel objective's reduction
(spatial mean for conv, mean over patch tokens for tokens, the logit itself), so an exemplar's
activation is the very number the visualization maximizes. A running top-k per unit keeps only
the winners' pixels. For conv and token layers each exemplar also gets the box around its most
active position (`box`, pixels of the stored image): twice the core of the layer's effective
receptive field there (`receptive_field`), at most 3/4 of the image. A few images drawn uniformly from the stream (`random`) are
kept for the sanity check (`hf_fviz.sanity`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import BadImageSet, InvalidSettings
from .hub.vision_model import Layer
from .hub.sources import describe, iter_source

Progress = Callable[[int, int | None, Mapping[str, Any]], None]
"""progress(images done, images expected or None, {'images_per_s': float})"""

MAX_TOP = 64


@dataclass
class Exemplar:
    """One natural image of a unit's top-k: its position in the source stream, name, activation,
    pixels (uint8 (3, H, W) at the model input size) and crop box (left, top, right, bottom) or None."""

    index: int
    name: str
    activation: float
    pixels: torch.Tensor
    box: tuple[int, int, int, int] | None = None

    def crop(self) -> torch.Tensor | None:
        if self.box is None:
            return None
        left, top, right, bottom = self.box
        return self.pixels[:, top:bottom, left:right]


@dataclass
class ExemplarResult:
    """Top-k exemplars per unit (best first) and `random` images of the same stream."""

    layer: str
    source: str
    top: dict[int, list[Exemplar]]
    random: list[Exemplar]
    images_seen: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)


def unit_values(act: torch.Tensor, info: Layer, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, U) activations of `units` (the channel objective's reduction) and, for conv/token
    layers, (B, U) the flat index of the most active position (H*W grid or patch grid)."""
    if info.kind == "conv":
        sel = act[:, units].float()
        return sel.mean(dim=(-2, -1)), sel.flatten(2).argmax(dim=-1)
    if info.kind == "tokens":
        sel = act[:, info.prefix_tokens:, :][:, :, units].float()
        return sel.mean(dim=1), sel.argmax(dim=1)
    return act[:, units].float(), None


def receptive_field(model: Any, info: Layer) -> int:
    """Side (input pixels) of the square around a central position of `info` that holds half of
    the input gradient of that position's activations (all channels, two random inputs): the core
    of the effective receptive field (Luo et al. 2016), measured rather than computed from the
    architecture."""
    h, w = model.input_size
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0)).to(model.device).requires_grad_(True)
    act = model.activations(x, info.name)
    grid = _grid(info)
    if info.kind == "conv":
        value = act[:, :, grid[0] // 2, grid[1] // 2].sum()
    else:
        value = act[:, info.prefix_tokens + (grid[0] // 2) * grid[1] + grid[1] // 2, :].sum()
    (g,) = torch.autograd.grad(value, x)
    mass = g.abs().sum(dim=(0, 1)).cpu()
    cy, cx = _centre((grid[0] // 2) * grid[1] + grid[1] // 2, grid, (h, w))
    total = float(mass.sum())
    for half in range(4, max(h, w), 4):
        t, b, lft, r = max(0, cy - half), min(h, cy + half), max(0, cx - half), min(w, cx + half)
        if float(mass[t:b, lft:r].sum()) >= 0.5 * total:
            return 2 * half
    return max(h, w)


def _grid(info: Layer) -> tuple[int, int]:
    if info.kind == "conv":
        return int(info.shape[1]), int(info.shape[2])
    if info.grid is None:
        raise InvalidSettings(f"layer '{info.name}' has tokens without a patch grid; exemplar crops need one")
    return int(info.grid[0]), int(info.grid[1])


def _centre(flat: int, grid: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    row, col = divmod(int(flat), grid[1])
    return int((row + 0.5) * size[0] / grid[0]), int((col + 0.5) * size[1] / grid[1])


def _box(flat: int, grid: tuple[int, int], size: tuple[int, int], side: int) -> tuple[int, int, int, int]:
    cy, cx = _centre(flat, grid, size)
    side = max(8, min(side, min(size)))
    top = min(max(0, cy - side // 2), size[0] - side)
    left = min(max(0, cx - side // 2), size[1] - side)
    return left, top, left + side, top + side


def check_options(*, top: int, max_images: int | None, batch_size: int = 1) -> None:
    """Refuse a `top` outside 1..MAX_TOP and a non-positive batch size or image cap (the CLI calls
    it before loading anything)."""
    if not 1 <= int(top) <= MAX_TOP:
        raise InvalidSettings(f"--top must be in 1..{MAX_TOP}, got {top}")
    if batch_size < 1 or (max_images is not None and max_images < 1):
        raise InvalidSettings(f"batch size and max images must be positive, got {batch_size} and {max_images}")


def find_exemplars(
    model: Any,
    *,
    layer: str,
    units: Sequence[int] | Iterable[int],
    source: str | os.PathLike[str],
    top: int = 8,
    max_images: int | None = 2000,
    batch_size: int = 64,
    split: str | None = None,
    image_column: str | None = None,
    random_images: int = 16,
    seed: int = 0,
    progress: Progress | None = None,
) -> ExemplarResult:
    """The `top` images of `source` with the highest activation of each unit of `layer`
    (ties: the earlier image first), plus `random_images` uniformly drawn images; see the module
    docstring. `max_images` caps the images read (None: all)."""
    info = model.layer(layer)
    picked = model.check_units(info, [int(u) for u in units])
    if not picked:
        raise InvalidSettings("no units given")
    check_options(top=top, max_images=max_images, batch_size=batch_size)
    k, n_units = int(top), len(picked)
    unit_idx = torch.tensor(picked, device=model.device)
    size = tuple(model.input_size)
    grid = _grid(info) if info.kind in ("conv", "tokens") else None
    field_side = receptive_field(model, info) if grid is not None else 0
    side = min(2 * field_side, int(0.75 * min(size)))
    best_val = torch.full((n_units, 0), float("-inf"))
    best_idx = torch.zeros((n_units, 0), dtype=torch.long)
    best_pos = torch.zeros((n_units, 0), dtype=torch.long)
    kept: dict[int, tuple[str, torch.Tensor]] = {}
    reservoir: list[tuple[int, str, torch.Tensor]] = []
    rng = np.random.default_rng(seed)
    start, seen = time.perf_counter(), 0
    for batch in iter_source(source, size=size, batch_size=batch_size, max_images=max_images, split=split,
                             image_column=image_column):
        x = model.normalize(batch.pixels.to(model.device).float().div_(255.0))
        with torch.no_grad():
            vals, pos = unit_values(model.activations(x, info.name), info, unit_idx)
        b = vals.shape[0]
        idx = torch.arange(batch.start, batch.start + b)
        vals_t = vals.cpu().T  # (U, B)
        pos_t = pos.cpu().T if pos is not None else torch.zeros_like(vals_t, dtype=torch.long)
        cat_val = torch.cat([best_val, vals_t], dim=1)
        order = torch.argsort(cat_val, dim=1, descending=True, stable=True)[:, :k]
        best_val = cat_val.gather(1, order)
        best_idx = torch.cat([best_idx, idx.expand(n_units, b)], dim=1).gather(1, order)
        best_pos = torch.cat([best_pos, pos_t], dim=1).gather(1, order)
        wanted = set(best_idx.flatten().tolist())
        for i in range(b):
            if batch.start + i in wanted:
                kept[batch.start + i] = (batch.names[i], batch.pixels[i].clone())
        kept = {i: v for i, v in kept.items() if i in wanted}
        for i in range(b):  # reservoir sampling: every image equally likely to be kept
            n = batch.start + i
            if len(reservoir) < random_images:
                reservoir.append((n, batch.names[i], batch.pixels[i].clone()))
            else:
                j = int(rng.integers(0, n + 1))
                if j < random_images:
                    reservoir[j] = (n, batch.names[i], batch.pixels[i].clone())
        seen += b
        if progress is not None:
            progress(seen, max_images, {"images_per_s": seen / max(time.perf_counter() - start, 1e-9)})
    if seen == 0:
        raise BadImageSet(f"{describe(source, split)} holds no images")
    result_top: dict[int, list[Exemplar]] = {}
    for u, unit in enumerate(picked):
        rows = []
        for j in range(best_idx.shape[1]):
            n = int(best_idx[u, j])
            name, pixels = kept[n]
            box = _box(int(best_pos[u, j]), grid, size, side) if grid is not None else None
            rows.append(Exemplar(n, name, float(best_val[u, j]), pixels, box))
        result_top[unit] = rows
    randoms = [Exemplar(n, name, float("nan"), px) for n, name, px in sorted(reservoir, key=lambda r: r[0])]
    return ExemplarResult(
        info.name, describe(source, split), result_top, randoms, seen, time.perf_counter() - start,
        {"top": k, "max_images": max_images, "batch_size": batch_size, "receptive_field": field_side or None,
         **({"split": split} if split else {}), **({"image_column": image_column} if image_column else {})},
    )


def attach(visualizations: Sequence[Any], found: ExemplarResult) -> None:
    """Give each visualization of `found.layer` its unit's exemplars (`extra['exemplars']`) and
    the source's random images (`extra['random_images']`, for the sanity check)."""
    for vis in visualizations:
        if vis.layer == found.layer and vis.unit in found.top:
            vis.extra["exemplars"] = found.top[vis.unit]
            vis.extra["exemplar_source"] = found.source
            vis.extra["random_images"] = found.random


def with_exemplars(model: Any, visualizations: Sequence[Any], source: str | os.PathLike[str], *, top: int = 8,
                   max_images: int | None = 2000, split: str | None = None, image_column: str | None = None,
                   batch_size: int = 64, progress: Progress | None = None) -> ExemplarResult | None:
    """Find the exemplars of the visualized units (one pass over `source` per layer), attach them
    and run the sanity check (`hf_fviz.sanity`): each visualization then carries
    `extra['exemplars']` and `extra['sanity']`, which `render.save`, the card and the Space show.
    Returns the last layer's `ExemplarResult` (None when no visualization is of a unit)."""
    from .sanity import check_visualizations

    found = None
    for layer in dict.fromkeys(v.layer for v in visualizations if v.unit is not None):
        units = list(dict.fromkeys(v.unit for v in visualizations if v.layer == layer and v.unit is not None))
        found = find_exemplars(model, layer=layer, units=units, source=source, top=top, max_images=max_images, split=split,
                               image_column=image_column, batch_size=batch_size, progress=progress)
        attach(visualizations, found)
    check_visualizations(model, visualizations)
    return found


__all__ = ["Exemplar", "ExemplarResult", "attach", "find_exemplars", "receptive_field", "unit_values",
           "with_exemplars"]
