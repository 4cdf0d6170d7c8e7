"""Natural exemplars in an atlas folder (`hf-fviz atlas --exemplars SOURCE`): a unit's exemplar
images (`LAYER/UNIT_exemplars/J.jpg`, and `J_crop.jpg` around the most active position) are
written atomically before its record, which lists them (`exemplars`, as in the manifest of
`visualize --exemplars`) with its `sanity`; the merge copies both into manifest.json and draws
each unit beside its exemplars in grid.png."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from .exemplars import exemplar_entries, exemplar_folder, exemplar_image
from .grid import caption, tile_grid
from .writer import atomic_write

SHOWN = 4  # exemplars per unit in the merged grid


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def record_entries(out: Path, vis: Any, image_rel: str) -> dict[str, Any]:
    """Write a unit's exemplar images atomically and return the keys its record gains
    (`exemplars`, `sanity`); nothing for a unit without exemplars."""
    exemplars = vis.extra.get("exemplars")
    if not exemplars:
        return {}
    folder = exemplar_folder(image_rel)
    for j, ex in enumerate(exemplars):
        atomic_write(out / folder / f"{j}.jpg", _jpeg(exemplar_image(ex, crop=False)))
        if ex.box is not None:
            atomic_write(out / folder / f"{j}_crop.jpg", _jpeg(exemplar_image(ex, crop=True)))
    keys: dict[str, Any] = {"exemplars": exemplar_entries(exemplars, folder, source=vis.extra.get("exemplar_source", ""))}
    if vis.extra.get("sanity"):
        keys["sanity"] = vis.extra["sanity"]
    return keys


def has_exemplars(records: Sequence[dict[str, Any]]) -> bool:
    return any(r.get("exemplars") for r in records)


def exemplar_grid(out: Path, records: Sequence[dict[str, Any]], *, tile: int, layer: str) -> Image.Image:
    """One row per unit, read back from the folder: its image, then up to `SHOWN` exemplars
    (crops where there are); the unit's caption carries its sanity score."""
    cols = 1 + min(SHOWN, max(len(r.get("exemplars") or []) for r in records))
    tiles: list[Image.Image | None] = []
    texts: list[str] = []
    for rec in records:
        sanity = rec.get("sanity")
        row = [(rec["image"], caption(rec["unit"], rec.get("label"), layer)
                + (f" · sanity {sanity['score']:.2f}{' !' if sanity['flag'] else ''}" if sanity else ""))]
        row += [(ex.get("crop") or ex["image"], f"{ex['activation']:.3g}") for ex in (rec.get("exemplars") or [])[:SHOWN]]
        for rel, text in row:
            with Image.open(out / rel) as img:
                tiles.append(img.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS))
            texts.append(text)
        tiles += [None] * (cols - len(row))
        texts += [""] * (cols - len(row))
    return tile_grid(tiles, cols=cols, tile=tile, captions=texts, lead_gap=4)


__all__ = ["SHOWN", "exemplar_grid", "has_exemplars", "record_entries"]
