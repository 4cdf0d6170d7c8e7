"""Write N JPEGs of 500x375 px (or 375x500), random crops of the bundled sample photos, into a
folder: the stand-in image set of the exemplar speed figure in the README (no image set of that
size can be downloaded on the offline machine).

    .venv/bin/python scripts/exemplar_images.py IMG_DIR --n 2000
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image

from hf_fviz.hub.images import load_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    samples = load_images("samples", size=(600, 600)).float01()  # (N, 3, 600, 600) in [0, 1]
    photos = [Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for x in samples]
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.n):
        img = rng.choice(photos)
        w, h = (500, 375) if rng.random() < 0.5 else (375, 500)
        scale = rng.uniform(0.5, 1.0)
        cw, ch = int(min(img.width, img.height * w / h) * scale), int(min(img.height, img.width * h / w) * scale)
        x, y = rng.randint(0, img.width - cw), rng.randint(0, img.height - ch)
        img.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR).save(args.out / f"{i:05d}.jpg", quality=90)
    print(f"wrote {args.n} images to {args.out}")


if __name__ == "__main__":
    main()
