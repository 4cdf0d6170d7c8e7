"""Multifaceted feature visualization (Nguyen, Yosinski & Clune 2016): one image per facet
(cluster) of the images that excite a unit most, so a unit that fires for several kinds of input
shows each of them rather than one blend.

Rank the set by the unit's activation, keep the top images (`top`), embed them with
the penultimate layer (the last layer before `logits`, pooled), PCA, k-means into k facets, start
each facet from the mean of the `nearest` (15) images closest to its centroid, and optimize the
unit with a centre bias (crops centred on the canvas, centre-weighted gradient mask), one image per
facet. `param="maco"` (default) starts MACO from the mean image's phase; `param="pixel"` is the
authors' mean-image pixel start.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..errors import InvalidSettings
from ..hub.vision_model import LOGITS, VisionModel
from ..images import ImagesSpec, load_images
from . import objectives as obj
from .cluster import cluster
from .imageset_common import (
    DEFAULT_CROPS,
    DEFAULT_SIZE,
    DEFAULT_STEPS,
    ManifestSettings,
    _canvas,
    _check_common,
    _model,
    _visualizations,
    penultimate_layer,
    pooled_features,
    unit_activations,
)
from .methods import Visualization
from .optimize import LoopSettings, Progress, model_score, optimize
from .param import ImageMaco, ImageParam, ImagePixels, center_mask
from .transforms import CropSettings, RandomCrops, resize_whole

FACET_PARAMS = ("maco", "pixel")


@dataclass(frozen=True)
class FacetSettings(ManifestSettings):
    """Everything that fixes a multifaceted run (with the model, layer, unit and image set)."""

    param: str = "maco"
    k: int = 4
    top: float = 0.5
    nearest: int = 15
    steps: int = DEFAULT_STEPS
    size: int = DEFAULT_SIZE
    crops: int = DEFAULT_CROPS
    seed: int = 0
    lr: float = 0.2
    center_bias: bool = True
    crop_scale: tuple[float, float] = (0.9, 0.5)
    noise: float = 0.05
    spectrum: str | None = None



def _resolve_unit(model: VisionModel, layer: str | None, unit: int | str) -> tuple[str, int]:
    if isinstance(unit, str) and not unit.strip().lstrip("-").isdigit():
        if layer not in (None, LOGITS):
            raise InvalidSettings(f"a class name is a logit; drop --layer {layer} or give a unit index")
        if not model.has_head:
            model.layer(LOGITS)
        return LOGITS, model.class_index(unit)
    name = layer or model.default_layer
    return name, model.check_units(model.layer(name), [int(unit)])[0]


def _top_count(top: float, n: int, k: int) -> int:
    if isinstance(top, bool) or not isinstance(top, (int, float)) or not math.isfinite(top) or top <= 0:
        raise InvalidSettings(f"top must be a fraction in (0, 1] or a count >= 1, got {top!r}")
    count = math.ceil(top * n) if top <= 1 else int(top)
    return min(n, max(count, k, min(n, 2 * k)))


def multifaceted(
    model: VisionModel | str,
    *,
    unit: int | str,
    images: ImagesSpec,
    layer: str | None = None,
    k: int = 4,
    top: float = 0.5,
    nearest: int = 15,
    param: str = "maco",
    steps: int = DEFAULT_STEPS,
    size: int = DEFAULT_SIZE,
    crops: int = DEFAULT_CROPS,
    seed: int = 0,
    lr: float | None = None,
    center_bias: bool = True,
    crop_scale: tuple[float, float] = (0.9, 0.5),
    noise: float = 0.05,
    spectrum: str | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
) -> list[Visualization]:
    """Multifaceted feature visualization of one unit: k images, one per facet (cluster) of the
    images that excite the unit most (Nguyen et al. 2016).

    Args:
        unit: a unit index of `layer`, or a class name (implies `logits`).
        layer: conv, tokens or logits layer; default `logits` where the model has a head.
        images: "samples", a folder, files, an `ImageSet` or a float tensor.
        k: facets; the set needs at least k images.
        top: the images kept after ranking by the unit: a fraction (<= 1) or a count (at least k).
        nearest: images closest to each facet's centroid averaged into its start image (m = 15).
        param: "maco" (MACO from the mean image's phase) or "pixel" (the authors' pixel start).
        center_bias: crops centred on the canvas and a centre-weighted gradient (Nguyen's CBR idea).

    Each `Visualization.extra` holds `facet`, `members` (names), `nearest`, `member_activations`
    and `init_objective` (the unit's activation on the start image).
    """
    if param not in FACET_PARAMS:
        raise InvalidSettings(f"unknown parametrization '{param}': use one of {', '.join(FACET_PARAMS)}")
    _check_common(k=k, steps=steps, size=size, crops=crops, lr=lr, nearest=nearest)
    start = time.perf_counter()
    model = _model(model, device)
    layer_name, unit_idx = _resolve_unit(model, layer, unit)
    imgs = load_images(images, model=model)
    imgs.require(k, what=f"multifaceted visualization with k={k}")
    x01 = imgs.float01()
    ranking = unit_activations(model, x01, layer_name, unit_idx)
    kept = torch.argsort(ranking, descending=True, stable=True)[: _top_count(top, len(imgs), k)]
    embed_layer = penultimate_layer(model).name
    feats = pooled_features(model, x01[kept], embed_layer)
    groups = cluster(feats, k, seed=seed)

    inits, rows = [], []
    label = model.label(unit_idx, layer_name)
    for c in range(k):
        idx, _ = groups.nearest(c, nearest)
        inits.append(x01[kept[idx]].mean(dim=0))
        members = kept[groups.members(c)]
        rows.append(
            {
                "unit": unit_idx,
                "label": f"{label} · facet {c}",
                "layer": layer_name,
                "facet": c,
                "members": [imgs.names[int(i)] for i in members],
                "nearest": [imgs.names[int(i)] for i in kept[idx]],
                "member_activations": [round(float(ranking[int(i)]), 4) for i in members],
                "embedding_layer": embed_layer,
            }
        )
    lr_used = float(lr) if lr is not None else (ImageMaco.default_lr if param == "maco" else ImagePixels.default_lr)
    top_value = float(top)
    settings = FacetSettings(
        param, k, top_value, nearest, steps, size, crops, seed, lr_used, bool(center_bias), tuple(crop_scale), float(noise), spectrum
    )
    start_images = _canvas(torch.stack(inits), size)
    mask = center_mask(size, 0.35) if center_bias else None
    if param == "maco":
        image_param: ImageParam = ImageMaco(start_images, spectrum=spectrum, grad_mask=mask, device=model.device)
    else:
        image_param = ImagePixels(start_images, grad_mask=mask, device=model.device)
    crop_settings = CropSettings(crops=crops, scale=tuple(crop_scale), noise=float(noise), center_std=0.05 if center_bias else 0.15)
    transforms = RandomCrops(crop_settings, out_size=model.input_size, steps=steps, seed=seed, device=model.device)
    info = {lay.name: lay for lay in model.layers()}
    objective = obj.for_unit(layer_name, unit_idx)
    batch = obj.BatchObjective([objective] * k, info, crops=transforms.crops)
    whole_score = model_score(model, batch.with_crops(1), (layer_name,))
    whole = lambda x: resize_whole(x, model.input_size)  # noqa: E731
    with torch.no_grad():
        image_param.eval()
        init_objective = whole_score(whole(model.normalize(image_param()))).float().cpu()
    result = optimize(
        image_param,
        model_score(model, batch, (layer_name,)),
        transforms=transforms,
        normalize=model.normalize,
        settings=LoopSettings(steps=steps, lr=lr_used),
        final_score=whole_score,
        final_transform=whole,
        progress=progress,
    )
    for c, row in enumerate(rows):
        row["init_objective"] = round(float(init_objective[c]), 5)
    return _visualizations(result, rows, method="facets", settings=settings, model=model, started=start)



__all__ = ["multifaceted", "FacetSettings", "FACET_PARAMS"]
