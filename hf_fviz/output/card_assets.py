"""The images a model card gets: the folder's grid (or one built from its items) and a few
per-unit images, made small (the card's repo keeps every version forever)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import PublishError
from .grid import build_grid, tile_grid
from .manifest import Item, Manifest
from .writer import png_bytes, safe_name

ASSET_DIR = "feature_visualizations"
MAX_GRID_BYTES = 1_000_000
MAX_IMAGE_PX = 512
MAX_UNITS = 32


@dataclass(frozen=True)
class AssetLimits:
    """How big the published images may get (the card's repo keeps every version forever)."""

    max_grid_bytes: int = MAX_GRID_BYTES
    max_image_px: int = MAX_IMAGE_PX
    max_units: int = MAX_UNITS


@dataclass(frozen=True)
class Asset:
    """One file to add to the model repo."""

    path_in_repo: str
    data: bytes = field(repr=False)
    caption: str = ""


@dataclass(frozen=True)
class Assets:
    grid: Asset
    items: tuple[Asset, ...]
    omitted: int  # items shown in the grid only (beyond `max_units`)
    exemplars: tuple[Asset | None, ...] = ()  # per shown item: its natural exemplars in one strip

    @property
    def all(self) -> tuple[Asset, ...]:
        return (self.grid, *self.items, *(a for a in self.exemplars if a is not None))


def asset_folder(output: Manifest) -> str:
    return f"{ASSET_DIR}/{safe_name(output.method + '-' + '+'.join(output.layers))}"


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGBA" if img.mode in ("RGBA", "LA", "PA") else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise PublishError(f"{path}: not a readable image ({err})") from None


def _png(img: Image.Image) -> bytes:
    return png_bytes(img, optimize=True)  # card assets go to the hub: smaller files


def _fit_px(img: Image.Image, max_px: int) -> Image.Image:
    if max(img.size) <= max_px:
        return img
    scale = max_px / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def _fit_bytes(img: Image.Image, max_bytes: int) -> bytes:
    """PNG-encode, downscaling by steps of 0.8 until the file fits in `max_bytes`."""
    data = _png(img)
    while len(data) > max_bytes and max(img.size) > 16:
        # PNG size grows about with the pixel count: jump close to the target, then step down.
        scale = min(0.8, math.sqrt(max_bytes / len(data)) * 0.95)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)
        data = _png(img)
    if len(data) > max_bytes:
        raise PublishError(f"cannot fit the grid image into {max_bytes} bytes")
    return data


def prepare_assets(output: Manifest, *, limits: AssetLimits = AssetLimits()) -> Assets:
    """Grid (the folder's grid.png, or built from the item images) and per-unit images, small."""
    folder = asset_folder(output)
    shown = output.items[: max(0, limits.max_units)]
    item_assets = []
    for item in shown:
        stem = f"{item.index:03d}" + (f"_u{safe_name(str(item.unit), max_len=40)}" if item.unit is not None else "")
        img = _fit_px(_open_image(output.file(item.image)), limits.max_image_px)
        item_assets.append(Asset(f"{folder}/{stem}.png", _png(img), item.caption))
    if output.grid is not None:
        grid_img = _open_image(output.grid)
    else:
        cols = math.ceil(math.sqrt(len(output.items)))
        cell = max(16, min(256, 2048 // cols - 4))  # an atlas of 1000 units stays a 2k-px grid
        grid_img = build_grid([_fit_px(_open_image(output.file(item.image)), cell) for item in output.items])
    grid = Asset(f"{folder}/grid.png", _fit_bytes(grid_img, limits.max_grid_bytes), "grid")
    strips = tuple(_exemplar_strip(output, item, asset, limits) for item, asset in zip(shown, item_assets))
    return Assets(grid=grid, items=tuple(item_assets), omitted=len(output.items) - len(shown),
                  exemplars=strips if any(strips) else ())


def _exemplar_strip(output: Manifest, item: Item, asset: Asset, limits: AssetLimits) -> Asset | None:
    """The item's exemplars side by side, one PNG (small: cells of at most 128 px)."""
    if not item.exemplars:
        return None
    cell = min(128, limits.max_image_px)
    tiles = [_fit_px(_open_image(output.file(p)), cell) for p in item.exemplar_files]
    strip = tile_grid(tiles, cols=len(tiles), tile=cell, gap=4, margin=-2)  # gaps between the cells only
    return Asset(asset.path_in_repo.rsplit(".", 1)[0] + "_exemplars.png", _png(strip), f"{item.caption} · natural exemplars")
