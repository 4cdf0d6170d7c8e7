"""Insertion test (Petsiuk et al. 2018, RISE): does a transparency map say where the unit looks?

Start from a blurred copy of the visualization and reveal its pixels, most attributed first; after
each slice, record the visualized unit's objective on the whole image (resized to the model input,
as for `Visualization.objective`). A map that selects makes the objective rise early: the area
under that curve is large. The same curve with the pixels revealed in random order is the
reference; `ratio` = AUC(alpha order) / AUC(random order), > 1 when the map selects.

Each curve is scaled so that the blurred start is 0 and the full image is 1 (objectives are
logits or channel means, not probabilities, and can be negative), then integrated over the
revealed fraction 0..1 (trapezoid). Blur: Gaussian, sigma 5 px at 224 px (Petsiuk et al.'s
kernel), scaled with the model input.

    >>> from hf_fviz.bench.insertion import insertion_test
    >>> result = insertion_test(model, vis)           # one Visualization of a unit
    >>> result.alpha_auc, result.random_auc, result.ratio
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import objectives as obj

SLICES = 32
RANDOM_ORDERS = 3


@dataclass(frozen=True)
class InsertionResult:
    """AUCs of the scaled insertion curves; `curve` is the alpha-order curve (SLICES + 1 points,
    raw objective values), `random_curve` the mean random-order curve."""

    alpha_auc: float
    random_auc: float
    ratio: float
    curve: list[float]
    random_curve: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), reflect padding, kernel 2*ceil(3 sigma)+1."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c, padding=(0, radius - pad))
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c, padding=(radius - pad, 0))


def _curve(model: Any, objective: obj.Objective, image: torch.Tensor, blurred: torch.Tensor, order: torch.Tensor,
           slices: int) -> np.ndarray:
    """Objective after revealing the first i/slices of `order` (i = 0..slices); one batch."""
    h, w = image.shape[-2:]
    counts = torch.round(torch.linspace(0, h * w, slices + 1)).long()
    rank = torch.empty(h * w, dtype=torch.long)
    rank[order] = torch.arange(h * w)
    masks = (rank[None, :] < counts[:, None]).float().view(slices + 1, 1, h, w)
    x = blurred * (1 - masks) + image * masks
    layer = objective.layers()[0]
    info = {lay.name: lay for lay in model.layers()}
    with torch.no_grad():
        acts = model.activations(model.normalize(x.to(model.device)), layer)
        return objective({layer: acts}, info).float().cpu().numpy()


def _auc(curve: np.ndarray) -> float:
    span = float(curve[-1] - curve[0])
    if abs(span) < 1e-8:
        return float("nan")
    scaled = (curve - curve[0]) / span
    return float(np.sum((scaled[1:] + scaled[:-1]) / 2) / (len(curve) - 1))


def insertion_test(model: Any, vis: Any, *, transparency: np.ndarray | None = None, slices: int = SLICES,
                   random_orders: int = RANDOM_ORDERS, seed: int = 0) -> InsertionResult:
    """Insertion AUC of a visualization's transparency map (or `transparency`) against random
    orders; see the module docstring. `vis` needs `image`, `transparency`, `layer` and `unit`."""
    if vis.unit is None:
        raise ValueError("the insertion test needs a unit's visualization (not a custom objective)")
    objective = obj.for_unit(vis.layer, int(vis.unit))
    size = tuple(model.input_size)
    image = torch.from_numpy(np.ascontiguousarray(vis.image)).permute(2, 0, 1)[None].float()
    image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
    t = torch.from_numpy(np.asarray(vis.transparency if transparency is None else transparency, dtype=np.float32))
    t = F.interpolate(t[None, None], size=size, mode="area")[0, 0]
    blurred = gaussian_blur(image, 5.0 * size[0] / 224)
    order = torch.argsort(-t.flatten(), stable=True)
    curve = _curve(model, objective, image, blurred, order, slices)
    gen = torch.Generator().manual_seed(seed)
    randoms = [_curve(model, objective, image, blurred, torch.randperm(order.numel(), generator=gen), slices)
               for _ in range(random_orders)]
    alpha_auc = _auc(curve)
    random_auc = float(np.mean([_auc(c) for c in randoms]))
    return InsertionResult(alpha_auc, random_auc, alpha_auc / random_auc if random_auc else float("nan"),
                           [float(v) for v in curve], [float(v) for v in np.mean(randoms, axis=0)])


__all__ = ["InsertionResult", "insertion_test", "gaussian_blur", "SLICES"]
