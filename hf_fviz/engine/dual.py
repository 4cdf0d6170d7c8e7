"""The dual objective ("The Mind's Eye", Stergiou 2021): what a layer extracts from an image set,
one image per cluster of the set, exciting the cluster's top channels while staying close to its
pooled activations.

As in the authors' `vis.py`, with its quirks fixed (docs/ALGORITHMS.md §3):
per cluster, the `nearest` members closest to the centroid (the code takes the farthest), weights
softmax(-d / mean d) (the code's softmax(1/d) is scale-dependent), target ā = Σ w_j a_j, top-n
channels of that cluster's own ā (the code pushes every image on the union of all clusters'
channels), loss per image = w_d · mean_c ρ(u_c − t_c) − w_a · Σ_{c∈C_k} u_c t_c / Σ_{c∈C_k} t_c²,
with ρ(x) = √(x²+1) − 1 (Charbonnier, the defaults of the adaptive loss the code re-creates every
step) and u, t the activations divided by the set's RMS activation, so the two terms keep the
same balance on any layer of any model (the code's raw dot product swamps the distance term).
The L1 penalty on the penultimate conv input is left out. Recipes:
- `recipe="maco"` (default): MACO, the phase initialised from the cluster's weighted mean image
  (see `ImageMaco`), random crops, NAdam.
- `recipe="paper"`: free pixels initialised with the weighted mean image, SGD Nesterov (momentum
  0.9, kept across steps; lr linear lr → 0.16·lr as 0.5 → 0.08 in the code), centre-weighted
  gradient mask (Gaussian, std 0.137 → 0.111 of the side = the code's σ 420 → 340 at 512 px),
  Gaussian blur (σ 0.9 → 0.2 px at 512) blended in under the mask every 10 steps, one slightly
  smaller jittered window per step (the code re-draws a 512 window of a ×1.2 canvas). TV-Bregman
  denoising, brightness bumps and uint8 round trips are left out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidSettings
from ..hub.vision_model import Layer, VisionModel
from ..images import ImagesSpec, load_images
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
    pool,
    pooled_features,
)
from .methods import Visualization
from .optimize import LoopSettings, Progress, optimize
from .param import ImageMaco, ImageParam, PaperPixels
from .transforms import CropSettings, RandomCrops, resize_whole

RECIPES = ("maco", "paper")
DUAL_MACO_LR = 0.3  # phase lr (radians) of the dual-objective MACO recipe (measured: see quality_imagesets)


class _LinearSGD(torch.optim.SGD):
    """SGD whose learning rate falls linearly from `lr` to `end_lr` over `steps` steps."""

    def __init__(self, params: Sequence[torch.Tensor], *, lr: float, end_lr: float, steps: int) -> None:
        super().__init__(params, lr=lr, momentum=0.9, nesterov=True)
        self._lr0, self._lr1, self._steps, self._t = lr, end_lr, max(1, steps), 0

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        frac = min(self._t, self._steps - 1) / max(self._steps - 1, 1)
        for group in self.param_groups:
            group["lr"] = self._lr0 + (self._lr1 - self._lr0) * frac
        self._t += 1
        return super().step(closure)


@dataclass(frozen=True)
class PaperLoopSettings(LoopSettings):
    """The Mind's Eye optimizer: SGD Nesterov, lr falling linearly to `end_ratio` · lr."""

    optimizer: str = "sgd-nesterov"
    end_ratio: float = 0.16

    def make_optimizer(self, params: Sequence[torch.Tensor]) -> torch.optim.Optimizer:
        return _LinearSGD(params, lr=self.lr, end_lr=self.lr * self.end_ratio, steps=self.steps)


@dataclass(frozen=True)
class DualSettings(ManifestSettings):
    """Everything that fixes a dual-objective run (with the model, layer and image set)."""

    recipe: str = "maco"
    k: int = 4
    steps: int = DEFAULT_STEPS
    size: int = DEFAULT_SIZE
    crops: int = DEFAULT_CROPS
    seed: int = 0
    lr: float = 0.3
    channels: int = 50
    nearest: int = 10
    distance_weight: float = 2.0
    activation_weight: float = 1.0
    crop_scale: tuple[float, float] = (1.0, 0.85)
    noise: float = 0.05
    spectrum: str | None = None



def _weights(d: torch.Tensor) -> torch.Tensor:
    """softmax(-d / mean d): closer members weigh more, independent of the distance scale."""
    scale = d.mean().clamp_min(1e-12)
    return torch.softmax(-d / scale, dim=0)



def charbonnier(x: torch.Tensor) -> torch.Tensor:
    """ρ(x) = √(x² + 1) − 1: Barron's adaptive loss at its defaults (α = 1, c = 1)."""
    return torch.sqrt(x * x + 1.0) - 1.0


@dataclass
class DualTargets:
    """Per-cluster targets in pooled feature space, divided by the set's RMS activation `scale`."""

    targets: torch.Tensor  # (k, C) standardized
    top: torch.Tensor  # (k, C) bool: each cluster's own top-n channels
    scale: float


def dual_terms(pooled: torch.Tensor, targets: torch.Tensor, top: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, activation) per row: mean Charbonnier distance to the row's target, and the
    dot product with the target on its top channels, 1.0 when the row equals the target."""
    u = pooled.float() / scale
    t = targets.to(u.device)
    mask = top.to(u.device).float()
    distance = charbonnier(u - t).mean(dim=1)
    activation = (u * t * mask).sum(dim=1) / (t * t * mask).sum(dim=1).clamp_min(1e-12)
    return distance, activation


def dual_score(
    model: VisionModel, layer: Layer, targets: DualTargets, *, crops: int, distance_weight: float, activation_weight: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Score for the render loop: crops grouped per image -> w_a·activation − w_d·distance, (N,)."""

    def score(x: torch.Tensor) -> torch.Tensor:
        n = targets.targets.shape[0]
        pooled = pool(model.activations(x, layer.name), layer)
        t = targets.targets.repeat_interleave(crops, dim=0)
        top = targets.top.repeat_interleave(crops, dim=0)
        distance, activation = dual_terms(pooled, t, top, targets.scale)
        return (activation_weight * activation - distance_weight * distance).view(n, crops).mean(dim=1)

    return score


def dual_objective(
    model: VisionModel | str,
    *,
    layer: str,
    images: ImagesSpec,
    k: int = 4,
    recipe: str = "maco",
    steps: int = DEFAULT_STEPS,
    size: int = DEFAULT_SIZE,
    crops: int = DEFAULT_CROPS,
    seed: int = 0,
    lr: float | None = None,
    channels: int = 50,
    nearest: int = 10,
    distance_weight: float = 2.0,
    activation_weight: float = 1.0,
    crop_scale: tuple[float, float] = (1.0, 0.85),
    noise: float = 0.05,
    spectrum: str | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
) -> list[Visualization]:
    """Class-agnostic visualization of what `layer` extracts from an image set: one image per
    cluster of the set, exciting the cluster's top channels while staying close to its pooled
    activations (The Mind's Eye, with the fixes listed in this module's docstring).

    Args:
        layer: a conv, tokens or logits layer of the model.
        images: "samples", a folder, files, an `ImageSet` or a float tensor (N, 3, H, W).
        k: clusters (one image each); the set needs at least k images.
        recipe: "maco" (MACO from the mean image's phase) or "paper" (pixels, SGD, blur, mask).
        channels: top channels per cluster for the activation term (at most half the layer).
        nearest: members closest to the centroid that make the target and start image.
        distance_weight, activation_weight: weights of the two terms.

    Each `Visualization.extra` holds `cluster`, `members` (names of the cluster's images),
    `nearest` (those used for the target), `top_channels`, `distances` (Euclidean, in
    standardized pooled space, from the final image to every cluster's target) and
    `init_distance` (the start image's distance to its own target).
    """
    if recipe not in RECIPES:
        raise InvalidSettings(f"unknown recipe '{recipe}': use one of {', '.join(RECIPES)}")
    _check_common(k=k, steps=steps, size=size, crops=crops, lr=lr, nearest=nearest)
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise InvalidSettings(f"channels must be a positive integer, got {channels!r}")
    for name, w in (("distance_weight", distance_weight), ("activation_weight", activation_weight)):
        if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
            raise InvalidSettings(f"{name} must be a number >= 0, got {w!r}")
    start = time.perf_counter()
    model = _model(model, device)
    info = model.layer(layer)
    imgs = load_images(images, model=model)
    imgs.require(k, what=f"dual-objective with k={k}")
    feats = pooled_features(model, imgs.float01(), layer)
    groups = cluster(feats, k, seed=seed)

    scale = float(feats.pow(2).mean().sqrt().clamp_min(1e-8))
    n_top = max(1, min(channels, feats.shape[1] // 2 if feats.shape[1] > 1 else 1))
    targets, inits, rows = [], [], []
    for c in range(k):
        idx, d = groups.nearest(c, nearest)
        w = _weights(d).float()
        targets.append((w[:, None] * feats[idx]).sum(dim=0))
        inits.append((w[:, None, None, None] * imgs.float01(idx)).sum(dim=0))
        rows.append(
            {
                "unit": None,
                "label": f"cluster {c}",
                "layer": layer,
                "cluster": c,
                "members": [imgs.names[int(i)] for i in groups.members(c)],
                "nearest": [imgs.names[int(i)] for i in idx],
                "weights": [round(float(v), 4) for v in w],
            }
        )
    target = torch.stack(targets) / scale
    top_idx = target.topk(n_top, dim=1).indices
    top = torch.zeros_like(target, dtype=torch.bool).scatter_(1, top_idx, True)
    dual_targets = DualTargets(target, top, scale)

    lr_used = float(lr) if lr is not None else (PaperPixels.default_lr if recipe == "paper" else DUAL_MACO_LR)
    settings = DualSettings(
        recipe, k, steps, size, crops, seed, lr_used, n_top, nearest, float(distance_weight), float(activation_weight),
        tuple(crop_scale), float(noise), spectrum,
    )
    start_images = _canvas(torch.stack(inits), size)
    if recipe == "paper":
        param: ImageParam = PaperPixels(start_images, steps=steps, device=model.device)
        crop_settings = CropSettings(crops=1, scale=(1 / 1.2, 1 / 1.2), scale_jitter=0.0, center_std=0.4 * 0.2 / 1.2, noise=0.0)
        loop: LoopSettings = PaperLoopSettings(steps=steps, lr=lr_used)
    else:
        param = ImageMaco(start_images, spectrum=spectrum, device=model.device)
        crop_settings = CropSettings(crops=crops, scale=tuple(crop_scale), noise=float(noise))
        loop = LoopSettings(steps=steps, lr=lr_used)
    transforms = RandomCrops(crop_settings, out_size=model.input_size, steps=steps, seed=seed, device=model.device)
    kwargs = dict(distance_weight=float(distance_weight), activation_weight=float(activation_weight))
    whole = lambda x: resize_whole(x, model.input_size)  # noqa: E731
    with torch.no_grad():
        param.eval()
        init_feats = pooled_features(model, whole(param()), layer)
    result = optimize(
        param,
        dual_score(model, info, dual_targets, crops=transforms.crops, **kwargs),
        transforms=transforms,
        normalize=model.normalize,
        settings=loop,
        final_score=dual_score(model, info, dual_targets, crops=1, **kwargs),
        final_transform=whole,
        progress=progress,
    )
    final_feats = pooled_features(model, whole(result.images.to(model.device)), layer)
    dist = torch.cdist(final_feats / scale, target)  # (k images, k targets)
    init_dist = torch.cdist(init_feats / scale, target).diagonal()
    for c, row in enumerate(rows):
        row["top_channels"] = top_idx[c].tolist()
        row["distances"] = [round(float(v), 5) for v in dist[c]]
        row["init_distance"] = round(float(init_dist[c]), 5)
    return _visualizations(result, rows, method="dual", settings=settings, model=model, started=start)



__all__ = [
    "dual_objective",
    "DualSettings",
    "DualTargets",
    "PaperLoopSettings",
    "charbonnier",
    "dual_terms",
    "dual_score",
    "RECIPES",
    "DUAL_MACO_LR",
]
