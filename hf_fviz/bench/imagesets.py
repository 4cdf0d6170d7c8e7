"""`hf-fviz bench quality`'s figures for the image-set methods (facet distinctness, dual-objective
cluster matching), measured through the public API. A benchmark: it may import anything."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.imageset_common import penultimate_layer, pooled_features
from ..hub import as_vision_model
from ..hub.images import ImagesSpec, load_images
from ..hub.vision_model import VisionModel
from ..settings import RECIPES


@dataclass
class ImagesetQuality:
    """`hf-fviz bench quality` figures for the image-set methods.

    facets: per class and method, the mean pairwise cosine distance between the k images in the
    judge's penultimate feature space (higher = more distinct), for facets (MACO and pixel starts)
    and for k plain MACO runs with different seeds. dual: per recipe, the nearest-cluster accuracy
    (the image's nearest cluster target, Euclidean in the layer's standardized pooled space, is its
    own), the mean distance to its own target and from its start image.
    """

    facets: list[dict[str, Any]] = field(default_factory=list)
    dual: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        lines = ["facet distinctness (mean pairwise cosine distance, judge features; higher = more distinct)"]
        lines.append(f"  {'class':<22} {'method':<16} {'distance':>9} {'objective':>10}")
        for r in self.facets:
            lines.append(f"  {r['class']:<22} {r['method']:<16} {r['distance']:>9.4f} {r['objective']:>10.2f}")
        lines.append("dual-objective (nearest-cluster accuracy in the layer's pooled space; chance = 1/k)")
        lines.append(f"  {'recipe':<8} {'layer':<10} {'k':>3} {'accuracy':>9} {'own dist':>9} {'start dist':>10} {'seconds':>8}")
        for r in self.dual:
            lines.append(
                f"  {r['recipe']:<8} {r['layer']:<10} {r['k']:>3} {r['accuracy']:>9.3f} {r['own_distance']:>9.2f} "
                f"{r['start_distance']:>10.2f} {r['seconds']:>8.1f}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"facets": self.facets, "dual": self.dual, "settings": self.settings}


def _judge_distance(judge: VisionModel, images: Sequence[np.ndarray]) -> float:
    """Mean pairwise cosine distance of images (H, W, 3) in the judge's penultimate pooled space."""
    x = torch.stack([torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1) for im in images]).float()
    x = F.interpolate(x, size=judge.input_size, mode="bilinear", align_corners=False, antialias=True)
    f = F.normalize(pooled_features(judge, x, penultimate_layer(judge).name).double(), dim=1)
    sim = f @ f.T
    n = f.shape[0]
    return float((1 - sim)[~torch.eye(n, dtype=torch.bool)].mean())


def quality_imagesets(
    *,
    model: VisionModel | str = "builtin:mobilenetv2",
    judge: VisionModel | str = "builtin:efficientnet-lite0",
    images: ImagesSpec = "samples",
    classes: Sequence[str] = ("tabby cat", "espresso"),
    k: int = 3,
    dual_layer: str = "blocks.5",
    dual_k: int = 3,
    steps: int = 64,
    size: int = 160,
    crops: int = 2,
    device: str | torch.device | None = "cpu",
    log: Callable[[str], None] | None = print,
) -> ImagesetQuality:
    """Measure facet distinctness (vs plain MACO seeds) and dual-objective cluster matching (MACO
    vs the paper recipe); prints the table through `log` and returns the figures. The judge
    (default EfficientNet-Lite0) is never used in the optimizations."""
    from ..api import dual_objective, multifaceted, visualize

    gen = as_vision_model(model, device=device)
    jdg = as_vision_model(judge, device=device)
    imgs = load_images(images, model=gen)
    report = ImagesetQuality(settings={"model": gen.id, "judge": jdg.id, "images": imgs.source, "k": k, "steps": steps,
                                       "size": size, "crops": crops, "classes": list(classes), "dual_layer": dual_layer})
    for name in classes:
        runs = {
            "facets (maco)": multifaceted(gen, unit=name, images=imgs, k=k, steps=steps, size=size, crops=crops, param="maco"),
            "facets (pixel)": multifaceted(gen, unit=name, images=imgs, k=k, steps=steps, size=size, crops=crops, param="pixel"),
            "maco seeds": [
                visualize(gen, classes=[name], steps=steps, size=size, crops=crops, seed=s)[0] for s in range(k)
            ],
        }
        for method, vis in runs.items():
            row = {"class": name, "method": method, "distance": _judge_distance(jdg, [v.image for v in vis]),
                   "objective": float(np.mean([v.objective for v in vis]))}
            report.facets.append(row)
            if log:
                log(f"facets {name} {method}: distance {row['distance']:.4f}, objective {row['objective']:.2f}")
    for recipe in RECIPES:
        t0 = time.perf_counter()
        vis = dual_objective(gen, layer=dual_layer, images=imgs, k=dual_k, steps=steps, size=size, crops=crops, recipe=recipe)
        own = [v.extra["distances"][v.extra["cluster"]] for v in vis]
        row = {
            "recipe": recipe, "layer": dual_layer, "k": dual_k,
            "accuracy": float(np.mean([int(np.argmin(v.extra["distances"])) == v.extra["cluster"] for v in vis])),
            "own_distance": float(np.mean(own)),
            "start_distance": float(np.mean([v.extra["init_distance"] for v in vis])),
            "seconds": time.perf_counter() - t0,
        }
        report.dual.append(row)
        if log:
            log(f"dual {recipe}: accuracy {row['accuracy']:.3f}, own distance {row['own_distance']:.2f}")
    if log:
        log(report.table())
    return report


__all__ = ["quality_imagesets", "ImagesetQuality"]
