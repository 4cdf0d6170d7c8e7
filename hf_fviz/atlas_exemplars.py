"""Natural exemplars in an atlas (`hf-fviz atlas --exemplars SOURCE`).

One streamed pass over the source finds the top images of every unit the run has to make
(`hf_fviz.exemplars.find_exemplars`); each optimized batch then gets its units' exemplars and
sanity check (`hf_fviz.engine.sanity`). Writing them into the unit records, the manifest and grid.png
is the output layer's (`hf_fviz.output.atlas_store`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .exemplars import ExemplarResult, attach, find_exemplars
from .engine.sanity import check_visualizations


def exemplar_request(source: str, *, top: int, max_images: int | None, split: str | None,
                     image_column: str | None) -> dict[str, Any]:
    """The exemplar settings as stored in atlas.json's request (a resumed run must ask the same)."""
    out: dict[str, Any] = {"source": source, "top": top, "max_images": max_images}
    out.update({k: v for k, v in (("split", split), ("image_column", image_column)) if v is not None})
    return out


def find_for_units(model: Any, layer: str, units: Sequence[int], request: Mapping[str, Any],
                   progress: Callable[[int, int | None, Mapping[str, Any]], None] | None = None) -> ExemplarResult:
    """One pass over the source for every unit still to make."""
    return find_exemplars(model, layer=layer, units=list(units), source=request["source"], top=request["top"],
                          max_images=request["max_images"], split=request.get("split"),
                          image_column=request.get("image_column"), progress=progress)


def check_batch(model: Any, visualizations: Sequence[Any], found: ExemplarResult) -> None:
    """Give a batch of visualizations their units' exemplars and run their sanity check."""
    attach(visualizations, found)
    check_visualizations(model, visualizations)


__all__ = ["check_batch", "exemplar_request", "find_for_units"]
