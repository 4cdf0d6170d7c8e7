"""The one render loop every method uses (MACO, Fourier, pixel; later dual-objective, facets).

    result = optimize(param, score, transforms=crops, normalize=model.normalize,
                      settings=LoopSettings(steps=128, lr=1.0), final_score=whole_score)

Per step: images = param() (N, 3, S, S) in [0, 1], float32, S the step's render side (set from the
transforms' `render_side` when they have one) -> normalize -> K crops per image -> score (N,)
under bf16 autocast on CUDA -> loss = -sum(score) [+ extra loss] -> backward -> transparency +=
|dL/dimage| (summed over colour channels, one map per image, per render side) -> optimizer step.
When the transforms cut their random crops from a separate view of the canvas (`attribution_tap`,
as `RandomCrops` does beside a whole-canvas view), the transparency sums only the random crops'
gradient: the whole view's gradient reaches every pixel and would flatten the map. The images are
the same either way (the optimizer still gets the full gradient); the map of all views is kept as
`transparency_all`. Summing (not averaging) over images keeps each image's gradient independent
of N, so a batch of N units optimizes exactly as N single runs.

Stops with `OptimizationDiverged` as soon as an objective is NaN or infinite (checked every step
on CPU; every few steps on CUDA to avoid a device sync per step). With a `deadline`
(`time.perf_counter()` value) it stops cleanly at the first step boundary past it and returns the
images as they are (`stopped_early`, `steps` = steps done).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InvalidSettings, OptimizationDiverged
from .heap import steady_heap
from .param import ImageParam

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""Normalized crops (N*K, 3, h, w), grouped per image -> one objective value per image (N,)."""
ExtraLoss = Callable[[torch.Tensor, int], torch.Tensor]
"""(images in [0, 1] (N, 3, S, S), step) -> a loss to *minimize*, (N,) or scalar, added to -score."""
Progress = Callable[[int, int, Mapping[str, Any]], None]
"""progress(step, total, info): step counts from 1; info has 'objective' (mean over images, float)
and 'images', a no-argument function returning the current canvas (N, 3, S, S) in [0, 1] on the CPU."""


@dataclass(frozen=True)
class LoopSettings:
    """Optimizer settings of the loop. `autocast=None` means bf16 autocast on CUDA only;
    `deadline` a `time.perf_counter()` value after which the loop stops at a step boundary."""

    steps: int = 128
    lr: float = 1.0
    optimizer: str = "nadam"
    autocast: bool | None = None
    deadline: float | None = None

    def make_optimizer(self, params: Sequence[torch.Tensor]) -> torch.optim.Optimizer:
        # foreach: the multi-tensor kernels, also for one tensor: 10 ms against 14 ms per NAdam
        # step for a 1280 px MACO phase on 2 CPU cores (the default on CUDA already).
        if self.optimizer == "nadam":
            return torch.optim.NAdam(params, lr=self.lr, foreach=True)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, foreach=True)
        raise InvalidSettings(f"unknown optimizer {self.optimizer!r}: use 'nadam' or 'adam'")


@dataclass
class OptimizationResult:
    """What the loop returns, on the CPU: images (N, 3, S, S) in [0, 1]; transparency (N, S, S)
    = sum over steps of |dL/dx| summed over colour; history (steps, N) of the crop-averaged
    objective; final (N,) the objective on the uncropped image (NaN when no `final_score`);
    transparency_all the same sum over every view (equal to `transparency` without a tap)."""

    images: torch.Tensor
    transparency: torch.Tensor
    history: np.ndarray
    final: np.ndarray
    seconds: float
    steps: int = field(default=0)
    stopped_early: bool = False
    transparency_all: torch.Tensor | None = None


@steady_heap()
def optimize(
    param: ImageParam,
    score: ScoreFn,
    *,
    transforms: Callable[[torch.Tensor, int], torch.Tensor],
    normalize: Callable[[torch.Tensor], torch.Tensor],
    settings: LoopSettings,
    final_score: ScoreFn | None = None,
    final_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    extra_loss: ExtraLoss | None = None,
    progress: Progress | None = None,
) -> OptimizationResult:
    """Run the optimization; see the module docstring. `final_transform` maps the normalized
    canvas to the model input for `final_score` (e.g. a resize)."""
    if settings.steps < 1:
        raise InvalidSettings("steps must be at least 1")
    device = next(param.parameters()).device
    use_amp = settings.autocast if settings.autocast is not None else device.type == "cuda"
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if use_amp else nullcontext()
    check_every = 1 if device.type == "cpu" else 8
    info_every = max(1, settings.steps // 64)
    optimizer = settings.make_optimizer(list(param.parameters()))
    n, size = param.n, param.size
    # The spectral parametrizations render each step at the side its crops can resolve
    # (`render_side`, coarse to fine); the maps are summed per render side and upsampled at the end.
    side_of = getattr(transforms, "render_side", None) if param.render_size is not None else None
    transparency: dict[int, torch.Tensor] = {}
    transparency_all: dict[int, torch.Tensor] = {}
    history = torch.zeros(settings.steps, n, device=device)
    info: dict[str, Any] = {"objective": float("nan")}
    start = time.perf_counter()
    done = settings.steps
    param.train()
    for step in range(settings.steps):
        optimizer.zero_grad(set_to_none=True)
        if side_of is not None:
            param.render_size = side_of(step, size)
        images = param()
        images.retain_grad()
        x = normalize(images)
        crops = transforms(x, step)
        tap = getattr(transforms, "attribution_tap", None)
        if tap is not None:
            tap.retain_grad()
        with amp:
            values = score(crops)
        values = values.float()
        loss = -values.sum()
        if extra_loss is not None:
            loss = loss + extra_loss(images, step).float().sum()
        loss.backward()
        with torch.no_grad():
            _accumulate(transparency_all, images.grad.abs().sum(dim=1))
            if tap is not None:
                _accumulate(transparency, _through(normalize, images, tap.grad).abs().sum(dim=1))
            history[step] = values.detach()
        if step % check_every == 0 or step == settings.steps - 1:
            _check_finite(values.detach(), loss.detach(), step)
        optimizer.step()
        if progress is not None:
            if step % info_every == 0 or step == settings.steps - 1:
                # `images` is a thunk: the Space shows intermediate images, others pay nothing.
                info = {"objective": float(values.detach().mean()),
                        "images": lambda images=images: images.detach().float().cpu()}
            progress(step + 1, settings.steps, info)
        if settings.deadline is not None and step + 1 < settings.steps and time.perf_counter() >= settings.deadline:
            done = step + 1
            break
    param.eval()
    with torch.no_grad():
        images = param().detach()
        final = torch.full((n,), float("nan"))
        if final_score is not None:
            x = normalize(images)
            if final_transform is not None:
                x = final_transform(x)
            with amp:
                final = final_score(x).float()
            if not torch.isfinite(final).all():
                raise OptimizationDiverged("the final image's objective is NaN or infinite")
    all_views = _to_canvas(transparency_all, n, size).cpu()
    return OptimizationResult(
        images=images.float().cpu(),
        transparency=_to_canvas(transparency, n, size).cpu() if transparency else all_views,
        transparency_all=all_views,
        history=history[:done].cpu().numpy(),
        final=final.cpu().numpy(),
        seconds=time.perf_counter() - start,
        steps=done,
        stopped_early=done < settings.steps,
    )


def _through(normalize: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
    """A gradient w.r.t. the normalized canvas, carried back to the canvas in [0, 1] (the
    normalization's vector-Jacobian product); zeros when no gradient reached it."""
    if grad is None:
        return torch.zeros_like(images)
    with torch.enable_grad():
        x = images.detach().requires_grad_(True)
        (out,) = torch.autograd.grad(normalize(x), x, grad)
    return out


def _accumulate(maps: dict[int, torch.Tensor], grad: torch.Tensor) -> None:
    """Add a step's map (N, side, side) to the running sum of its render side."""
    side = grad.shape[-1]
    if side in maps:
        maps[side].add_(grad)
    else:
        maps[side] = grad


def _to_canvas(maps: dict[int, torch.Tensor], n: int, size: int) -> torch.Tensor:
    """The transparency map on the full canvas: maps accumulated at lower render sizes are
    upsampled, each coarse gradient spread over the (size / side)^2 pixels it stands for."""
    out: torch.Tensor | None = None
    for side in sorted(maps):
        m = maps[side]
        if side != size:
            up = torch.nn.functional.interpolate(m[:, None], size=(size, size), mode="bilinear", align_corners=False)
            m = up[:, 0] * (side / size) ** 2
        out = m if out is None else out + m
    return out if out is not None else torch.zeros(n, size, size)


def _check_finite(values: torch.Tensor, loss: torch.Tensor, step: int) -> None:
    if bool(torch.isfinite(values).all()) and bool(torch.isfinite(loss)):
        return
    bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
    which = f" for image(s) {bad}" if bad else " (extra loss)"
    raise OptimizationDiverged(
        f"the objective became NaN or infinite by step {step + 1}{which}; try a lower learning rate or another layer/unit"
    )


def model_score(model: Any, objective: Callable[[Mapping[str, torch.Tensor]], torch.Tensor], layers: Sequence[str]) -> ScoreFn:
    """Score function for a VisionModel: fetch the objective's layers (each forward pass stops at
    its layer; an objective reading two layers runs two truncated passes) and apply it."""
    names = list(layers)

    def score(x: torch.Tensor) -> torch.Tensor:
        return objective({name: model.activations(x, name) for name in names})

    return score
