"""Tiny image datasets laid out as hub dataset repos (parquet with an `Image` feature, written by
the `datasets` library itself), for image sources by ID (`hf_fviz.hub.sources`).

- `org/tiny-images`: 36 photo crops (from the bundled samples) in `train`, 6 in `test`;
  columns `image` (Image), `label` (int), `caption` (str).
- `org/no-images`: text only (`text`, `label`), for the "no image column" error.
"""

from __future__ import annotations

from pathlib import Path

REPO_TYPE = "dataset"
TRAIN, TEST = 36, 6


def _crops(n: int, seed: int):
    import numpy as np
    from PIL import Image

    from hf_fviz.hub.images import sample_arrays

    photos = [arr if arr.ndim == 3 else np.repeat(arr[..., None], 3, axis=-1) for _, arr in sample_arrays()]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arr = photos[i % len(photos)][..., :3]
        h, w = arr.shape[:2]
        side = int(rng.integers(min(h, w) // 3, min(h, w)))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        im = Image.fromarray(np.ascontiguousarray(arr[y : y + side, x : x + side]).astype(np.uint8), "RGB")
        out.append(im.resize((int(rng.integers(40, 96)), int(rng.integers(40, 96)))))
    return out


def build(src_root: Path) -> dict[str, Path]:
    import datasets

    out: dict[str, Path] = {}
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64"), "caption": datasets.Value("string")})
    folder = src_root / "datasets--org--tiny-images"
    for split, n, seed in (("train", TRAIN, 0), ("test", TEST, 1)):
        images = _crops(n, seed)
        ds = datasets.Dataset.from_dict(
            {"image": images, "label": [i % 3 for i in range(n)], "caption": [f"{split} {i}" for i in range(n)]}, features=features
        )
        (folder / "data").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    out["org/tiny-images"] = folder
    text = src_root / "datasets--org--no-images"
    (text / "data").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 0]}).to_parquet(str(text / "data" / "train-00000-of-00001.parquet"))
    out["org/no-images"] = text
    return out
