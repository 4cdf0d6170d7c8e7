"""Image parametrizations: what the optimizer actually changes, and how it becomes an image.

Each parametrization holds N images in one parameter tensor (one per unit of a batched run) and
maps it, in one batched call, to RGB images in [0, 1] of shape (N, 3, S, S); the model's own
normalization is applied afterwards by the loop. The FFT work runs in float32 (never autocast).

- `MacoImage` (Fel et al. 2023): only the phase of the spectrum is free; the magnitude is fixed to
  a natural-image spectrum. phase -> standardize -> M·e^{iφ} -> irfft2 -> standardize ->
  colour recorrelation -> sigmoid.
- `FourierImage` (Olah et al. 2017, as in the MACO authors' baseline): the whole complex
  spectrum is free, scaled by 1/f^decay.
- `PixelImage`: free pixels through a sigmoid (the naive baseline).

Standardization is per image, so a batch of N images behaves exactly like N separate runs.
Seeds: `seeds[i]` fixes image i's initial parameters (the same seed gives the same start for any
unit, in any batch position).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .spectrum import load_spectrum, recorrelate

EPS = 1e-4  # standardize eps of the authors' PyTorch code


class _Standardize(torch.autograd.Function):
    """Per-image standardization with a hand-written backward whose reductions run over
    contiguous rows: autograd's own backward reduces gradients in a stride-dependent order, so a
    batch of N images would not be bitwise identical to N single runs (and MACO's phase updates
    amplify such rounding differences)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        flat = x.reshape(x.shape[0], -1)
        length = flat.shape[1]
        centered = flat - flat.mean(dim=1, keepdim=True)
        std = (centered.pow(2).sum(dim=1, keepdim=True) / max(length - 1, 1)).sqrt()
        ctx.save_for_backward(centered, std)
        return (centered / (std + EPS)).view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        centered, std = ctx.saved_tensors
        g = grad.contiguous().reshape(centered.shape)
        length = centered.shape[1]
        d = std + EPS
        gc = (g * centered).sum(dim=1, keepdim=True)
        gx = (g - g.mean(dim=1, keepdim=True)) / d - centered * gc / (d * d * std.clamp_min(1e-12) * max(length - 1, 1))
        return gx.view(grad.shape)


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit std per image (over every dim but the first)."""
    return _Standardize.apply(x)


def _randn(shape: tuple[int, ...], seeds: Sequence[int], device: torch.device) -> torch.Tensor:
    """One standard normal draw per image, each from its own CPU generator (device-independent)."""
    out = torch.empty((len(seeds), *shape))
    for i, s in enumerate(seeds):  # once at initialization, not in the loop
        out[i] = torch.randn(shape, generator=torch.Generator().manual_seed(int(s)))
    return out.to(device)


class ImageParam(nn.Module):
    """Base: N images of side `size`; `forward()` returns (N, 3, size, size) in [0, 1]."""

    name = "base"
    default_lr = 1.0

    def __init__(self, n: int, size: int, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.n, self.size, self.device = n, size, torch.device(device)

    def forward(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class MacoImage(ImageParam):
    """MACO: fixed magnitude, optimized phase (3, S, S//2+1) per image, init N(0, 1)."""

    name = "maco"
    default_lr = 1.0

    def __init__(
        self,
        n: int,
        size: int,
        *,
        seeds: Sequence[int] | None = None,
        spectrum: str | None = None,
        magnitude: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(n, size, device)
        seeds = list(seeds) if seeds is not None else [0] * n
        mag = magnitude if magnitude is not None else load_spectrum(spectrum, size=size)
        self.register_buffer("magnitude", mag.to(self.device, torch.float32))
        self.phase = nn.Parameter(_randn((3, size, size // 2 + 1), seeds, self.device))

    def forward(self) -> torch.Tensor:
        phase = standardize(self.phase)
        spectrum = torch.complex(torch.cos(phase) * self.magnitude, torch.sin(phase) * self.magnitude)
        x = torch.fft.irfft2(spectrum, s=(self.size, self.size))
        return torch.sigmoid(recorrelate(standardize(x)))


def fourier_scale(size: int, decay: float) -> torch.Tensor:
    """1 / max(f, 1/S)^decay · S over the rfft2 grid: Lucid's spectrum scaler (natural 1/f fall-off)."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    freq = torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / size)
    return freq.pow(-decay) * size


class FourierImage(ImageParam):
    """Olah et al.: the whole spectrum (real, imag) is free, scaled by 1/f^decay. The authors' MACO
    baseline settings: init N(0, 1), standardize, decay 1.5, NAdam lr 1.0."""

    name = "fourier"
    default_lr = 1.0

    def __init__(
        self, n: int, size: int, *, seeds: Sequence[int] | None = None, decay: float = 1.5, device: torch.device | str = "cpu"
    ) -> None:
        super().__init__(n, size, device)
        seeds = list(seeds) if seeds is not None else [0] * n
        self.register_buffer("scale", fourier_scale(size, decay).to(self.device))
        self.spectrum = nn.Parameter(_randn((3, size, size // 2 + 1, 2), seeds, self.device))

    def forward(self) -> torch.Tensor:
        spec = standardize(self.spectrum)
        spectrum = torch.complex(spec[..., 0] * self.scale, spec[..., 1] * self.scale)
        x = torch.fft.irfft2(spectrum, s=(self.size, self.size))
        return torch.sigmoid(recorrelate(standardize(x)))


class PixelImage(ImageParam):
    """Free pixels: sigmoid(p), p init N(0, 0.01) (grey). Adam-style lr 0.05."""

    name = "pixel"
    default_lr = 0.05

    def __init__(self, n: int, size: int, *, seeds: Sequence[int] | None = None, device: torch.device | str = "cpu") -> None:
        super().__init__(n, size, device)
        seeds = list(seeds) if seeds is not None else [0] * n
        self.pixels = nn.Parameter(_randn((3, size, size), seeds, self.device) * 0.01)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.pixels)


PARAMETRIZATIONS: dict[str, type[ImageParam]] = {"maco": MacoImage, "fourier": FourierImage, "pixel": PixelImage}


def make_param(
    method: str, n: int, size: int, *, seeds: Sequence[int], spectrum: str | None = None, device: torch.device | str = "cpu"
) -> ImageParam:
    """Build the parametrization of a method name ('maco', 'fourier', 'pixel')."""
    if method == "maco":
        return MacoImage(n, size, seeds=seeds, spectrum=spectrum, device=device)
    if method == "fourier":
        return FourierImage(n, size, seeds=seeds, device=device)
    if method == "pixel":
        return PixelImage(n, size, seeds=seeds, device=device)
    raise ValueError(f"unknown parametrization {method!r}")


__all__ = ["ImageParam", "MacoImage", "FourierImage", "PixelImage", "standardize", "fourier_scale", "make_param"]
