"""What the two image-set methods (`dual`, `facets`) share: the image set they take (`ImageBatch`,
loaded by the caller: the engine reads no files), pooled features, start canvases and the
`Visualization` rows.

Kept apart from `imagesets` (the public entry module) so that `dual` and `facets` can import it
while `imagesets` imports them: no import cycle.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from ..errors import InvalidSettings
from ..hub.vision_model import Layer, VisionModel
from . import objectives as obj
from ..results import Visualization
from ..settings import Settings
from .methods import from_result
from .objectives import pool


class ImageBatch(Protocol):
    """The image set an image-set method takes (`hub.images.ImageSet` is one): names, pixels."""

    names: list[str]

    def __len__(self) -> int: ...

    def float01(self, index: Any = None) -> torch.Tensor:
        """(N, 3, H, W) float32 in [0, 1] at the model input size (rows `index`, default all)."""
        ...

    def require(self, k: int, *, what: str) -> None:
        """Raise `BadImageSet` unless the set has at least k images."""
        ...


@torch.no_grad()
def pooled_features(model: VisionModel, images01: torch.Tensor, layer: str, *, batch_size: int = 16) -> torch.Tensor:
    """(N, 3, H, W) images in [0, 1] -> (N, C) pooled activations of `layer`, on the CPU."""
    info = model.layer(layer)
    out = []
    for start in range(0, images01.shape[0], batch_size):
        x = model.normalize(images01[start : start + batch_size].to(model.device))
        out.append(pool(model.activations(x, layer), info).cpu())
    return torch.cat(out)


@torch.no_grad()
def unit_activations(model: VisionModel, images01: torch.Tensor, layer: str, unit: int, *, batch_size: int = 16) -> torch.Tensor:
    """The unit's default objective (channel mean / logit) for each image, (N,)."""
    info = {layer: model.layer(layer)}
    objective = obj.for_unit(layer, unit)
    out = []
    for start in range(0, images01.shape[0], batch_size):
        x = model.normalize(images01[start : start + batch_size].to(model.device))
        out.append(objective({layer: model.activations(x, layer)}, info).float().cpu())
    return torch.cat(out)


def penultimate_layer(model: VisionModel) -> Layer:
    """The layer that embeds images for facets: the last conv/tokens layer before the logits."""
    layers = [lay for lay in model.layers() if lay.kind != "logits"]
    if not layers:
        raise InvalidSettings(f"{model.id} has no conv or token layer to embed images with")
    return layers[-1]


def _canvas(images01: torch.Tensor, size: int) -> torch.Tensor:
    """Start images (N, 3, h, w) at the model input size -> (N, 3, size, size) canvases."""
    if images01.shape[-2:] == (size, size):
        return images01
    return F.interpolate(images01, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _visualizations(
    result: Any, rows: Sequence[dict[str, Any]], *, method: str, settings: Settings, model: VisionModel, started: float
) -> list[Visualization]:
    """One `Visualization` per row of the run's result; `seconds` counts the whole call since
    `started` (clustering included), and the whole set is one chunk."""
    out = from_result(result, rows, method=method, settings=settings, model=model, extra={})
    for v in out:
        v.extra["seconds"] = time.perf_counter() - started
        v.extra["chunk"] = 0
    return out
