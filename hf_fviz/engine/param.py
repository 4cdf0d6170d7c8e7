"""Image parametrizations: what the optimizer actually changes, and how it becomes an image.

Each parametrization holds N images in one parameter tensor (one per unit of a batched run) and
maps it, in one batched call, to RGB images in [0, 1] of shape (N, 3, S, S); the model's own
normalization is applied afterwards by the loop. The FFT work runs in float32 (never autocast).

- `MacoImage` (Fel et al. 2023): only the phase of the spectrum is free; the magnitude is fixed to
  a natural-image spectrum. phase -> standardize -> × π -> M·e^{iφ} -> irfft2 -> standardize ->
  colour recorrelation -> sigmoid (the × π is ours; see the class).
- `FourierImage` (Olah et al. 2017, as in the MACO authors' baseline): the whole complex
  spectrum is free, scaled by 1/f^decay.
- `PixelImage`: free pixels through a sigmoid (the naive baseline).
- `ImageMaco`, `ImagePixels`, `PaperPixels`: the same kinds started from given images instead
  of noise (the image-set methods start each image from its cluster's mean image).

While optimizing, MACO and Fourier render only the frequencies the crops can see (`render_size`:
the loop sets it every step from that step's smallest crop, `RandomCrops.render_side`, so the
render grows from about 250 px to 750 px over a run at a 1280 px canvas, coarse to fine): that
skips most of the FFT and canvas work, and MACO's optimizer holds only the phase of the largest
band a step renders (the rest of the grid stays as drawn). The final image is rendered at the
full canvas.

Standardization is per image, so a batch of N images behaves exactly like N separate runs.
Seeds: `seeds[i]` fixes image i's initial parameters (the same seed gives the same start for any
unit, in any batch position).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import DEFAULT_LR, IMAGESET_LR
from .spectrum import COLOR_CORRELATION, decorrelate, load_spectrum

EPS = 1e-4  # standardize eps of the authors' PyTorch code


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image (first dim): the mean (N, 1), the values less it, flattened (N, L), and the sum of
    their squares (N, 1), reduced over contiguous rows (the same order for any N)."""
    flat = x.reshape(x.shape[0], -1)
    mean = flat.mean(dim=1, keepdim=True)
    centered = flat - mean
    return mean, centered, centered.pow(2).sum(dim=1, keepdim=True)


def _centered_and_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the centered values (N, L) and the unbiased std (N, 1) (see `_moments`)."""
    _, centered, m2 = _moments(x)
    return centered, (m2 / max(centered.shape[1] - 1, 1)).sqrt()


class _Standardize(torch.autograd.Function):
    """Per-image standardization with a hand-written backward whose reductions run over
    contiguous rows: autograd's own backward reduces gradients in a stride-dependent order, so a
    batch of N images would not be bitwise identical to N single runs (and MACO's phase updates
    amplify such rounding differences)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        centered, std = _centered_and_std(x)
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


class _StandardizedColours(torch.autograd.Function):
    """`recorrelate(standardize(x))` for images (N, 3, H, W), with a hand-written backward that
    takes about six passes over the image instead of ten (the same values up to rounding). The
    colour product is the one fixed 3 x 3 matrix for all images (a per-image matrix in `bmm`
    rounds differently with the batch size, and MACO's phase updates amplify that); the
    reductions are `_Standardize`'s (one contiguous row per image)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        _, centered, m2 = _moments(x)
        std = (m2 / max(centered.shape[1] - 1, 1)).sqrt()
        ctx.save_for_backward(centered, std, matrix)
        mixed = matrix.t() @ centered.view(x.shape[0], 3, -1)
        return mixed.div_((std + EPS).view(-1, 1, 1)).view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        centered, std, matrix = ctx.saved_tensors
        n, length = centered.shape
        d = std + EPS
        g = (matrix @ grad.reshape(n, 3, -1)).view(n, length)  # dL/d(standardized)
        gc = (g * centered).sum(dim=1, keepdim=True)
        coef = gc / (d * d * std.clamp_min(1e-12) * max(length - 1, 1))
        g = g.sub_(g.sum(dim=1, keepdim=True) / length).div_(d).addcmul_(centered, coef, value=-1)
        return g.view(grad.shape), None


def standardized_colours(x: torch.Tensor) -> torch.Tensor:
    """`recorrelate(standardize(x))`: decorrelated, standardized images (N, 3, H, W) in RGB."""
    return _StandardizedColours.apply(x, COLOR_CORRELATION.to(device=x.device, dtype=x.dtype))


class _Polar(torch.autograd.Function):
    """`magnitude * exp(i * phase)` (the magnitude fixed), with the phase's gradient taken from
    the output (Im(g) Re(z) - Re(g) Im(z)) instead of recomputing cos and sin: three passes over
    the spectrum in the backward instead of about nine."""

    @staticmethod
    def forward(ctx, phase: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = torch.complex(torch.cos(phase).mul_(magnitude), torch.sin(phase).mul_(magnitude))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (out,) = ctx.saved_tensors
        g, z = torch.view_as_real(grad.resolve_conj()), torch.view_as_real(out)
        return torch.mul(g[..., 1], z[..., 0]).addcmul_(g[..., 0], z[..., 1], value=-1), None


def polar(magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """The complex spectrum of a fixed magnitude and a phase (see `_Polar`)."""
    return _Polar.apply(phase, magnitude)


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit std per image (over every dim but the first)."""
    return _Standardize.apply(x)


class _BandOfStandardized(torch.autograd.Function):
    """`low_band(standardize(full) * scale, side)` without the full-size standardized tensor, and
    with no gradient for the frequencies outside the band.

    `x` holds the free frequencies of the phase (the full grid, or the low band a training run can
    render); `outer` the count, mean and sum of squared deviations (N, 1) of the frozen rest of the
    grid, so that the mean and std are still over the whole grid (combined as Chan et al.'s
    parallel variance).

    Why: MACO's phase is standardized over the whole grid but a training step renders only the
    band its crops can see. Written out, the forward pass makes three full-size tensors and the
    backward gives every unseen frequency a gradient made of the standardization's coupling term
    alone (-mean(g)/d - centered * c): two numbers per image, which NAdam, normalizing per
    element, turned into full-size phase steps of every unseen frequency in lockstep (measured
    with the coarse-to-fine render at our defaults: judge top-5 fell from 95-100 % to 80-90 % on
    the 20 benchmark classes). Here the forward pass writes only the band, and the unseen
    frequencies keep their phase until a step renders them; inside the band the gradient is the
    exact one. Same reductions as `_Standardize` (over contiguous rows), so a batch of N images
    still behaves exactly like N single runs."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, side: int, scale: float, outer: tuple[int, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:  # type: ignore[override]
        if outer is None:
            centered, std = _centered_and_std(x)
            band = low_band(centered.view_as(x), side)
            length = x[0].numel()
        else:
            count, outer_mean, outer_m2 = outer
            own = x[0].numel()
            own_mean, _, own_m2 = _moments(x)
            length = own + count
            mean = (own_mean * own + outer_mean * count) / length
            delta = own_mean - outer_mean
            m2 = own_m2 + outer_m2 + delta * delta * (own * count / length)
            std = (m2 / max(length - 1, 1)).sqrt()
            band = low_band(x, side) - mean.view(x.shape[0], *([1] * (x.dim() - 1)))
        ctx.save_for_backward(std, band)  # the full-size centered values are not needed again
        ctx.shape, ctx.side, ctx.scale, ctx.length = x.shape, side, scale, length
        return band * (scale / (std + EPS)).view(x.shape[0], *([1] * (band.dim() - 1)))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:  # type: ignore[override]
        std, band = ctx.saved_tensors
        n, length = ctx.shape[0], ctx.length
        d = std + EPS
        g = grad.contiguous().reshape(n, -1) * ctx.scale  # the gradient w.r.t. the standardized band
        g_mean = g.sum(dim=1, keepdim=True) / length  # mean over the full grid: zero outside the band
        gc = (g * band.reshape(n, -1)).sum(dim=1, keepdim=True)
        coef = gc / (d * d * std.clamp_min(1e-12) * max(length - 1, 1))
        inside = ((g - g_mean) / d - band.reshape(n, -1) * coef).view(grad.shape)
        if ctx.side >= ctx.shape[-2]:
            return inside, None, None, None
        return paste_band(torch.zeros(ctx.shape, dtype=grad.dtype, device=grad.device), inside), None, None, None


def band_of_standardized(
    x: torch.Tensor, side: int, scale: float = 1.0, outer: tuple[int, torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """`low_band(standardize(x) * scale, side)`, without full-size intermediates; only the band
    gets a gradient (see `_BandOfStandardized`). With `outer` (count, mean, M2 of a frozen rest of
    the grid), the statistics are those of `x` and the rest together."""
    if outer is None and side >= x.shape[-2]:
        return standardize(x) * scale
    return _BandOfStandardized.apply(x, side, scale, outer)


def _outer_stats(full: torch.Tensor, band: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Count, mean and sum of squared deviations (N, 1) of the frequencies of `full` (N, ...,
    S, S//2+1) outside `low_band(., band)`."""
    inside = paste_band(torch.zeros(full.shape[1:], dtype=torch.bool, device=full.device),
                        torch.ones_like(low_band(full[0], band), dtype=torch.bool))
    rest = full.reshape(full.shape[0], -1)[:, ~inside.flatten()]
    mean, _, m2 = _moments(rest)
    return rest.shape[1], mean, m2


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

    def __init__(self, n: int, size: int, device: torch.device | str = "cpu", *, render_size: int | None = None) -> None:
        super().__init__()
        self.n, self.size, self.device = n, size, torch.device(device)
        # Spectral parametrizations render at `render_size` (< size) while training: the crops
        # never see finer detail than that, so the high frequencies are skipped (see
        # `low_band`); the final image (eval mode) is always rendered at `size`.
        self.render_size: int | None = render_size

    def _side(self) -> int:
        if self.training and self.render_size is not None and self.render_size < self.size:
            return self.render_size
        return self.size

    def forward(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class MacoImage(ImageParam):
    """MACO: fixed magnitude, optimized phase (3, S, S//2+1) per image, init N(0, 1).

    The authors standardize the phase to std 1 rad. Then every frequency's phase sits near 0, so
    all the waves peak together at the origin: a bright blob in the canvas corners that takes a
    large share of the image's contrast and makes nothing the model wanted. We scale the
    standardized phase by `phase_scale` = π, which spreads the phases around the circle, and use
    lr 0.3 (about 1/π, the same step in radians as the authors' lr 1.0 at std 1). Measured with
    `hf-fviz bench quality` (20 classes, 160 steps): the judge's geometric-mean rank of the target
    fell from 1.57 to 1.13, and top-1 rose from 80 % to 85 % (README, "What was measured").
    """

    name = "maco"
    default_lr = DEFAULT_LR["maco"]
    phase_scale = math.pi

    def __init__(
        self,
        n: int,
        size: int,
        *,
        seeds: Sequence[int] | None = None,
        spectrum: str | None = None,
        magnitude: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
        render_size: int | None = None,
    ) -> None:
        super().__init__(n, size, device, render_size=render_size)
        seeds = list(seeds) if seeds is not None else [0] * n
        mag = magnitude if magnitude is not None else load_spectrum(spectrum, size=size)
        self.register_buffer("magnitude", mag.to(self.device, torch.float32))
        full = _randn((3, size, size // 2 + 1), seeds, self.device)
        # Only the frequencies a training step can render (the band of `render_size`) are free:
        # the others never get a gradient (see `_BandOfStandardized`), so they never move, and the
        # optimizer need not carry them (at a 1280 px canvas that is a third of the grid: NAdam
        # 6 ms instead of 17 ms per step). They stay in `outer_phase` for the final full-size
        # render, and their statistics keep the standardization over the whole grid.
        self.free_side = size if render_size is None else min(size, render_size)
        self.phase = nn.Parameter(low_band(full, self.free_side).contiguous())
        self.outer_count = 0
        if self.free_side < size:
            self.register_buffer("outer_phase", full)
            self.outer_count, mean, m2 = _outer_stats(full, self.free_side)
            self.register_buffer("outer_mean", mean)
            self.register_buffer("outer_m2", m2)
        self._band: tuple[int, torch.Tensor] | None = None

    @property
    def _outer(self) -> tuple[int, torch.Tensor, torch.Tensor] | None:
        return (self.outer_count, self.outer_mean, self.outer_m2) if self.outer_count else None

    def _side(self) -> int:
        return min(super()._side(), self.free_side) if self.training else self.size

    def full_phase(self) -> torch.Tensor:
        """The whole phase grid (N, 3, S, S//2+1): the free band pasted into the frozen rest."""
        if self._outer is None:
            return self.phase
        return paste_band(self.outer_phase.clone(), self.phase)

    def _magnitude_band(self, side: int) -> torch.Tensor:
        """The magnitude's low band for `side`, cut once (it is fixed) rather than every step."""
        if self._band is None or self._band[0] != side or self._band[1].device != self.magnitude.device:
            self._band = (side, low_band(self.magnitude, side).contiguous())
        return self._band[1]

    def forward(self) -> torch.Tensor:
        side = self._side()
        if side >= self.size:
            phase = standardize(self.full_phase()) * self.phase_scale
        else:
            phase = band_of_standardized(self.phase, side, self.phase_scale, self._outer)
        x = torch.fft.irfft2(polar(self._magnitude_band(side), phase), s=(side, side))
        return torch.sigmoid(standardized_colours(x))


def low_band(spectrum: torch.Tensor, side: int) -> torch.Tensor:
    """The block of an rfft2 grid (..., S, S//2+1) holding the frequencies of a side x side image:
    its inverse FFT is the canvas band-limited and sampled at `side` px (standardized afterwards,
    so the 1/S² scale does not matter). Identity when `side` is the full size."""
    size = spectrum.shape[-2]
    if side >= size:
        return spectrum
    half = side // 2
    return torch.cat([spectrum[..., :half, : half + 1], spectrum[..., size - half :, : half + 1]], dim=-2)


def paste_band(grid: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """The inverse of `low_band`: write `band` (..., side, side//2+1, laid out as `low_band` cuts
    it) into its place in the rfft2 grid `grid` (..., S, S//2+1), in place; returns `grid`."""
    half, size = band.shape[-2] // 2, grid.shape[-2]
    grid[..., :half, : half + 1] = band[..., :half, :]
    grid[..., size - half :, : half + 1] = band[..., half:, :]
    return grid


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
    default_lr = DEFAULT_LR["fourier"]

    def __init__(
        self, n: int, size: int, *, seeds: Sequence[int] | None = None, decay: float = 1.5, device: torch.device | str = "cpu",
        render_size: int | None = None,
    ) -> None:
        super().__init__(n, size, device, render_size=render_size)
        seeds = list(seeds) if seeds is not None else [0] * n
        self.register_buffer("scale", fourier_scale(size, decay).to(self.device))
        self.spectrum = nn.Parameter(_randn((3, size, size // 2 + 1, 2), seeds, self.device))

    def forward(self) -> torch.Tensor:
        side = self._side()
        spec = standardize(self.spectrum)
        scale = low_band(self.scale, side)
        spectrum = torch.complex(low_band(spec[..., 0], side) * scale, low_band(spec[..., 1], side) * scale)
        x = torch.fft.irfft2(spectrum, s=(side, side))
        return torch.sigmoid(standardized_colours(x))


class PixelImage(ImageParam):
    """Free pixels: sigmoid(p), p init N(0, 0.01) (grey). Adam-style lr 0.05."""

    name = "pixel"
    default_lr = DEFAULT_LR["pixel"]

    def __init__(self, n: int, size: int, *, seeds: Sequence[int] | None = None, device: torch.device | str = "cpu") -> None:
        super().__init__(n, size, device)
        seeds = list(seeds) if seeds is not None else [0] * n
        self.pixels = nn.Parameter(_randn((3, size, size), seeds, self.device) * 0.01)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.pixels)


PARAMETRIZATIONS: dict[str, type[ImageParam]] = {"maco": MacoImage, "fourier": FourierImage, "pixel": PixelImage}


def make_param(
    method: str, n: int, size: int, *, seeds: Sequence[int], spectrum: str | None = None, device: torch.device | str = "cpu",
    render_size: int | None = None,
) -> ImageParam:
    """Build the parametrization of a method name ('maco', 'fourier', 'pixel'); `render_size`:
    the side the spectral ones render at while training (None: the full `size`)."""
    if method == "maco":
        return MacoImage(n, size, seeds=seeds, spectrum=spectrum, device=device, render_size=render_size)
    if method == "fourier":
        return FourierImage(n, size, seeds=seeds, device=device, render_size=render_size)
    if method == "pixel":
        return PixelImage(n, size, seeds=seeds, device=device)
    raise ValueError(f"unknown parametrization {method!r}")


# ---------------------------------------------------------------------------- started from images
def center_mask(size: int, std: float, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """(1, 1, S, S) Gaussian centred on the canvas, std a fraction of the side, max 1."""
    r = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size - 0.5
    g = torch.exp(-0.5 * (r / std) ** 2)
    return (g[:, None] * g[None, :])[None, None]


def _grad_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The same values, with the gradient flowing back to the parameters multiplied by `mask`."""
    if mask is None:
        return x
    return x.detach() + (x - x.detach()) * mask


def _logit(x01: torch.Tensor, eps: float = 0.02) -> torch.Tensor:
    x = x01.clamp(eps, 1 - eps)
    return torch.log(x) - torch.log1p(-x)


class ImageMaco(ImageParam):
    """MACO started from images: the phase is initialised with the phase of each image's spectrum
    (logit pixels, decorrelated colours, as MACO's forward pass inverts them) and the magnitude is
    the fixed natural-image spectrum.

    Why the phase: MACO only optimizes the phase, and the phase is what carries an image's layout
    (edges, where the object is; Oppenheim & Lim 1981), so the start keeps the facet's composition
    while the magnitude stays natural. Unlike `MacoImage` the phase is used as is (standardizing it
    would rescale the angles and scramble the start), so the learning rate is in radians: 0.2 keeps
    the start recognisable over a few hundred steps (0.3 for the dual objective, whose distance
    term holds the image near its cluster).
    """

    name = "maco"
    default_lr = IMAGESET_LR[("facets", "maco")]

    def __init__(
        self,
        init01: torch.Tensor,
        *,
        spectrum: str | None = None,
        grad_mask: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        n, _, size, size_w = init01.shape
        if size != size_w:
            raise ValueError("ImageMaco needs square start images")
        super().__init__(n, size, device)
        self.register_buffer("magnitude", load_spectrum(spectrum, size=size).to(self.device, torch.float32))
        z = decorrelate(_logit(init01.to(self.device).float()))
        self.phase = nn.Parameter(torch.angle(torch.fft.rfft2(z)).float())
        self.register_buffer("grad_mask", grad_mask.to(self.device) if grad_mask is not None else None)

    def forward(self) -> torch.Tensor:
        spectrum = torch.polar(self.magnitude.expand_as(self.phase), self.phase)
        x = torch.fft.irfft2(spectrum, s=(self.size, self.size))
        return _grad_mask(torch.sigmoid(standardized_colours(x)), self.grad_mask if self.training else None)


class ImagePixels(ImageParam):
    """Free pixels through a sigmoid, started from images (the authors' mean-image start)."""

    name = "pixel"
    default_lr = IMAGESET_LR[("facets", "pixel")]

    def __init__(self, init01: torch.Tensor, *, grad_mask: torch.Tensor | None = None, device: torch.device | str = "cpu") -> None:
        n, _, size, _ = init01.shape
        super().__init__(n, size, device)
        self.pixels = nn.Parameter(_logit(init01.to(self.device).float()))
        self.register_buffer("grad_mask", grad_mask.to(self.device) if grad_mask is not None else None)

    def forward(self) -> torch.Tensor:
        return _grad_mask(torch.sigmoid(self.pixels), self.grad_mask if self.training else None)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (reflect padding) of (N, C, H, W)."""
    if sigma < 0.05:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class PaperPixels(ImageParam):
    """The Mind's Eye recipe (simplified): raw pixels in [0, 1] started from the weighted mean
    image; each training forward pass clips them, every `blur_every` steps blends a Gaussian blur
    in under the centre mask, and returns them with a centre-weighted gradient. The schedules run
    linearly over `steps` forward passes (one per loop step)."""

    name = "pixel"
    default_lr = IMAGESET_LR[("dual", "paper")]

    def __init__(
        self,
        init01: torch.Tensor,
        *,
        steps: int,
        mask_std: tuple[float, float] = (0.137, 0.111),
        blur: tuple[float, float] = (0.9, 0.2),
        blur_every: int = 10,
        device: torch.device | str = "cpu",
    ) -> None:
        n, _, size, _ = init01.shape
        super().__init__(n, size, device)
        self.pixels = nn.Parameter(init01.to(self.device).float().clone())
        self.steps, self.mask_std, self.blur, self.blur_every = max(1, steps), mask_std, blur, blur_every
        self._step = 0

    def _at(self, pair: tuple[float, float]) -> float:
        t = min(self._step, self.steps - 1) / max(self.steps - 1, 1)
        return pair[0] + (pair[1] - pair[0]) * t

    def forward(self) -> torch.Tensor:
        if not self.training:
            return self.pixels.clamp(0, 1)
        mask = center_mask(self.size, self._at(self.mask_std), device=self.pixels.device)
        mask = (mask - mask.min()) / (mask.max() - mask.min()).clamp_min(1e-12)  # min-max, as coded
        with torch.no_grad():
            self.pixels.clamp_(0, 1)
            if self._step > 0 and self._step % self.blur_every == 0:
                sigma = self._at(self.blur) * self.size / 512
                self.pixels.copy_(gaussian_blur(self.pixels, sigma) * mask + self.pixels * (1 - mask))
        self._step += 1
        return _grad_mask(self.pixels * 1.0, mask)


__all__ = ["ImageParam", "MacoImage", "FourierImage", "PixelImage", "standardize", "fourier_scale", "make_param", "ImageMaco", "ImagePixels", "PaperPixels", "center_mask", "gaussian_blur"]
