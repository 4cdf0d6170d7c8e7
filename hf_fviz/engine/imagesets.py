"""The image-set methods, from one place: dual-objective ("The Mind's Eye", Stergiou 2021) and
multifaceted feature visualization (Nguyen, Yosinski & Clune 2016). Both cluster a set of natural
images in a layer's feature space and make one image per cluster, through the one render loop of
`engine.optimize`.

    >>> import hf_fviz
    >>> model = hf_fviz.load_model("builtin:mobilenetv2")
    >>> dual = hf_fviz.dual_objective(model, layer="blocks.5", images="samples", k=4)
    >>> facets = hf_fviz.multifaceted(model, unit="tabby cat", images="photos/", k=4)

Where things live (each module has one job; none imports this one, so there is no cycle):
- `dual`: the dual objective; `facets`: multifaceted visualization.
- `cluster`: PCA and seeded k-means++. Clustering: pooled activations (conv: spatial mean;
  tokens: mean over patch tokens, prefix tokens excluded; logits: as is) -> PCA (torch SVD, at
  most 50 dims) -> k-means++ with a seed.
- `param`: the parametrizations started from images (`ImageMaco`, `ImagePixels`, `PaperPixels`).
- `imageset_common`: what both methods share (pooled features, checks, result rows).
This module re-exports the methods and keeps what serves both after a run: the output folder
(`save`). Their measured quality is `hf_fviz.bench.imagesets`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..hub.vision_model import VisionModel
from ..images import ImageSet
from .cluster import cluster, fit_pca, kmeans
from .dual import DualSettings, dual_objective
from .facets import FacetSettings, multifaceted
from .imageset_common import penultimate_layer, pooled_features
from .methods import Visualization
from .param import ImageMaco, ImagePixels, PaperPixels


MANIFEST_EXTRA = ("cluster", "facet", "members", "nearest", "init_objective", "init_distance", "distances", "top_channels")


def item_stem(vis: Visualization, index: int) -> str:
    """File stem of one item: `cluster3` for dual, `285_facet2` for facets."""
    if "facet" in vis.extra:
        return f"{vis.unit}_facet{vis.extra['facet']}"
    if "cluster" in vis.extra:
        return f"cluster{vis.extra['cluster']}"
    return str(vis.unit) if vis.unit is not None else f"objective{index}"


def save(
    visualizations: Sequence[Visualization],
    out_dir: str,
    *,
    model: VisionModel | None = None,
    images: ImageSet | None = None,
    seconds: float | None = None,
) -> Any:
    """Write the output folder of the CLI contract (manifest.json, PNGs, grid.png) with, per item,
    its `members` (the input images of its cluster) and a distinct file per cluster/facet.

    Uses `render`'s image, grid and manifest helpers; items are renamed so that several facets of
    one unit never share a file.
    """
    import json
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from .. import render

    if not visualizations:
        raise ValueError("no visualizations to save")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        data = render.manifest(visualizations, model=model, seconds=seconds)
        for i, (vis, item) in enumerate(zip(visualizations, data["items"])):
            folder = render.safe_name(vis.layer)
            stem = render.safe_name(item_stem(vis, i))
            item["image"], item["rgba"] = f"{folder}/{stem}.png", f"{folder}/{stem}_rgba.png"
            (tmp / folder).mkdir(parents=True, exist_ok=True)
            render.rgb_image(vis).save(tmp / item["image"])
            render.rgba_image(vis).save(tmp / item["rgba"])
            for key in MANIFEST_EXTRA:
                if key in vis.extra:
                    item[key] = vis.extra[key]
        render.grid(visualizations).save(tmp / "grid.png")
        if images is not None:
            data["images"] = {"source": images.source, "count": len(images)}
            if "licences" in images.info:
                data["images"]["licences"] = images.info["licences"]
        (tmp / "manifest.json").write_text(json.dumps(data, indent=1) + "\n")
        render.move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "manifest.json"


__all__ = [
    "dual_objective",
    "multifaceted",
    "DualSettings",
    "FacetSettings",
    "ImageMaco",
    "ImagePixels",
    "PaperPixels",
    "cluster",
    "kmeans",
    "fit_pca",
    "pooled_features",
    "penultimate_layer",
    "save",
]
