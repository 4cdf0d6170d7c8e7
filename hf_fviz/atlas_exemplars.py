"""Natural exemplars in an atlas (`hf-fviz atlas --exemplars SOURCE`).

One streamed pass over the source finds the top images of every unit the run has to make
(`hf_fviz.exemplars.find_exemplars`); each optimized batch then gets its units' exemplars and
sanity check (`hf_fviz.sanity`). A unit's exemplar images (`LAYER/UNIT_exemplars/J.jpg`, and
`J_crop.jpg` around the most active position) are written atomically before its record, which
lists them (`exemplars`, as in the manifest of `visualize --exemplars`) with its `sanity`; the
merge copies both into manifest.json and draws each unit beside its exemplars in grid.png.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .exemplars import ExemplarResult, attach, find_exemplars
from .render import exemplar_entries, exemplar_folder, exemplar_image
from .sanity import check_visualizations

SHOWN = 4  # exemplars per unit in the merged grid


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


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def record_entries(out: Path, vis: Any, image_rel: str, write: Callable[[Path, bytes], None]) -> dict[str, Any]:
    """Write a unit's exemplar images through `write` (the atlas's atomic writer) and return the
    keys its record gains (`exemplars`, `sanity`); nothing for a unit without exemplars."""
    exemplars = vis.extra.get("exemplars")
    if not exemplars:
        return {}
    folder = exemplar_folder(image_rel)
    for j, ex in enumerate(exemplars):
        write(out / folder / f"{j}.jpg", _jpeg(exemplar_image(ex, crop=False)))
        if ex.box is not None:
            write(out / folder / f"{j}_crop.jpg", _jpeg(exemplar_image(ex, crop=True)))
    keys: dict[str, Any] = {"exemplars": exemplar_entries(exemplars, folder, source=vis.extra.get("exemplar_source", ""))}
    if vis.extra.get("sanity"):
        keys["sanity"] = vis.extra["sanity"]
    return keys


def exemplar_grid(out: Path, records: Sequence[dict[str, Any]], *, tile: int, layer: str) -> Image.Image:
    """One row per unit, read back from the folder: its image, then up to `SHOWN` exemplars
    (crops where there are); the unit's caption carries its sanity score."""
    cols = 1 + min(SHOWN, max(len(r.get("exemplars") or []) for r in records))
    pad, cap = 4, 14
    canvas = Image.new("RGB", (cols * (tile + pad) + 2 * pad, len(records) * (tile + cap + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for row, rec in enumerate(records):
        label = rec.get("label") or ""
        name = f"{rec['unit']}" if not label or label == f"{layer}:{rec['unit']}" else f"{rec['unit']} {label}"
        sanity = rec.get("sanity")
        tiles = [(rec["image"], name + (f" · sanity {sanity['score']:.2f}{' !' if sanity['flag'] else ''}" if sanity else ""))]
        tiles += [(ex.get("crop") or ex["image"], f"{ex['activation']:.3g}") for ex in (rec.get("exemplars") or [])[:SHOWN]]
        y = pad + row * (tile + cap + pad)
        for c, (rel, text) in enumerate(tiles):
            x = pad + c * (tile + pad) + (pad if c else 0)  # a wider gap after the visualization
            with Image.open(out / rel) as img:
                canvas.paste(img.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS), (x, y))
            while text and draw.textlength(text, font=font) > tile:
                text = text[:-1]
            draw.text((x + 2, y + tile + 1), text, fill="black", font=font)
    return canvas


def has_exemplars(records: Sequence[dict[str, Any]]) -> bool:
    return any(r.get("exemplars") for r in records)


def manifest_keys(record: Mapping[str, Any]) -> dict[str, Any]:
    """The exemplar keys a record passes on to its manifest item."""
    return {k: record[k] for k in ("exemplars", "sanity") if k in record}


__all__ = ["SHOWN", "check_batch", "exemplar_grid", "exemplar_request", "find_for_units", "has_exemplars", "manifest_keys",
           "record_entries"]
