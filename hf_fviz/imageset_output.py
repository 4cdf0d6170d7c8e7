"""The output folder of the image-set methods (dual, facets): the CLI contract's manifest.json,
PNGs and grid.png, with each item's cluster members and a distinct file per cluster/facet.
Moved out of the engine (which writes no files); the OUTPUT layer takes it over."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import render
from .results import Visualization

if TYPE_CHECKING:  # pragma: no cover
    from .hub.images import ImageSet
    from .hub.vision_model import VisionModel

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


__all__ = ["save", "item_stem", "MANIFEST_EXTRA"]
