"""Natural exemplars: the images of a source that excite each unit most, shown beside its visualization.

    >>> from hf_fviz.exemplars import find_exemplars
    >>> found = find_exemplars(model, layer="blocks.5", units=range(16), source="org/pets", top=8)
    >>> found.top[3][0].activation, found.top[3][0].name, found.top[3][0].box

The images are streamed through the model once, in batches, each forward pass stopping at the
layer (`VisionModel.activations`). Per unit the activation is the channel objective's reduction
(spatial mean for conv, mean over patch tokens for tokens, the logit itself), so an exemplar's
activation is the very number the visualization maximizes. A running top-k per unit keeps only
the winners' pixels. For conv and token layers each exemplar also gets the box around its most
active position (`box`, pixels of the stored image): twice the core of the layer's effective
receptive field there (`receptive_field`), at most 3/4 of the image. A few images drawn uniformly from the stream (`random`) are
kept for the sanity check (`hf_fviz.engine.sanity`). The computation is `engine.exemplars.scan`;
this module opens the source, attaches the results and writes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from .engine.exemplars import Exemplar, ExemplarResult, Progress, receptive_field, scan, unit_values
from .errors import InvalidSettings
from .hub.sources import describe, iter_source
from .settings import MAX_TOP


def find_exemplars(
    model: Any,
    *,
    layer: str,
    units: Sequence[int] | Iterable[int],
    source: str | os.PathLike[str],
    top: int = 8,
    max_images: int | None = 2000,
    batch_size: int = 64,
    split: str | None = None,
    image_column: str | None = None,
    random_images: int = 16,
    seed: int = 0,
    progress: Progress | None = None,
) -> ExemplarResult:
    """The `top` images of `source` with the highest activation of each unit of `layer`
    (ties: the earlier image first), plus `random_images` uniformly drawn images; see the module
    docstring. `max_images` caps the images read (None: all)."""
    info = model.layer(layer)
    picked = model.check_units(info, [int(u) for u in units])
    if not picked:
        raise InvalidSettings("no units given")
    if not 1 <= int(top) <= MAX_TOP:
        raise InvalidSettings(f"--top must be in 1..{MAX_TOP}, got {top}")
    if batch_size < 1 or (max_images is not None and max_images < 1):
        raise InvalidSettings("batch size and max images must be positive")
    found = scan(model, info, picked, iter_source(source, size=tuple(model.input_size), batch_size=batch_size,
                                              max_images=max_images, split=split, image_column=image_column),
                 source=describe(source, split), top=int(top), random_images=random_images, seed=seed, expected=max_images,
                 progress=progress,
                 settings={"max_images": max_images, "batch_size": batch_size, **({"split": split} if split else {}),
                           **({"image_column": image_column} if image_column else {})})
    return found


def attach(visualizations: Sequence[Any], found: ExemplarResult) -> None:
    """Give each visualization of `found.layer` its unit's exemplars (`extra['exemplars']`) and
    the source's random images (`extra['random_images']`, for the sanity check)."""
    for vis in visualizations:
        if vis.layer == found.layer and vis.unit in found.top:
            vis.extra["exemplars"] = found.top[vis.unit]
            vis.extra["exemplar_source"] = found.source
            vis.extra["random_images"] = found.random


def save_exemplars(found: ExemplarResult, out_dir: str | os.PathLike[str], *, model: Any, tile: int = 160) -> str:
    """Write `hf-fviz exemplars` output atomically: manifest.json (one item per unit, exemplars
    best first), LAYER/UNIT_exemplars/J.jpg (+ J_crop.jpg) and grid.png (one row per unit)."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from PIL import Image, ImageDraw, ImageFont

    from . import __version__
    from .render import check_out_dir, exemplar_entries, exemplar_image, move_into_place, safe_name, write_exemplars

    out = check_out_dir(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        items = []
        for unit, exemplars in found.top.items():
            folder = f"{safe_name(found.layer)}/{unit}_exemplars"
            write_exemplars(exemplars, tmp, folder)
            items.append({"unit": unit, "label": model.label(unit, found.layer),
                          "exemplars": exemplar_entries(exemplars, folder, source=found.source)})
        cols = max(len(e) for e in found.top.values())
        font, pad, cap = ImageFont.load_default(), 4, 16
        grid = Image.new("RGB", (cols * (tile + pad) + pad, len(found.top) * (tile + cap + pad) + pad), "white")
        draw = ImageDraw.Draw(grid)
        for r, (unit, exemplars) in enumerate(found.top.items()):
            y = pad + r * (tile + cap + pad)
            for c, ex in enumerate(exemplars):
                x = pad + c * (tile + pad)
                grid.paste(exemplar_image(ex, crop=True).resize((tile, tile), Image.Resampling.LANCZOS), (x, y))
                text = f"{model.label(unit, found.layer)} · {ex.activation:.3g}" if c == 0 else f"{ex.activation:.3g}"
                draw.text((x + 2, y + tile + 2), text[:40], fill="black", font=font)
        grid.save(tmp / "grid.png")
        data = {"hf_fviz_version": __version__, "kind": "exemplars", "model": model.id, "revision": model.revision,
                "library": model.library, "layer": found.layer, "source": found.source, "images_seen": found.images_seen,
                "settings": found.settings, "items": items, "seconds": round(found.seconds, 2)}
        (tmp / "manifest.json").write_text(json.dumps(data, indent=1) + "\n")
        move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out / "manifest.json")




def with_exemplars(model: Any, visualizations: Sequence[Any], source: str | os.PathLike[str], *, top: int = 8,
                   max_images: int | None = 2000, split: str | None = None, image_column: str | None = None,
                   batch_size: int = 64, progress: Progress | None = None) -> ExemplarResult | None:
    """Find the exemplars of the visualized units (one pass over `source` per layer), attach them
    and run the sanity check (`hf_fviz.engine.sanity`): each visualization then carries
    `extra['exemplars']` and `extra['sanity']`, which `render.save`, the card and the Space show.
    Returns the last layer's `ExemplarResult` (None when no visualization is of a unit)."""
    from .engine.sanity import check_visualizations

    found = None
    for layer in dict.fromkeys(v.layer for v in visualizations if v.unit is not None):
        units = list(dict.fromkeys(v.unit for v in visualizations if v.layer == layer and v.unit is not None))
        found = find_exemplars(model, layer=layer, units=units, source=source, top=top, max_images=max_images, split=split,
                               image_column=image_column, batch_size=batch_size, progress=progress)
        attach(visualizations, found)
    check_visualizations(model, visualizations)
    return found


__all__ = ["Exemplar", "ExemplarResult", "attach", "find_exemplars", "receptive_field", "save_exemplars", "unit_values",
           "with_exemplars"]
