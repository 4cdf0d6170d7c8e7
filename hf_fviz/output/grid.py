"""The one grid renderer and the one caption builder of the output layer.

`tile_grid` lays square tiles out in rows on white, each optionally captioned underneath; every
grid hf_fviz draws is one call of it: `render.grid` (a run's grid.png), the exemplar rows, the
atlas merge, the exemplar output and the card's grid (`build_grid`, no captions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

CAPTION_PX = 16


def caption(unit: Any, label: str | None, layer: str | None) -> str:
    """A tile's short caption: `UNIT LABEL`, or `LAYER:UNIT` when the label says nothing more."""
    if label and label != f"{layer}:{unit}":
        return label if unit is None else f"{unit} {label}"
    return f"{layer}:{unit}"


def gallery_caption(unit: Any, label: str | None, layer: str | None, objective: float | None = None) -> str:
    """An image's caption in the Space's gallery: `LABEL (UNIT) · OBJECTIVE`."""
    name = unit_name(unit, label, layer)
    text = f"{name} ({unit})" if unit is not None and str(unit) not in name else name
    return text if objective is None else f"{text} · {objective:.1f}"


def unit_name(unit: Any, label: str | None, layer: str | None) -> str:
    """The label, or `LAYER:UNIT` for a unit without one."""
    return str(label or f"{layer}:{unit}")


def card_caption(unit: Any, label: str | None, layer: str | None = None, members: int | None = None, index: int = 0) -> str:
    """An item's caption on a model card (and in its alt texts): `LAYER · unit U · LABEL · N images`."""
    parts = [layer] if layer else []
    if unit is not None:
        parts.append(f"unit {unit}")
    if label:
        parts.append(str(label))
    if members is not None:
        parts.append(f"{members} images")
    return " · ".join(parts) if parts else f"item {index}"


def columns(n: int) -> int:
    """Columns of a captioned grid of `n` tiles: a little wider than square."""
    return min(n, max(1, math.ceil(math.sqrt(n * 1.5))))


def tile_grid(
    tiles: Sequence[Image.Image | None],
    *,
    cols: int,
    tile: int,
    captions: Sequence[str] | None = None,
    gap: int = 4,
    margin: int = 2,
    lead_gap: int = 0,
) -> Image.Image:
    """Tiles (resized to `tile` px squares; None leaves a cell empty) row by row, `cols` per row,
    `gap` px between cells and `margin` px around, a caption under each tile when `captions` is
    given, and `lead_gap` extra px after the first column (a visualization before its exemplars)."""
    if not tiles:
        raise ValueError("no images to put in a grid")
    rows = math.ceil(len(tiles) / cols)
    cap_h = CAPTION_PX if captions is not None else 0
    cell_w, cell_h = tile + gap, tile + cap_h + gap
    canvas = Image.new("RGB", (2 * margin + cols * cell_w + lead_gap, 2 * margin + rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, img in enumerate(tiles):
        if img is None:
            continue
        r, c = divmod(i, cols)
        x = margin + gap // 2 + c * cell_w + (lead_gap if c else 0)
        y = margin + gap // 2 + r * cell_h
        if img.size != (tile, tile):
            img = img.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS)
        canvas.paste(img.convert("RGB"), (x, y))
        if captions is not None:
            text = captions[i]
            while text and draw.textlength(text, font=font) > tile:
                text = text[:-1]
            draw.text((x + 2, y + tile + 2), text, fill="black", font=font)
    return canvas


def build_grid(images: Sequence[Image.Image], *, cell: int | None = None, gap: int = 4, max_side: int = 2048) -> Image.Image:
    """Item images (resized to one square cell) in a near-square grid on white, no captions: the
    card's grid when the output folder has none."""
    if not images:
        raise ValueError("no images to build a grid from")
    cols = math.ceil(math.sqrt(len(images)))
    if cell is None:
        cell = min(min(min(img.size) for img in images), max(16, max_side // cols - gap))
    return tile_grid(images, cols=cols, tile=cell, gap=gap, margin=0)
