"""What the two image-set methods (`dual`, `facets`) share: pooled features of an image set,
argument checks, start canvases, the settings' manifest form and the `Visualization` rows.

Kept apart from `imagesets` (the public entry module) so that `dual` and `facets` can import it
while `imagesets` imports them: no import cycle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InvalidSettings
from ..hub.vision_model import Layer, VisionModel
from . import objectives as obj
from .methods import LIMITS, Visualization, from_result

DEFAULT_STEPS = 160
DEFAULT_SIZE = 256
DEFAULT_CROPS = 4


def pool(act: torch.Tensor, info: Layer) -> torch.Tensor:
    """Canonical activations -> one vector per row: conv spatial mean, patch-token mean, logits."""
    if info.kind == "conv":
        return act.float().mean(dim=(-2, -1))
    if info.kind == "tokens":
        return act[:, info.prefix_tokens :, :].float().mean(dim=1)
    return act.float()


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


class ManifestSettings:
    """`to_manifest` of the image-set settings dataclasses: their fields, `crop_scale` as a JSON list."""

    crop_scale: tuple[float, float]

    def to_manifest(self) -> dict[str, Any]:
        out = asdict(self)  # type: ignore[call-overload]
        out["crop_scale"] = list(self.crop_scale)
        return out


def _check_common(*, k: int, steps: int, size: int, crops: int, lr: float | None, nearest: int) -> None:
    for name, value, (lo, hi) in (
        ("k", k, (1, 256)),
        ("steps", steps, LIMITS["steps"]),
        ("size", size, LIMITS["size"]),
        ("crops", crops, LIMITS["crops"]),
        ("nearest", nearest, (1, 10000)),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise InvalidSettings(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise InvalidSettings(f"lr must be a positive number, got {lr!r}")


def _model(model: VisionModel | str, device: str | torch.device | None) -> VisionModel:
    if isinstance(model, str):
        from ..hub import load_model

        return load_model(model, device=device or "auto")
    if device is not None:
        from ..hub import resolve_device

        model.to(resolve_device(device))
    return model


def _canvas(images01: torch.Tensor, size: int) -> torch.Tensor:
    """Start images (N, 3, h, w) at the model input size -> (N, 3, size, size) canvases."""
    if images01.shape[-2:] == (size, size):
        return images01
    return F.interpolate(images01, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _visualizations(
    result: Any, rows: Sequence[dict[str, Any]], *, method: str, settings: Any, model: VisionModel, started: float
) -> list[Visualization]:
    """One `Visualization` per row of the run's result; `seconds` counts the whole call since
    `started` (clustering included), and the whole set is one chunk."""
    out = from_result(result, rows, method=method, settings=settings, model=model, extra={})
    for v in out:
        v.extra["seconds"] = time.perf_counter() - started
        v.extra["chunk"] = 0
    return out
