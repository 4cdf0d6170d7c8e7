"""The natural-image magnitude spectrum MACO keeps fixed while it optimizes the phase.

A spectrum is a float array of shape (3, S, S//2 + 1): the mean |rfft2| of natural images of side S,
computed in the *decorrelated* colour space (RGB pixels times the inverse of `COLOR_CORRELATION`),
so that `irfft2 -> recorrelate` lands back in RGB. Its absolute scale does not matter (the
parametrization standardizes); its spectral shape and the relative energy of the three channels do.
The same layout as xplique's `spectrum_decorrelated.npy`, so that file works with `--spectrum` too.

The default ships in the package (`engine/spectrum_natural.npy`, built by
`scripts/build_spectrum.py` from freely licensed images bundled with scikit-image, scikit-learn and
matplotlib); nothing is downloaded at run time. `build_spectrum` makes one from a user's images.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadImageSet, InvalidSettings

DEFAULT_SPECTRUM = Path(__file__).with_name("spectrum_natural.npy")

# Lucid's "color_correlation_svd_sqrt": the square root of ImageNet's RGB covariance. A pixel
# (row vector) in decorrelated space maps to RGB as `x_rgb = x_dec @ COLOR_CORRELATION`.
COLOR_CORRELATION = torch.tensor(
    [
        [0.56282854, 0.58447580, 0.58447580],
        [0.19482528, 0.0, -0.19482528],
        [0.04329450, -0.10823626, 0.06494176],
    ]
)


def decorrelate(rgb: torch.Tensor) -> torch.Tensor:
    """RGB images (N, 3, H, W) -> decorrelated colour space (inverse of the recorrelation)."""
    inv = torch.linalg.inv(COLOR_CORRELATION.double()).to(rgb.dtype)
    return _mix_colours(rgb, inv.to(rgb.device))


def recorrelate(x: torch.Tensor) -> torch.Tensor:
    """Decorrelated images (N, 3, H, W) -> RGB (per pixel `x @ COLOR_CORRELATION`)."""
    return _mix_colours(x, COLOR_CORRELATION.to(device=x.device, dtype=x.dtype))


def _mix_colours(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Per pixel `x @ matrix` for images (N, 3, H, W): one matrix product over the flattened
    pixels, the same values as an einsum without its layout copies (a quarter less time for the
    product and its backward)."""
    return (matrix.t() @ x.flatten(2)).view_as(x)


@lru_cache(maxsize=8)
def _load_file(path: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InvalidSettings(f"cannot read spectrum file {path}: {err}") from None
    if arr.ndim != 3 or arr.shape[0] != 3 or arr.shape[2] != arr.shape[1] // 2 + 1 or not np.issubdtype(arr.dtype, np.floating):
        raise InvalidSettings(
            f"spectrum file {path} has shape {arr.shape} ({arr.dtype}); expected float (3, S, S//2+1), as written by `hf-fviz spectrum`"
        )
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise InvalidSettings(f"spectrum file {path} holds negative or non-finite values")
    return arr.astype(np.float32)


def load_spectrum(path: str | os.PathLike[str] | None = None, *, size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """The magnitude spectrum (3, size, size//2+1) float32 for a canvas of side `size`.

    Resized with bilinear interpolation (antialiased when shrinking) as in the authors' code: the
    spectrum is defined per cycle/pixel of the canvas, so a bigger canvas gets proportionally
    bigger structures. `path=None` uses the shipped default.
    """
    arr = torch.from_numpy(_load_file(str(path or DEFAULT_SPECTRUM)))
    target = (size, size // 2 + 1)
    if tuple(arr.shape[1:]) != target:
        shrink = target[0] < arr.shape[1]
        arr = F.interpolate(arr[None], size=target, mode="bilinear", align_corners=False, antialias=shrink)[0]
    return arr.clamp_min(0).to(device)


# ---------------------------------------------------------------------------- building
@dataclass(frozen=True)
class SpectrumProvenance:
    """What a spectrum was built from (printed by the builders, kept for the README)."""

    images: int
    crops: int
    size: int
    sources: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.crops} random crops ({self.size}x{self.size}, random scale and flips) of {self.images} images: " + ", ".join(self.sources)


def random_crops(
    images: Sequence[torch.Tensor], *, crops: int, size: int, generator: torch.Generator, min_scale: float = 0.35
) -> Iterable[torch.Tensor]:
    """Yield batches of random square crops (side min_scale..1 of the short side), randomly
    flipped, resized to `size` with antialiasing. Upsampling small images is intended: it mimics
    ImageNet-sized photos shown on a bigger canvas."""
    batch: list[torch.Tensor] = []
    for i in range(crops):
        img = images[int(torch.randint(len(images), (1,), generator=generator))]
        _, h, w = img.shape
        side = int(min(h, w) * (min_scale + (1 - min_scale) * float(torch.rand(1, generator=generator))))
        side = max(side, 8)
        y = int(torch.randint(h - side + 1, (1,), generator=generator))
        x = int(torch.randint(w - side + 1, (1,), generator=generator))
        crop = img[:, y : y + side, x : x + side]
        if torch.rand(1, generator=generator) < 0.5:
            crop = crop.flip(-1)
        if torch.rand(1, generator=generator) < 0.5:
            crop = crop.flip(-2)
        crop = F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)[0]
        batch.append(crop)
        if len(batch) == 32 or i == crops - 1:
            yield torch.stack(batch)
            batch = []


def periodic_rfft2(x: torch.Tensor) -> torch.Tensor:
    """rfft2 of the periodic component of images (..., H, W) (Moisan 2011, "Periodic plus smooth
    image decomposition"). A plain FFT treats a crop as if it tiled the plane, so the jumps between
    its opposite borders add a bright cross along the frequency axes; a spectrum keeping that
    cross makes MACO paint horizontal and vertical streaks. The smooth component, whose Laplacian
    is those border jumps, is subtracted in the Fourier domain."""
    h, w = x.shape[-2:]
    jumps = torch.zeros_like(x)
    rows = x[..., -1, :] - x[..., 0, :]
    cols = x[..., :, -1] - x[..., :, 0]
    jumps[..., 0, :] += rows
    jumps[..., -1, :] -= rows
    jumps[..., :, 0] += cols
    jumps[..., :, -1] -= cols
    q = torch.arange(h, dtype=x.dtype, device=x.device)[:, None]
    r = torch.arange(w // 2 + 1, dtype=x.dtype, device=x.device)[None, :]
    denom = 2 * torch.cos(2 * math.pi * q / h) + 2 * torch.cos(2 * math.pi * r / w) - 4
    denom[0, 0] = 1.0
    smooth = torch.fft.rfft2(jumps) / denom
    smooth[..., 0, 0] = 0
    return torch.fft.rfft2(x) - smooth


def spectrum_from_images(
    images: Sequence[torch.Tensor], *, crops: int = 2000, size: int = 512, seed: int = 0
) -> torch.Tensor:
    """Mean |rfft2| of the periodic component (`periodic_rfft2`) of random crops of RGB images in
    [0, 1] (each (3, H, W)), in the decorrelated colour space; returns (3, size, size//2+1) float32."""
    if not images:
        raise BadImageSet("no images to build a spectrum from")
    if crops < 1 or size < 16:
        raise InvalidSettings("spectrum needs crops >= 1 and size >= 16")
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(3, size, size // 2 + 1, dtype=torch.float64)
    for batch in random_crops(images, crops=crops, size=size, generator=gen):
        total += periodic_rfft2(decorrelate(batch)).abs().sum(0).double()
    return (total / crops).float()


def save_spectrum(spectrum: np.ndarray | torch.Tensor, path: str | os.PathLike[str], *, half: bool = False) -> Path:
    """Write a spectrum .npy atomically. `half=True` stores float16 scaled to fit its range
    (the shipped default; the scale does not matter to MACO)."""
    arr = spectrum.numpy() if isinstance(spectrum, torch.Tensor) else np.asarray(spectrum)
    arr = arr.astype(np.float32)
    if half:
        arr = (arr / arr.max() * 6.0e4).astype(np.float16)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, out)
    _load_file.cache_clear()
    return out
