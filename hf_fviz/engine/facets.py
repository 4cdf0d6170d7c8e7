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

import torch

from ..errors import InvalidSettings
from ..hub.vision_model import LOGITS, VisionModel
from ..results import Visualization
from ..settings import FACET_PARAMS, FacetSettings
from . import objectives as obj
from .cluster import cluster
from .imageset_common import ImageBatch, _canvas, _visualizations, penultimate_layer, pooled_features, unit_activations
from .optimize import Progress
from .param import ImageMaco, ImageParam, ImagePixels, center_mask
from .run import Run, crop_settings


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
    """How many of n images to keep: a fraction (<= 1) or a count, at least k (and 2k where there are)."""
    count = math.ceil(top * n) if top <= 1 else int(top)
    return min(n, max(count, k, min(n, 2 * k)))


def multifaceted(model: VisionModel, layer: str | None, unit: int | str, images: ImageBatch, settings: FacetSettings, *,
                 progress: Progress | None = None) -> list[Visualization]:
    """Multifaceted feature visualization of one unit: k images, one per facet (cluster) of the
    images that excite the unit most (Nguyen et al. 2016). `unit`: an index of `layer` (default
    the model's default layer), or a class name (implies `logits`); `settings` checked
    (`FacetSettings.check`); `images` loaded at the model's input size.

    Each `Visualization.extra` holds `facet`, `members` (names), `nearest`, `member_activations`
    and `init_objective` (the unit's activation on the start image).
    """
    start = time.perf_counter()
    k = settings.k
    layer_name, unit_idx = _resolve_unit(model, layer, unit)
    images.require(k, what=f"multifaceted visualization with k={k}")
    x01 = images.float01()
    ranking = unit_activations(model, x01, layer_name, unit_idx)
    kept = torch.argsort(ranking, descending=True, stable=True)[: _top_count(settings.top, len(images), k)]
    embed_layer = penultimate_layer(model).name
    feats = pooled_features(model, x01[kept], embed_layer)
    groups = cluster(feats, k, seed=settings.seed)

    inits, rows = [], []
    label = model.label(unit_idx, layer_name)
    for c in range(k):
        idx, _ = groups.nearest(c, settings.nearest)
        inits.append(x01[kept[idx]].mean(dim=0))
        members = kept[groups.members(c)]
        rows.append(
            {
                "unit": unit_idx,
                "label": f"{label} · facet {c}",
                "layer": layer_name,
                "facet": c,
                "members": [images.names[int(i)] for i in members],
                "nearest": [images.names[int(i)] for i in kept[idx]],
                "member_activations": [round(float(ranking[int(i)]), 4) for i in members],
                "embedding_layer": embed_layer,
            }
        )
    settings = settings.resolved()
    start_images = _canvas(torch.stack(inits), settings.size)
    mask = center_mask(settings.size, 0.35) if settings.center_bias else None
    param: ImageParam
    if settings.param == "maco":
        param = ImageMaco(start_images, spectrum=settings.spectrum, grad_mask=mask, device=model.device)
    else:
        param = ImagePixels(start_images, grad_mask=mask, device=model.device)
    crops = crop_settings(settings, center_std=0.05 if settings.center_bias else 0.15)
    run = Run(model, [obj.for_unit(layer_name, unit_idx)] * k, settings, param=param, crops=crops)
    with torch.no_grad():
        init_objective = run.final_score(run.whole(model.normalize(run.start_images()))).float().cpu()
    result = run.optimize(progress)
    for c, row in enumerate(rows):
        row["init_objective"] = round(float(init_objective[c]), 5)
    return _visualizations(result, rows, method="facets", settings=settings, model=model, started=start)


__all__ = ["multifaceted", "FacetSettings", "FACET_PARAMS"]
