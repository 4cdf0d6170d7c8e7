"""The record of one unit's result (`Visualization`), shared by the engine that makes it and the
output layer that writes it: neither imports the other. Imports nothing of hf_fviz but
`settings` (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .settings import Settings


@dataclass
class Visualization:
    """One unit's result. `image` (H, W, 3) float32 in [0, 1] (the model's view, un-normalized);
    `alpha` (H, W) display transparency in [0, 1] (clipped at its 80th percentile, / max);
    `transparency` (H, W) the raw sum of |dL/dx| over steps (mean over colour), from the random
    crops only (`extra['transparency_all']` holds the sum over every view); `history` the
    crop-averaged objective per step; `objective` the value on the whole (uncropped) image;
    `settings` the run's resolved settings (`Settings.resolved()`: lr filled in)."""

    image: np.ndarray
    alpha: np.ndarray
    transparency: np.ndarray
    history: np.ndarray
    objective: float
    unit: int | None
    label: str
    layer: str
    method: str
    settings: Settings
    model_id: str = ""
    revision: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def alpha_from_transparency(t: np.ndarray, percentile: float = 80.0) -> np.ndarray:
    """Display alpha as in the paper: clip at the `percentile`, divide by the max. A map that is
    zero on more than that share of the canvas (a neuron's corner) is clipped at the percentile of
    its non-zero part instead: the paper's rule would make the whole image transparent."""
    cap = np.percentile(t, percentile)
    if cap <= 0 and (t > 0).any():
        cap = np.percentile(t[t > 0], percentile)
    clipped = np.minimum(t, cap)
    top = float(clipped.max())
    return (clipped / top if top > 0 else np.zeros_like(clipped)).astype(np.float32)


__all__ = ["Visualization", "alpha_from_transparency"]
