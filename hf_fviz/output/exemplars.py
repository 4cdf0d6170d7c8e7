"""Natural exemplars on disk: their JPEGs beside a unit's images, their manifest entries, and
the output folder of `hf-fviz exemplars` (one row of exemplars per unit)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from .grid import tile_grid
from .manifest import Item, Manifest
from .writer import MANIFEST, jpeg_bytes, safe_name, staged_folder


def exemplar_image(ex: Any, *, crop: bool) -> Image.Image:
    """An exemplar's stored image (or its crop around the most active position) as PIL RGB."""
    px = ex.crop() if crop and ex.box is not None else ex.pixels
    return Image.fromarray(px.permute(1, 2, 0).contiguous().numpy(), "RGB")


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


def exemplar_files(exemplars: Sequence[Any], folder: str) -> Iterator[tuple[str, Image.Image]]:
    """(path, image) of each file of a unit's exemplars, as `exemplar_entries` names them."""
    for j, ex in enumerate(exemplars):
        yield f"{folder}/{j}.jpg", exemplar_image(ex, crop=False)
        if ex.box is not None:
            yield f"{folder}/{j}_crop.jpg", exemplar_image(ex, crop=True)


def write_exemplars(exemplars: Sequence[Any], root: Path, folder: str) -> None:
    """The JPEGs of a unit's exemplars under `root/folder` (a staged folder: plain writes)."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    for path, img in exemplar_files(exemplars, folder):
        (root / path).write_bytes(jpeg_bytes(img))


def exemplar_folder(image_path: str) -> str:
    """`LAYER/UNIT.png` -> `LAYER/UNIT_exemplars`."""
    return image_path.rsplit(".", 1)[0] + "_exemplars"


def save_exemplars(found: Any, out_dir: str | os.PathLike[str], *, model: Any, tile: int = 160) -> str:
    """Write `hf-fviz exemplars` output atomically: manifest.json (one item per unit, exemplars
    best first), LAYER/UNIT_exemplars/J.jpg (+ J_crop.jpg) and grid.png (one row per unit).
    `found`: an `hf_fviz.exemplars.ExemplarResult`; `model`: its VisionModel (id, labels)."""
    with staged_folder(out_dir) as tmp:
        items, tiles, texts = [], [], []
        cols = max(len(e) for e in found.top.values())
        for unit, exemplars in found.top.items():
            folder = f"{safe_name(found.layer)}/{unit}_exemplars"
            write_exemplars(exemplars, tmp, folder)
            label = model.label(unit, found.layer)
            items.append(Item(unit=unit, label=label, exemplars=exemplar_entries(exemplars, folder, source=found.source)))
            row = [exemplar_image(ex, crop=True) for ex in exemplars]
            tiles += row + [None] * (cols - len(row))
            texts += [f"{label} · {ex.activation:.3g}" if c == 0 else f"{ex.activation:.3g}" for c, ex in enumerate(exemplars)]
            texts += [""] * (cols - len(row))
        tile_grid(tiles, cols=cols, tile=tile, captions=texts).save(tmp / "grid.png")
        Manifest(model=model.id, revision=model.revision, library=model.library, method=None, layer=found.layer,
                 settings=found.settings, items=items, seconds=round(found.seconds, 2), device=str(model.device),
                 extra={"kind": "exemplars", "source": found.source, "images_seen": found.images_seen}).save(tmp)
    return str(Path(out_dir) / MANIFEST)
