"""Sanity check per unit, after Geirhos et al. 2024 ("Don't trust your eyes: on the (un)reliability
of feature visualizations"): is the visualization processed like the natural images that excite
the unit, or does it reach the unit along a path of its own?

The activation path of an image is its pooled activations (per channel: spatial mean for conv,
mean over patch tokens for tokens) at up to `MAX_PATH_LAYERS` layers spread over the layers
before the target. Each layer's channels are standardized by the source's random images; an
image's closeness to the unit's natural exemplars is its mean cosine similarity to them, averaged
over the path's layers (`visualization` for the visualization, `random` the mean for random images
of the same source, exemplars left out; `exemplars` the exemplars among themselves).

`score` is the share of those random natural images that are *less* close to the exemplars than
the visualization: 1 when the visualization is processed more like the unit's exemplars than any
random image, about 0.5 when like a typical one. `flag` is raised below 0.5: the visualization
reaches the unit along a path that the natural images exciting it do not take, and it should not
be read as a description of what the unit responds to in natural images. The check needs a
source whose top images are meaningful for the unit; with a few dozen unrelated photos it says
little.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .transforms import resize_whole

MAX_PATH_LAYERS = 6


@dataclass
class Sanity:
    score: float
    flag: bool
    visualization: float
    random: float
    exemplars: float
    layers: list[str]
    per_layer: list[dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("score", "visualization", "random", "exemplars"):
            out[key] = round(float(out[key]), 4)
        out["per_layer"] = [{k: round(float(v), 4) for k, v in row.items()} for row in self.per_layer]
        return out


def path_layers(model: Any, layer: str, max_layers: int = MAX_PATH_LAYERS) -> list[str]:
    """Up to `max_layers` conv/token layers before `layer`, evenly spread, the last one included."""
    names = [lay.name for lay in model.layers()]
    model.layer(layer)  # UnknownLayer with suggestions
    before = [lay.name for lay in model.layers()[: names.index(layer)] if lay.kind in ("conv", "tokens")]
    if len(before) <= max_layers:
        return before
    picks = np.linspace(len(before) - 1, 0, max_layers).round().astype(int)[::-1]
    return [before[i] for i in dict.fromkeys(picks.tolist())]


def pooled_path(model: Any, x01: torch.Tensor, layers: Sequence[str]) -> list[torch.Tensor]:
    """(N, C_l) pooled activations of images in [0, 1] at the model input size, per layer."""
    info = {lay.name: lay for lay in model.layers()}
    x = model.normalize(x01.to(model.device))
    out = []
    with torch.no_grad():
        for name in layers:
            act = model.activations(x, name).float()
            out.append(act.mean(dim=(-2, -1)) if info[name].kind == "conv" else act[:, info[name].prefix_tokens:].mean(dim=1))
    return [a.cpu() for a in out]


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def _mean_cos_others(a: torch.Tensor) -> float:
    """Mean cosine similarity between distinct rows."""
    sims, n = _cos(a, a), a.shape[0]
    return float((sims.sum() - sims.diagonal().sum()) / max(n * n - n, 1))


def image_tensor(image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """A visualization's image (H, W, 3) in [0, 1] -> (1, 3, h, w) at the model input, as scored."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    return resize_whole(x, size)


def sanity_check(model: Any, image: np.ndarray, layer: str, exemplars: Sequence[Any], random: Sequence[Any],
                 *, random_path: list[torch.Tensor] | None = None, layers: Sequence[str] | None = None) -> Sanity:
    """The check of one visualization (`image` (H, W, 3) in [0, 1]) against its unit's exemplars
    and random images of the same source (`Exemplar`s); see the module docstring.
    `random_path`/`layers` let several units share the random images' forward passes."""
    layers = list(layers) if layers is not None else path_layers(model, layer)
    if not layers:
        raise ValueError(f"layer '{layer}' has no conv or token layers before it: nothing to compare")
    ex_index = {e.index for e in exemplars}
    others = [r for r in random if r.index not in ex_index]
    if len(exemplars) < 2 or len(others) < 2:
        raise ValueError("the sanity check needs at least 2 exemplars and 2 random images outside them")
    size = tuple(model.input_size)
    if random_path is None:
        random_path = pooled_path(model, torch.stack([r.pixels for r in random]).float() / 255, layers)
    keep = torch.tensor([r.index not in ex_index for r in random])
    ex_x = torch.stack([e.pixels for e in exemplars]).float() / 255
    path = pooled_path(model, torch.cat([image_tensor(image, size), ex_x]), layers)
    rows, per_random = [], []
    for feats, rand in zip(path, random_path):
        mu, sd = rand.mean(dim=0), rand.std(dim=0) + 1e-6
        z, zr = (feats - mu) / sd, (rand[keep] - mu) / sd
        zv, ze = z[:1], z[1:]
        per_random.append(_cos(zr, ze).mean(dim=1))
        rows.append({"visualization": float(_cos(zv, ze).mean()), "random": float(per_random[-1].mean()),
                     "exemplars": _mean_cos_others(ze)})
    vis_sim, rand_sim, ex_sim = (float(np.mean([r[k] for r in rows])) for k in ("visualization", "random", "exemplars"))
    closeness = torch.stack(per_random).mean(dim=0)  # each random image's closeness, averaged over layers
    score = float((closeness < vis_sim).float().mean())
    return Sanity(score, score < 0.5, vis_sim, rand_sim, ex_sim, layers, rows)


def check_visualizations(model: Any, visualizations: Sequence[Any]) -> list[Sanity | None]:
    """Run `sanity_check` on every visualization that has exemplars (`hf_fviz.exemplars.attach`);
    the result also goes to `vis.extra['sanity']` (a dict, for the manifest and the card)."""
    out: list[Sanity | None] = []
    shared: dict[tuple[str, int], tuple[list[str], list[torch.Tensor]]] = {}
    for vis in visualizations:
        exemplars, random = vis.extra.get("exemplars"), vis.extra.get("random_images")
        if not exemplars or not random:
            out.append(None)
            continue
        key = (vis.layer, id(random))
        if key not in shared:
            layers = path_layers(model, vis.layer)
            shared[key] = (layers, pooled_path(model, torch.stack([r.pixels for r in random]).float() / 255, layers) if layers else [])
        layers, random_path = shared[key]
        if not layers:
            out.append(None)
            continue
        result = sanity_check(model, vis.image, vis.layer, exemplars, random, random_path=random_path, layers=layers)
        vis.extra["sanity"] = result.to_dict()
        out.append(result)
    return out


__all__ = ["MAX_PATH_LAYERS", "Sanity", "check_visualizations", "path_layers", "pooled_path", "sanity_check"]
