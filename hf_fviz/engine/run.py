"""The one loop setup: settings + model + one objective per image -> parametrization, random crops,
loop settings, score functions, then `optimize`. `visualize`, `dual` and `facets` supply only
their objectives (and, for the image-set methods, a parametrization started from images and
their crop/optimizer recipe).

    run = Run(model, [obj.for_unit("logits", 1)], settings.resolved(), whole_view=True)
    result = run.optimize(progress)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from ..hub.vision_model import Layer, VisionModel
from ..settings import Settings
from . import objectives as obj
from .optimize import LoopSettings, OptimizationResult, Progress, ScoreFn, model_score, optimize
from .param import ImageParam, make_param
from .transforms import CropSettings, RandomCrops, resize_whole


def crop_settings(settings: Settings, **changes: Any) -> CropSettings:
    """The random crops a run's settings ask for (`crops`, `crop_scale`, `noise`), with `changes`
    (`whole_view`, `center_std`, ...)."""
    return replace(CropSettings(crops=settings.crops, scale=tuple(settings.crop_scale), noise=float(settings.noise)), **changes)


class Run:
    """One optimization, set up: `param` (N images), `transforms` (random crops), the crop-averaged
    `score` and the whole-image `final_score`. `settings` must be resolved (its `lr` set).

    Without `param`, the settings' method builds one from noise (seed `settings.seed` for every
    image), rendering at the size the crops can resolve; `crops` defaults to `crop_settings`
    (with `whole_view`), `loop` to NAdam at `settings.lr` stopping at `deadline`."""

    def __init__(
        self,
        model: VisionModel,
        objectives: Sequence[obj.Objective],
        settings: Settings,
        *,
        param: ImageParam | None = None,
        crops: CropSettings | None = None,
        whole_view: bool = False,
        loop: LoopSettings | None = None,
        deadline: float | None = None,
        info: Mapping[str, Layer] | None = None,
    ) -> None:
        self.model, self.settings = model, settings
        device = model.device
        crop = crops if crops is not None else crop_settings(settings, whole_view=whole_view)
        self.transforms = RandomCrops(crop, out_size=model.input_size, steps=settings.steps, seed=settings.seed, device=device)
        if param is None:
            n = len(objectives)
            param = make_param(settings.method, n, settings.size, seeds=[settings.seed] * n, spectrum=settings.spectrum,
                               device=device, render_size=self.transforms.render_size(settings.size))
        self.param = param
        assert settings.lr is not None, "Run needs resolved settings (Settings.resolved())"
        self.loop = loop if loop is not None else LoopSettings(steps=settings.steps, lr=settings.lr, deadline=deadline)
        info = dict(info) if info is not None else {layer.name: layer for layer in model.layers()}
        layers = tuple(dict.fromkeys(name for o in objectives for name in o.layers()))
        batch = obj.BatchObjective(objectives, info, crops=self.transforms.crops)
        self.score: ScoreFn = model_score(model, batch, layers)
        self.final_score: ScoreFn = model_score(model, batch.with_crops(1), layers)

    def whole(self, x: torch.Tensor) -> torch.Tensor:
        """The uncropped canvas at the model input size (how the final score sees it)."""
        return resize_whole(x, self.model.input_size)

    @torch.no_grad()
    def start_images(self) -> torch.Tensor:
        """The canvas before any step (N, 3, S, S) in [0, 1] (eval mode: full resolution)."""
        self.param.eval()
        return self.param()

    def optimize(self, progress: Progress | None = None) -> OptimizationResult:
        return optimize(
            self.param,
            self.score,
            transforms=self.transforms,
            normalize=self.model.normalize,
            settings=self.loop,
            final_score=self.final_score,
            final_transform=self.whole,
            progress=progress,
        )


__all__ = ["Run", "crop_settings"]
