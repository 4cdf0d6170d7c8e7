"""The output folder of the image-set methods (dual objective, multifaceted): the manifest
contract of `render.save` with, per item, its cluster's `members` and the method's figures, and
one file per cluster/facet (several facets of one unit never share a file)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .render import ModelInfo, grid, manifest, write_images
from .writer import staged_folder

if TYPE_CHECKING:  # pragma: no cover
    from ..results import Visualization

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
    out_dir: str | os.PathLike[str],
    *,
    model: ModelInfo | None = None,
    images: Any = None,
    seconds: float | None = None,
) -> Path:
    """Write the folder (manifest.json, PNGs, grid.png) atomically; `images`: the `ImageSet` that
    was clustered (its source, count and licences go in the manifest). Returns the manifest path."""
    if not visualizations:
        raise ValueError("no visualizations to save")
    with staged_folder(out_dir) as tmp:
        data = manifest(visualizations, model=model, seconds=seconds, stem=item_stem)
        for vis, item in zip(visualizations, data.items):
            item.extra.update({key: vis.extra[key] for key in MANIFEST_EXTRA if key in vis.extra})
        write_images(visualizations, data, tmp)
        grid(visualizations).save(tmp / "grid.png")
        if images is not None:
            data.extra["images"] = {"source": images.source, "count": len(images)}
            if "licences" in images.info:
                data.extra["images"]["licences"] = images.info["licences"]
        data.save(tmp)
    return Path(out_dir) / "manifest.json"
