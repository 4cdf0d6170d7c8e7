"""Visualizations -> PNG, RGBA PNG, captioned grids, and the output folder of the CLI contract.

Display follows the MACO paper's code: the image is clipped at its own 1st/99th percentiles and
min-max scaled; the alpha is the transparency (sum of |dL/dx|) averaged over colour, clipped at
its 80th percentile and divided by its max (the 20 % most attributed pixels are opaque).

`save(vis, out_dir, model=...)` writes `manifest.json`, `LAYER/UNIT.png`, `LAYER/UNIT_rgba.png`
and `grid.png`; a visualization with natural exemplars (`hf_fviz.exemplars.attach`) also gets
`LAYER/UNIT_exemplars/J.jpg` (and `J_crop.jpg`), listed in its manifest item and drawn beside
it in the grid. Everything is first written to a temporary folder next to `out_dir` and then
moved into place (manifest last), so an error never leaves a half-written result.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:  # pragma: no cover
    from .results import Visualization
    from .hub.vision_model import VisionModel


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


def caption(vis: Visualization) -> str:
    unit = "" if vis.unit is None else f"{vis.unit} "
    text = f"{unit}{vis.label}" if vis.label and vis.label != f"{vis.layer}:{vis.unit}" else f"{vis.layer}:{vis.unit}"
    return text


def grid(
    visualizations: Sequence[Visualization], *, cols: int | None = None, tile: int = 224, captions: bool = True, rgba: bool = False
) -> Image.Image:
    """A grid of tiles (RGB, or RGBA composited on white) with a caption under each tile; with
    exemplars, one row per visualization followed by its exemplars (crops where there are)."""
    if not visualizations:
        raise ValueError("no visualizations to put in a grid")
    if any(v.extra.get("exemplars") for v in visualizations):
        return exemplar_rows(visualizations, tile=tile, rgba=rgba)
    n = len(visualizations)
    cols = cols or min(n, max(1, math.ceil(math.sqrt(n * 1.5))))
    rows = math.ceil(n / cols)
    font = ImageFont.load_default()
    cap_h = 16 if captions else 0
    pad = 4
    canvas = Image.new("RGB", (cols * (tile + pad) + pad, rows * (tile + cap_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, vis in enumerate(visualizations):
        r, c = divmod(i, cols)
        x, y = pad + c * (tile + pad), pad + r * (tile + cap_h + pad)
        canvas.paste(_tile(vis, tile, rgba), (x, y))
        if captions:
            text = caption(vis)
            while text and draw.textlength(text, font=font) > tile:
                text = text[:-1]
            draw.text((x + 2, y + tile + 2), text, fill="black", font=font)
    return canvas


def _tile(vis: Visualization, tile: int, rgba: bool) -> Image.Image:
    if not rgba:
        return rgb_image(vis).resize((tile, tile), Image.Resampling.LANCZOS)
    im = rgba_image(vis).resize((tile, tile), Image.Resampling.LANCZOS)
    bg = Image.new("RGB", im.size, "white")
    bg.paste(im, mask=im.getchannel("A"))
    return bg


def exemplar_image(ex: Any, *, crop: bool) -> Image.Image:
    """An exemplar's stored image (or its crop around the most active position) as PIL RGB."""
    px = ex.crop() if crop and ex.box is not None else ex.pixels
    return Image.fromarray(px.permute(1, 2, 0).contiguous().numpy(), "RGB")


def exemplar_rows(visualizations: Sequence[Visualization], *, tile: int = 224, rgba: bool = False, shown: int = 4) -> Image.Image:
    """One row per visualization: its tile, then up to `shown` exemplars (crops where there are)
    with their activations; the caption of the row's first tile names the unit."""
    font = ImageFont.load_default()
    cap_h, pad = 16, 4
    cols = 1 + min(shown, max(len(v.extra.get("exemplars") or []) for v in visualizations))
    canvas = Image.new("RGB", (cols * (tile + pad) + pad + pad, len(visualizations) * (tile + cap_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for r, vis in enumerate(visualizations):
        y = pad + r * (tile + cap_h + pad)
        tiles = [(_tile(vis, tile, rgba), caption(vis))]
        for ex in (vis.extra.get("exemplars") or [])[:shown]:
            tiles.append((exemplar_image(ex, crop=True).resize((tile, tile), Image.Resampling.LANCZOS), f"act {ex.activation:.3g}"))
        for c, (im, text) in enumerate(tiles):
            x = pad + c * (tile + pad) + (pad if c else 0)  # a wider gap after the visualization
            canvas.paste(im, (x, y))
            while text and draw.textlength(text, font=font) > tile:
                text = text[:-1]
            draw.text((x + 2, y + tile + 2), text, fill="black", font=font)
    return canvas


def exemplar_entries(exemplars: Sequence[Any], folder: str, *, source: str) -> list[dict[str, Any]]:
    """Manifest entries of a unit's exemplars (files under `folder`, written by `write_exemplars`)."""
    out = []
    for j, ex in enumerate(exemplars):
        entry = {"source": source, "index": ex.index, "name": ex.name, "activation": round(float(ex.activation), 6),
                 "image": f"{folder}/{j}.jpg"}
        if ex.box is not None:
            entry.update(crop=f"{folder}/{j}_crop.jpg", box=list(ex.box))
        out.append(entry)
    return out


def write_exemplars(exemplars: Sequence[Any], root: Path, folder: str) -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    for j, ex in enumerate(exemplars):
        exemplar_image(ex, crop=False).save(root / folder / f"{j}.jpg", quality=90)
        if ex.box is not None:
            exemplar_image(ex, crop=True).save(root / folder / f"{j}_crop.jpg", quality=90)


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def safe_name(name: str) -> str:
    """A file/folder name that cannot escape its parent (no separators, no '.', '..', no leading dot)."""
    cleaned = _UNSAFE.sub("_", name) or "_"
    if cleaned.startswith("."):
        cleaned = "_" + cleaned
    return cleaned


def item_paths(vis: Visualization, index: int) -> tuple[str, str]:
    """Relative paths (POSIX) of a visualization's RGB and RGBA PNGs."""
    stem = str(vis.unit) if vis.unit is not None else f"objective{index}"
    folder = safe_name(vis.layer)
    return f"{folder}/{stem}.png", f"{folder}/{stem}_rgba.png"


def exemplar_folder(image_path: str) -> str:
    """`LAYER/UNIT.png` -> `LAYER/UNIT_exemplars`."""
    return image_path.rsplit(".", 1)[0] + "_exemplars"


def manifest(
    visualizations: Sequence[Visualization],
    *,
    model: VisionModel | None = None,
    seconds: float | None = None,
    device: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest.json contract of DESIGN.md."""
    from . import __version__

    first = visualizations[0]
    layers = list(dict.fromkeys(v.layer for v in visualizations))
    items = []
    for i, vis in enumerate(visualizations):
        image, rgba = item_paths(vis, i)
        item = {"unit": vis.unit, "label": vis.label, "image": image, "rgba": rgba, "objective": round(float(vis.objective), 6)}
        if len(layers) > 1:
            item["layer"] = vis.layer
        if vis.extra.get("exemplars"):
            item["exemplars"] = exemplar_entries(vis.extra["exemplars"], exemplar_folder(image),
                                                 source=vis.extra.get("exemplar_source", ""))
        if vis.extra.get("sanity"):
            item["sanity"] = vis.extra["sanity"]
        items.append(item)
    out: dict[str, Any] = {
        "hf_fviz_version": __version__,
        "model": model.id if model is not None else first.model_id,
        "revision": model.revision if model is not None else first.revision,
        "library": model.library if model is not None else None,
        "method": first.method,
        "layer": layers[0] if len(layers) == 1 else layers,
        "settings": first.settings.to_manifest(),
        "items": items,
        "seconds": round(float(seconds if seconds is not None else sum(v.extra.get("seconds", 0.0) for v in _unique_runs(visualizations))), 2),
        "device": device or (str(model.device.type) if model is not None else None),
    }
    stopped = [v for v in visualizations if v.extra.get("stopped_early")]
    if stopped:  # a run cut short by max_seconds: say so, and how far it got
        out["stopped_early"] = True
        out["steps_done"] = min(int(v.extra.get("steps_done", first.settings.steps)) for v in stopped)
        out["units_skipped"] = int(stopped[0].extra.get("units_skipped", 0))
    if extra:
        out.update(extra)
    return out


def _unique_runs(visualizations: Sequence[Visualization]) -> list[Visualization]:
    """One visualization per optimization chunk (they share the chunk's seconds)."""
    seen: dict[Any, Visualization] = {}
    for i, v in enumerate(visualizations):
        seen.setdefault(v.extra.get("chunk", i), v)
    return list(seen.values())


def check_out_dir(out: str | os.PathLike[str]) -> Path:
    """Refuse an output path that cannot become a folder (an existing file, or under one), before
    any work is done; raises `InvalidSettings`."""
    from .errors import InvalidSettings

    path = Path(out)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise InvalidSettings(f"output folder {path}: {p} exists and is not a folder; give another --out")
            break
    return path


def move_into_place(tmp: Path, out: Path) -> None:
    """Move a finished temporary output folder to `out`: in one rename when `out` is new, else
    file by file with manifest.json last, so a reader never sees a manifest before its images."""
    if not out.exists():
        os.replace(tmp, out)
        return
    files = sorted((p for p in tmp.rglob("*") if p.is_file()), key=lambda p: p.name == "manifest.json")
    for f in files:
        dst = out / f.relative_to(tmp)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, dst)


def save(
    visualizations: Sequence[Visualization],
    out_dir: str | os.PathLike[str],
    *,
    model: VisionModel | None = None,
    seconds: float | None = None,
    device: str | None = None,
    tile: int = 224,
) -> Path:
    """Write the output folder (manifest.json, PNGs, grid.png) atomically; returns the manifest path."""
    if not visualizations:
        raise ValueError("no visualizations to save")
    out = Path(out_dir)
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for i, vis in enumerate(visualizations):
            image, rgba = item_paths(vis, i)
            (tmp / image).parent.mkdir(parents=True, exist_ok=True)
            rgb_image(vis).save(tmp / image)
            rgba_image(vis).save(tmp / rgba)
            if vis.extra.get("exemplars"):
                write_exemplars(vis.extra["exemplars"], tmp, exemplar_folder(image))
        grid(visualizations, tile=tile).save(tmp / "grid.png")
        data = manifest(visualizations, model=model, seconds=seconds, device=device)
        (tmp / "manifest.json").write_text(json.dumps(data, indent=1) + "\n")
        move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "manifest.json"
