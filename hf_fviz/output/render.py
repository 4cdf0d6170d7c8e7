"""Visualizations -> PNG, RGBA PNG, captioned grids, and the output folder of the CLI contract.

Display follows the MACO paper's code: the image is clipped at its own 1st/99th percentiles and
min-max scaled; the alpha is the transparency (sum of |dL/dx|) averaged over colour, clipped at
its 80th percentile and divided by its max (the 20 % most attributed pixels are opaque).

`save(vis, out_dir, model=...)` writes `manifest.json`, `LAYER/UNIT.png`, `LAYER/UNIT_rgba.png`
and `grid.png`; a visualization with natural exemplars (`hf_fviz.exemplars.attach`) also gets
`LAYER/UNIT_exemplars/J.jpg` (and `J_crop.jpg`), listed in its manifest item and drawn beside
it in the grid. Everything is first written to a temporary folder next to `out_dir` and then
moved into place (manifest last, `writer.staged_folder`), so an error never leaves a
half-written result. The grid is `grid.tile_grid`, the manifest a `manifest.Manifest`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from .grid import caption, columns, tile_grid
from .manifest import Item, Manifest
from .exemplars import exemplar_entries, exemplar_folder, exemplar_image, write_exemplars
from .writer import safe_name, staged_folder

if TYPE_CHECKING:  # pragma: no cover
    from ..results import Visualization


class ModelInfo(Protocol):
    """What a manifest says of the model (a `hub.VisionModel` has it)."""

    id: str
    revision: str | None
    library: str | None
    device: Any


def display_image(image: np.ndarray, percentile: float = 1.0) -> np.ndarray:
    """(H, W, 3) -> float32 in [0, 1]: clip at the `percentile` / 100-`percentile` values, min-max."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, [percentile, 100 - percentile])
    if hi - lo < 1e-8:
        return np.clip(img, 0, 1)
    return np.clip((img - lo) / (hi - lo), 0, 1)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def rgb_image(vis: Visualization) -> Image.Image:
    return Image.fromarray(to_uint8(display_image(vis.image)), "RGB")


def rgba_image(vis: Visualization) -> Image.Image:
    rgba = np.concatenate([display_image(vis.image), np.asarray(vis.alpha, dtype=np.float32)[..., None]], axis=-1)
    return Image.fromarray(to_uint8(rgba), "RGBA")


def grid(
    visualizations: Sequence[Visualization], *, cols: int | None = None, tile: int = 224, captions: bool = True, rgba: bool = False
) -> Image.Image:
    """A grid of tiles (RGB, or RGBA composited on white) with a caption under each tile; with
    exemplars, one row per visualization followed by its exemplars (crops where there are)."""
    if not visualizations:
        raise ValueError("no visualizations to put in a grid")
    if any(v.extra.get("exemplars") for v in visualizations):
        return exemplar_rows(visualizations, tile=tile, rgba=rgba)
    tiles = [_tile(vis, tile, rgba) for vis in visualizations]
    texts = [caption(v.unit, v.label, v.layer) for v in visualizations] if captions else None
    return tile_grid(tiles, cols=cols or columns(len(tiles)), tile=tile, captions=texts)


def _tile(vis: Visualization, tile: int, rgba: bool) -> Image.Image:
    if not rgba:
        return rgb_image(vis).resize((tile, tile), Image.Resampling.LANCZOS)
    im = rgba_image(vis).resize((tile, tile), Image.Resampling.LANCZOS)
    bg = Image.new("RGB", im.size, "white")
    bg.paste(im, mask=im.getchannel("A"))
    return bg


def exemplar_rows(visualizations: Sequence[Visualization], *, tile: int = 224, rgba: bool = False, shown: int = 4) -> Image.Image:
    """One row per visualization: its tile, then up to `shown` exemplars (crops where there are)
    with their activations; the caption of the row's first tile names the unit."""
    cols = 1 + min(shown, max(len(v.extra.get("exemplars") or []) for v in visualizations))
    tiles: list[Image.Image | None] = []
    texts: list[str] = []
    for vis in visualizations:
        row: list[tuple[Image.Image | None, str]] = [(_tile(vis, tile, rgba), caption(vis.unit, vis.label, vis.layer))]
        row += [(exemplar_image(ex, crop=True), f"act {ex.activation:.3g}") for ex in (vis.extra.get("exemplars") or [])[:shown]]
        row += [(None, "")] * (cols - len(row))
        tiles += [im for im, _ in row]
        texts += [text for _, text in row]
    return tile_grid(tiles, cols=cols, tile=tile, captions=texts, lead_gap=4)


def item_paths(vis: Visualization, index: int, stem: str | None = None) -> tuple[str, str]:
    """Relative paths (POSIX) of a visualization's RGB and RGBA PNGs (`stem`: the file name
    without extension, by default the unit, or `objectiveN` for an objective without one)."""
    stem = safe_name(stem if stem is not None else (str(vis.unit) if vis.unit is not None else f"objective{index}"))
    folder = safe_name(vis.layer)
    return f"{folder}/{stem}.png", f"{folder}/{stem}_rgba.png"


def manifest(
    visualizations: Sequence[Visualization],
    *,
    model: ModelInfo | None = None,
    seconds: float | None = None,
    device: str | None = None,
    stem: Any = None,
) -> Manifest:
    """The manifest of a run (DESIGN.md "Output folder"); `stem(vis, index)` names the files."""
    first = visualizations[0]
    layers = list(dict.fromkeys(v.layer for v in visualizations))
    items = []
    for i, vis in enumerate(visualizations):
        image, rgba = item_paths(vis, i, stem(vis, i) if stem is not None else None)
        exemplars = vis.extra.get("exemplars")
        items.append(Item(
            image=image, rgba=rgba, unit=vis.unit, label=vis.label, objective=round(float(vis.objective), 6),
            layer=vis.layer if len(layers) > 1 else None,
            exemplars=exemplar_entries(exemplars, exemplar_folder(image), source=vis.extra.get("exemplar_source", "")) if exemplars else None,
            sanity=vis.extra.get("sanity") or None, index=i,
        ))
    extra: dict[str, Any] = {}
    stopped = [v for v in visualizations if v.extra.get("stopped_early")]
    if stopped:  # a run cut short by max_seconds: say so, and how far it got
        extra["stopped_early"] = True
        extra["steps_done"] = min(int(v.extra.get("steps_done", first.settings.steps)) for v in stopped)
        extra["units_skipped"] = int(stopped[0].extra.get("units_skipped", 0))
    return Manifest(
        model=model.id if model is not None else first.model_id,
        revision=model.revision if model is not None else first.revision,
        library=model.library if model is not None else None,
        method=first.method,
        layer=layers[0] if len(layers) == 1 else layers,
        settings=first.settings.to_manifest(),
        items=items,
        seconds=round(float(seconds if seconds is not None else sum(v.extra.get("seconds", 0.0) for v in _unique_runs(visualizations))), 2),
        device=device or (str(model.device.type) if model is not None else None),
        extra=extra,
    )


def _unique_runs(visualizations: Sequence[Visualization]) -> list[Visualization]:
    """One visualization per optimization chunk (they share the chunk's seconds)."""
    seen: dict[Any, Visualization] = {}
    for i, v in enumerate(visualizations):
        seen.setdefault(v.extra.get("chunk", i), v)
    return list(seen.values())


def write_images(visualizations: Sequence[Visualization], data: Manifest, folder: Path) -> None:
    """Each item's RGB and RGBA PNGs (and exemplar JPEGs) under `folder`, where `data` names them."""
    for vis, item in zip(visualizations, data.items):
        assert item.image is not None and item.rgba is not None
        (folder / item.image).parent.mkdir(parents=True, exist_ok=True)
        rgb_image(vis).save(folder / item.image)
        rgba_image(vis).save(folder / item.rgba)
        if vis.extra.get("exemplars"):
            write_exemplars(vis.extra["exemplars"], folder, exemplar_folder(item.image))


def save(
    visualizations: Sequence[Visualization],
    out_dir: str | os.PathLike[str],
    *,
    model: ModelInfo | None = None,
    seconds: float | None = None,
    device: str | None = None,
    tile: int = 224,
) -> Path:
    """Write the output folder (manifest.json, PNGs, grid.png) atomically; returns the manifest path."""
    if not visualizations:
        raise ValueError("no visualizations to save")
    with staged_folder(out_dir) as tmp:
        data = manifest(visualizations, model=model, seconds=seconds, device=device)
        write_images(visualizations, data, tmp)
        grid(visualizations, tile=tile).save(tmp / "grid.png")
        data.save(tmp)
    return Path(out_dir) / "manifest.json"
