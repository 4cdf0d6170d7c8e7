"""Build the default MACO magnitude spectrum shipped as hf_fviz/engine/spectrum_natural.npy.

Provenance: mean |rfft2| of the periodic component (Moisan 2011: no cross of border artifacts on
the frequency axes) in the decorrelated colour space over 4000 random square crops (side
35-100 % of the short side, random horizontal and vertical flips, resized to 512x512) of 7
freely licensed colour photographs bundled with the Python packages in the dev environment:

- scikit-image `skimage.data`: astronaut (NASA, public domain), coffee (CC0), chelsea (CC0),
  rocket (SpaceX, public domain)
- scikit-learn `load_sample_images`: china.jpg, flower.jpg (CC BY 2.0, Flickr users
  danielbuechele and vultilion)
- matplotlib sample data: grace_hopper.jpg (US Navy, public domain)

Stored as float16 (3, 512, 257) scaled to the float16 range (the scale is irrelevant to MACO).
Run: `.venv/bin/python scripts/build_spectrum.py [--crops N] [--out PATH]`; it is deterministic
(seed 0).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from hf_fviz.engine.spectrum import DEFAULT_SPECTRUM, SpectrumProvenance, save_spectrum, spectrum_from_images
from hf_fviz.hub.images import read_image


def bundled_images() -> list[tuple[str, torch.Tensor]]:
    import matplotlib
    import skimage.data
    from sklearn.datasets import load_sample_images

    out: list[tuple[str, torch.Tensor]] = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        arr = getattr(skimage.data, name)()[..., :3]
        out.append((f"skimage.data.{name}", torch.from_numpy(arr.astype(np.float32) / 255).permute(2, 0, 1).contiguous()))
    sk = load_sample_images()
    for fname, arr in zip(sk.filenames, sk.images):
        out.append((f"sklearn {Path(fname).name}", torch.from_numpy(arr.astype(np.float32) / 255).permute(2, 0, 1).contiguous()))
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    out.append(("matplotlib grace_hopper.jpg", read_image(hopper)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=4000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", type=Path, default=DEFAULT_SPECTRUM)
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    named = bundled_images()
    spec = spectrum_from_images([t for _, t in named], crops=args.crops, size=args.size, seed=0)
    path = save_spectrum(spec, args.out, half=True)
    prov = SpectrumProvenance(images=len(named), crops=args.crops, size=args.size, sources=tuple(n for n, _ in named))
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    print("provenance:", prov.describe())


if __name__ == "__main__":
    main()
