"""Image sources by ID: a local folder (or files), the bundled `samples`, or a hub dataset.

    >>> from hf_fviz.hub.sources import iter_source, load_source
    >>> images = load_source("org/pets", size=(224, 224), split="test", max_images=500)   # ImageSet
    >>> for batch in iter_source("photos/", size=(224, 224), batch_size=64):              # streamed
    ...     batch.pixels.shape, batch.names

A hub dataset (`org/name`, the way a model is `org/name`) is read with the `datasets` library,
streaming, so a large dataset is never downloaded whole: only the first `max_images` rows are
read. With `HF_HUB_OFFLINE=1` it is read from the local hub cache. The image column is the first
column with an `Image` feature unless `image_column` names one; rows are decoded by us (size
checked before decoding, as for files) and resized like every other image (short side, centre).

Every bad source is one `BadImageSet` line: no such folder or dataset, a gated dataset, an
unknown split, a dataset without an image column, an undecodable row.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import BadImageSet, MissingDependency
from .images import MAX_PIXELS, SAMPLES, ImageSet, _image_files, _read_file, _rgb, _to_array, load_images

DATASET_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DATASETS_INSTALL = "pip install 'hf_fviz[datasets]'"


@dataclass
class Batch:
    """Images `start .. start + len(names) - 1` of a source, uint8 (B, 3, H, W)."""

    pixels: torch.Tensor
    names: list[str]
    start: int


def is_hub_dataset(source: str | os.PathLike[str]) -> bool:
    """True for `org/name` that is not an existing local path (a folder wins over a dataset ID)."""
    text = os.fspath(source)
    return bool(DATASET_ID.match(text)) and not Path(text).expanduser().exists()


def describe(source: str | os.PathLike[str], split: str | None = None) -> str:
    """How a source is named in manifests and cards."""
    text = os.fspath(source)
    return f"{text} ({split or 'train'} split)" if is_hub_dataset(text) else text


def iter_source(
    source: str | os.PathLike[str],
    *,
    size: tuple[int, int],
    batch_size: int = 64,
    max_images: int | None = None,
    split: str | None = None,
    image_column: str | None = None,
) -> Iterator[Batch]:
    """Yield the source's images in batches, resized to `size`, at most `max_images` of them."""
    text = os.fspath(source)
    if is_hub_dataset(text):
        rows = _dataset_rows(text, split=split, image_column=image_column, max_images=max_images)
    elif split is not None or image_column is not None:
        raise BadImageSet(f"--split and --image-column are for hub datasets (org/name); {text} is a local source")
    elif text == SAMPLES and not Path(SAMPLES).exists():
        images = load_images(SAMPLES, size=size)
        rows = ((name, images.pixels[i]) for i, name in enumerate(images.names[:max_images]))
    else:
        rows = _file_rows(Path(text).expanduser(), size, max_images)
    yield from _batched(rows, size, batch_size)


def check_source(source: str | os.PathLike[str], *, split: str | None = None, image_column: str | None = None) -> None:
    """Raise `BadImageSet` now for a source that cannot be read (missing folder or dataset, gated,
    unknown split, no image column), before a long run that would end in it; reads no image."""
    text = os.fspath(source)
    if is_hub_dataset(text):
        ds, chosen = _open_split(text, split)
        _image_column(ds, text, chosen, image_column)
    elif split is not None or image_column is not None:
        raise BadImageSet(f"--split and --image-column are for hub datasets (org/name); {text} is a local source")
    elif not (text == SAMPLES or Path(text).expanduser().exists()):
        raise BadImageSet(f"no such file or folder: {text}" + ("" if "/" in text else " (nor a hub dataset ID: use org/name)"))


def load_source(source: str | os.PathLike[str], *, size: tuple[int, int], max_images: int | None = None,
                split: str | None = None, image_column: str | None = None) -> ImageSet:
    """All of a source's images (at most `max_images`) as one `ImageSet`."""
    batches = list(iter_source(source, size=size, max_images=max_images, split=split, image_column=image_column))
    if not batches:
        raise BadImageSet(f"{describe(source, split)} holds no images")
    pixels = torch.cat([b.pixels for b in batches])
    names = [n for b in batches for n in b.names]
    return ImageSet(pixels, names, describe(source, split), {"split": split} if split else {})


def _batched(rows: Iterator[tuple[str, Any]], size: tuple[int, int], batch_size: int) -> Iterator[Batch]:
    names: list[str] = []
    arrays: list[torch.Tensor] = []
    start = 0
    for name, image in rows:
        arrays.append(image if isinstance(image, torch.Tensor) else torch.from_numpy(_to_array(image, size).copy()).permute(2, 0, 1))
        names.append(name)
        if len(names) == batch_size:
            yield Batch(torch.stack(arrays), names, start)
            start += len(names)
            names, arrays = [], []
    if names:
        yield Batch(torch.stack(arrays), names, start)


def _file_rows(path: Path, size: tuple[int, int], max_images: int | None) -> Iterator[tuple[str, Any]]:
    if path.is_dir():
        files = _image_files(path)
        if not files:
            raise BadImageSet(f"no image files in folder {path}")
    elif path.is_file():
        files = [path]
    else:
        raise BadImageSet(f"no such file or folder: {path}" + (" (nor a hub dataset ID: use org/name)" if "/" not in str(path) else ""))
    for f in files[:max_images]:
        yield str(f), _read_file(f, max_pixels=MAX_PIXELS, target=size)


# ---------------------------------------------------------------------------- hub datasets
def _open_split(repo_id: str, split: str | None) -> tuple[Any, str]:
    """The streaming split of a hub dataset (from the local cache when offline or cached)."""
    try:
        import datasets
        from datasets.exceptions import DatasetNotFoundError
    except ImportError:
        raise MissingDependency(f"hub datasets as image sources need the datasets library: {DATASETS_INSTALL}") from None
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        where = snapshot_download(repo_id, repo_type="dataset", local_files_only=True)
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise BadImageSet(f"dataset {repo_id} is not in the local hub cache and the hub is offline (HF_HUB_OFFLINE=1)") from None
        where = repo_id
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            splits = datasets.load_dataset(where, streaming=True)
    except GatedRepoError:
        raise BadImageSet(_gated(repo_id)) from None
    except (DatasetNotFoundError, RepositoryNotFoundError) as err:
        if "gated" in str(err).lower():
            raise BadImageSet(_gated(repo_id)) from None
        raise BadImageSet(f"no dataset {repo_id} on the hub (or it is private: log in with `hf auth login`)") from None
    except (FileNotFoundError, ValueError) as err:
        raise BadImageSet(f"cannot read dataset {repo_id}: {' '.join(str(err).split())[:200]}") from None
    names = list(splits)
    chosen = split or ("train" if "train" in names else names[0] if names else None)
    if chosen not in names:
        raise BadImageSet(f"dataset {repo_id} has no split '{chosen}': its splits are {', '.join(names) or '(none)'}")
    return splits[chosen], chosen


def _gated(repo_id: str) -> str:
    return (f"dataset {repo_id} is gated: accept its conditions on https://huggingface.co/datasets/{repo_id} "
            "and log in (`hf auth login` or HF_TOKEN)")


def _image_column(ds: Any, repo_id: str, split: str, wanted: str | None) -> str:
    import datasets

    features = ds.features or {}
    columns = list(features)
    images = [c for c, f in features.items() if isinstance(f, datasets.Image)]
    if wanted is not None:
        if wanted not in features:
            raise BadImageSet(f"dataset {repo_id} ({split}) has no column '{wanted}': its columns are {', '.join(columns)}")
        if wanted not in images:
            raise BadImageSet(f"column '{wanted}' of dataset {repo_id} is not an image column ({features[wanted]})")
        return wanted
    if not images:
        raise BadImageSet(f"dataset {repo_id} ({split}) has no image column (columns: {', '.join(columns) or 'none'}); "
                          "pass --image-column")
    return images[0]


def _dataset_rows(repo_id: str, *, split: str | None, image_column: str | None,
                  max_images: int | None) -> Iterator[tuple[str, Any]]:
    import datasets

    ds, chosen = _open_split(repo_id, split)
    column = _image_column(ds, repo_id, chosen, image_column)
    ds = ds.select_columns([column]).cast_column(column, datasets.Image(decode=False))
    if max_images is not None:
        ds = ds.take(max_images)
    for i, row in enumerate(ds):
        name = f"{repo_id}:{chosen}[{i}]"
        yield name, _decode(row[column], name)


def _decode(cell: Any, name: str) -> Any:
    """One dataset image cell ({'bytes', 'path'}) -> an RGB PIL image, size checked before decoding."""
    from PIL import Image, UnidentifiedImageError

    data = cell.get("bytes") if isinstance(cell, dict) else None
    if data is None and isinstance(cell, dict) and cell.get("path") and os.path.isfile(cell["path"]):
        data = Path(cell["path"]).read_bytes()
    if data is None:
        raise BadImageSet(f"{name} holds no image data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise BadImageSet(f"{name} is {w}x{h} pixels, over the limit of {MAX_PIXELS:,}")
        im.load()
        return _rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as err:
        raise BadImageSet(f"cannot decode {name} ({type(err).__name__}: {err})") from None


__all__ = ["Batch", "check_source", "describe", "is_hub_dataset", "iter_source", "load_source", "DATASETS_INSTALL"]
