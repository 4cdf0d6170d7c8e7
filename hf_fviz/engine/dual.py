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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..hub.vision_model import VisionModel
from ..results import Visualization
from ..settings import RECIPES, DualSettings
from . import objectives as obj
from .cluster import cluster
from .imageset_common import ImageBatch, _canvas, _visualizations, pooled_features
from .optimize import LoopSettings, Progress
from .param import ImageMaco, ImageParam, PaperPixels
from .run import Run, crop_settings
from .transforms import CropSettings


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


def _weights(d: torch.Tensor) -> torch.Tensor:
    """softmax(-d / mean d): closer members weigh more, independent of the distance scale."""
    scale = d.mean().clamp_min(1e-12)
    return torch.softmax(-d / scale, dim=0)




def dual_objective(model: VisionModel, layer: str, images: ImageBatch, settings: DualSettings, *,
                   progress: Progress | None = None) -> list[Visualization]:
    """Class-agnostic visualization of what `layer` extracts from an image set: one image per
    cluster of the set, exciting the cluster's top channels while staying close to its pooled
    activations (The Mind's Eye, with the fixes listed in this module's docstring). `settings`
    are checked (`DualSettings.check`); `images` loaded at the model's input size.

    Each `Visualization.extra` holds `cluster`, `members` (names of the cluster's images),
    `nearest` (those used for the target), `top_channels`, `distances` (Euclidean, in
    standardized pooled space, from the final image to every cluster's target) and
    `init_distance` (the start image's distance to its own target).
    """
    start = time.perf_counter()
    k = settings.k
    model.layer(layer)
    images.require(k, what=f"dual-objective with k={k}")
    feats = pooled_features(model, images.float01(), layer)
    groups = cluster(feats, k, seed=settings.seed)

    scale = float(feats.pow(2).mean().sqrt().clamp_min(1e-8))
    n_top = max(1, min(settings.channels, feats.shape[1] // 2 if feats.shape[1] > 1 else 1))
    targets, inits, rows = [], [], []
    for c in range(k):
        idx, d = groups.nearest(c, settings.nearest)
        w = _weights(d).float()
        targets.append((w[:, None] * feats[idx]).sum(dim=0))
        inits.append((w[:, None, None, None] * images.float01(idx)).sum(dim=0))
        rows.append(
            {
                "unit": None,
                "label": f"cluster {c}",
                "layer": layer,
                "cluster": c,
                "members": [images.names[int(i)] for i in groups.members(c)],
                "nearest": [images.names[int(i)] for i in idx],
                "weights": [round(float(v), 4) for v in w],
            }
        )
    target = torch.stack(targets) / scale
    top_idx = target.topk(n_top, dim=1).indices
    top = torch.zeros_like(target, dtype=torch.bool).scatter_(1, top_idx, True)
    settings = settings.replace(channels=n_top).resolved()
    weights = dict(distance_weight=settings.distance_weight, activation_weight=settings.activation_weight)
    objectives = [obj.dual(layer, target[c], top[c], scale, **weights) for c in range(k)]

    start_images = _canvas(torch.stack(inits), settings.size)
    param: ImageParam
    if settings.recipe == "paper":
        param = PaperPixels(start_images, steps=settings.steps, device=model.device)
        crops = CropSettings(crops=1, scale=(1 / 1.2, 1 / 1.2), scale_jitter=0.0, center_std=0.4 * 0.2 / 1.2, noise=0.0)
        loop: LoopSettings = PaperLoopSettings(steps=settings.steps, lr=settings.lr)
    else:
        param = ImageMaco(start_images, spectrum=settings.spectrum, device=model.device)
        crops, loop = crop_settings(settings), LoopSettings(steps=settings.steps, lr=settings.lr)
    run = Run(model, objectives, settings, param=param, crops=crops, loop=loop)
    init_feats = pooled_features(model, run.whole(run.start_images()), layer)
    result = run.optimize(progress)
    final_feats = pooled_features(model, run.whole(result.images.to(model.device)), layer)
    dist = torch.cdist(final_feats / scale, target)  # (k images, k targets)
    init_dist = torch.cdist(init_feats / scale, target).diagonal()
    for c, row in enumerate(rows):
        row["top_channels"] = top_idx[c].tolist()
        row["distances"] = [round(float(v), 5) for v in dist[c]]
        row["init_distance"] = round(float(init_dist[c]), 5)
    return _visualizations(result, rows, method="dual", settings=settings, model=model, started=start)


__all__ = ["dual_objective", "DualSettings", "PaperLoopSettings", "RECIPES"]
