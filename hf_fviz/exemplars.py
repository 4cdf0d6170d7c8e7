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
this module opens the source and attaches the results (`hf_fviz.output.exemplars` writes them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from .engine.exemplars import Exemplar, ExemplarResult, Progress, receptive_field, scan, unit_values
from .errors import InvalidSettings
from .hub.sources import describe, iter_source
from .settings import DEFAULT_SOURCE_IMAGES, DEFAULT_TOP, MAX_TOP


def check_options(*, top: int, max_images: int | None, batch_size: int = 1) -> None:
    """Refuse a `top` outside 1..MAX_TOP and a non-positive batch size or image cap (the CLI calls
    it before loading anything)."""
    if not 1 <= int(top) <= MAX_TOP:
        raise InvalidSettings(f"--top must be in 1..{MAX_TOP}, got {top}")
    if batch_size < 1 or (max_images is not None and max_images < 1):
        raise InvalidSettings(f"batch size and max images must be positive, got {batch_size} and {max_images}")


def find_exemplars(
    model: Any,
    *,
    layer: str,
    units: Sequence[int] | Iterable[int],
    source: str | os.PathLike[str],
    top: int = DEFAULT_TOP,
    max_images: int | None = DEFAULT_SOURCE_IMAGES,
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
    check_options(top=top, max_images=max_images, batch_size=batch_size)
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


def with_exemplars(model: Any, visualizations: Sequence[Any], source: str | os.PathLike[str], *, top: int = DEFAULT_TOP,
                   max_images: int | None = DEFAULT_SOURCE_IMAGES, split: str | None = None, image_column: str | None = None,
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


__all__ = ["Exemplar", "ExemplarResult", "attach", "check_options", "find_exemplars", "receptive_field", "unit_values",
           "with_exemplars"]
