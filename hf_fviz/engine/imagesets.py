"""The two image-set methods: dual-objective ("The Mind's Eye", Stergiou 2021) and multifaceted
feature visualization (Nguyen, Yosinski & Clune 2016). Both cluster a set of natural images in a
layer's feature space and make one image per cluster, through the one render loop of
`engine.optimize`.

    >>> import hf_fviz
    >>> model = hf_fviz.load_model("builtin:mobilenetv2")
    >>> dual = hf_fviz.dual_objective(model, layer="blocks.5", images="samples", k=4)
    >>> facets = hf_fviz.multifaceted(model, unit="tabby cat", images="photos/", k=4)

Clustering (shared): pooled activations (conv: spatial mean; tokens: mean over patch tokens,
prefix tokens excluded; logits: as is) -> PCA (torch SVD, at most 50 dims) -> k-means++ with a
seed (our own torch k-means: deterministic, no scikit-learn at run time). The authors' t-SNE step
before k-means is left out: t-SNE is slow, stochastic and does not preserve the distances k-means
relies on; k-means on the PCA scores is the standard replacement.

Dual-objective, as in the authors' `vis.py` with its quirks fixed (docs/ALGORITHMS.md §3):
per cluster, the `nearest` members closest to the centroid (the code takes the farthest), weights
softmax(-d / mean d) (the code's softmax(1/d) is scale-dependent), target ā = Σ w_j a_j, top-n
channels of that cluster's own ā (the code pushes every image on the union of all clusters'
channels), loss per image = w_d · mean_c ρ(u_c − t_c) − w_a · Σ_{c∈C_k} u_c t_c / Σ_{c∈C_k} t_c²,
with ρ(x) = √(x²+1) − 1 (Charbonnier, the defaults of the adaptive loss the code re-creates every
step) and u, t the activations divided by the set's RMS activation, so the two terms keep the
same balance on any layer of any model (the code's raw dot product swamps the distance term).
The L1 penalty on the penultimate conv input is left out. Recipes:
- `recipe="maco"` (default): MACO, the phase initialised from the cluster's weighted mean image
  (see `ImageMaco`), random crops, NAdam.
- `recipe="paper"`: free pixels initialised with the weighted mean image, SGD Nesterov (momentum
  0.9, kept across steps; lr linear lr → 0.16·lr as 0.5 → 0.08 in the code), centre-weighted
  gradient mask (Gaussian, std 0.137 → 0.111 of the side = the code's σ 420 → 340 at 512 px),
  Gaussian blur (σ 0.9 → 0.2 px at 512) blended in under the mask every 10 steps, one slightly
  smaller jittered window per step (the code re-draws a 512 window of a ×1.2 canvas). TV-Bregman
  denoising, brightness bumps and uint8 round trips are left out.

Multifaceted: rank the set by the unit's activation, keep the top images (`top`), embed them with
the penultimate layer (the last layer before `logits`, pooled), PCA, k-means into k facets, start
each facet from the mean of the `nearest` (15) images closest to its centroid, and optimize the
unit with a centre bias (crops centred on the canvas, centre-weighted gradient mask), one image per
facet. `param="maco"` (default) starts MACO from the mean image's phase; `param="pixel"` is the
authors' mean-image pixel start.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidSettings
from ..hub.vision_model import LOGITS, Layer, VisionModel
from ..images import ImageSet, ImagesSpec, load_images
from . import objectives as obj
from .methods import LIMITS, Visualization, alpha_from_transparency
from .optimize import LoopSettings, Progress, model_score, optimize
from .param import ImageParam, standardize
from .spectrum import decorrelate, load_spectrum, recorrelate
from .transforms import CropSettings, RandomCrops, resize_whole

RECIPES = ("maco", "paper")
DUAL_MACO_LR = 0.3  # phase lr (radians) of the dual-objective MACO recipe (measured: see quality_imagesets)
FACET_PARAMS = ("maco", "pixel")
DEFAULT_STEPS = 160
DEFAULT_SIZE = 256
DEFAULT_CROPS = 4
PCA_DIMS = 50


# ============================================================================ features
def pool(act: torch.Tensor, info: Layer) -> torch.Tensor:
    """Canonical activations -> one vector per row: conv spatial mean, patch-token mean, logits."""
    if info.kind == "conv":
        return act.float().mean(dim=(-2, -1))
    if info.kind == "tokens":
        return act[:, info.prefix_tokens :, :].float().mean(dim=1)
    return act.float()


@torch.no_grad()
def pooled_features(model: VisionModel, images01: torch.Tensor, layer: str, *, batch_size: int = 16) -> torch.Tensor:
    """(N, 3, H, W) images in [0, 1] -> (N, C) pooled activations of `layer`, on the CPU."""
    info = model.layer(layer)
    out = []
    for start in range(0, images01.shape[0], batch_size):
        x = model.normalize(images01[start : start + batch_size].to(model.device))
        out.append(pool(model.activations(x, layer), info).cpu())
    return torch.cat(out)


@torch.no_grad()
def unit_activations(model: VisionModel, images01: torch.Tensor, layer: str, unit: int, *, batch_size: int = 16) -> torch.Tensor:
    """The unit's default objective (channel mean / logit) for each image, (N,)."""
    info = {layer: model.layer(layer)}
    objective = obj.for_unit(layer, unit)
    out = []
    for start in range(0, images01.shape[0], batch_size):
        x = model.normalize(images01[start : start + batch_size].to(model.device))
        out.append(objective({layer: model.activations(x, layer)}, info).float().cpu())
    return torch.cat(out)


def penultimate_layer(model: VisionModel) -> Layer:
    """The layer that embeds images for facets: the last conv/tokens layer before the logits."""
    layers = [lay for lay in model.layers() if lay.kind != "logits"]
    if not layers:
        raise InvalidSettings(f"{model.id} has no conv or token layer to embed images with")
    return layers[-1]


# ============================================================================ clustering
@dataclass
class PCA:
    """Principal axes of a feature matrix; `transform` projects new rows."""

    mean: torch.Tensor
    components: torch.Tensor  # (r, D)
    explained: torch.Tensor  # (r,) explained variance ratio

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() - self.mean) @ self.components.T


def fit_pca(x: torch.Tensor, dims: int = PCA_DIMS) -> PCA:
    """PCA by SVD of the centred rows (float64); at most min(dims, N-1, D) components, each
    signed so that its largest entry is positive (a deterministic result)."""
    xd = x.double()
    mean = xd.mean(dim=0)
    centred = xd - mean
    r = max(1, min(dims, x.shape[0] - 1, x.shape[1]))
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    comps = vh[:r]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))
    comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
    var = s.pow(2)
    explained = var[:r] / var.sum().clamp_min(1e-12)
    return PCA(mean, comps, explained)


@dataclass
class KMeans:
    """k-means result: labels (N,), centroids (k, D), inertia (sum of squared distances)."""

    labels: torch.Tensor
    centroids: torch.Tensor
    inertia: float


def _plusplus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn with probability ∝ squared distance."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centres = [x[first]]
    d2 = (x - x[first]).pow(2).sum(dim=1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # fewer distinct points than k: any point not picked yet
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            idx = int(torch.multinomial((d2 / total).float(), 1, generator=gen))
        centres.append(x[idx])
        d2 = torch.minimum(d2, (x - x[idx]).pow(2).sum(dim=1))
    return torch.stack(centres)


def _fill_empty(x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Give every empty cluster the point farthest from its centroid (from a cluster of 2+)."""
    k = centroids.shape[0]
    labels = labels.clone()
    for c in range(k):  # k is small; runs only when a cluster is empty
        counts = torch.bincount(labels, minlength=k)
        if counts[c] > 0:
            continue
        d2 = (x - centroids[labels]).pow(2).sum(dim=1)
        d2[counts[labels] < 2] = -1
        j = int(d2.argmax())
        labels[j] = c
        centroids[c] = x[j]
    return labels


def kmeans(x: torch.Tensor, k: int, *, seed: int = 0, n_init: int = 8, max_iter: int = 100, tol: float = 1e-7) -> KMeans:
    """Lloyd's k-means with k-means++ seeding, best of `n_init` starts; every cluster non-empty."""
    n = x.shape[0]
    if not 1 <= k <= n:
        raise InvalidSettings(f"k must be in 1..{n} for {n} images, got {k}")
    x = x.double()
    gen = torch.Generator().manual_seed(int(seed))
    best: KMeans | None = None
    for _ in range(max(1, n_init)):
        centroids = _plusplus(x, k, gen)
        labels = torch.zeros(n, dtype=torch.long)
        for _ in range(max_iter):
            labels = torch.cdist(x, centroids).argmin(dim=1)
            labels = _fill_empty(x, labels, centroids)
            counts = torch.bincount(labels, minlength=k).clamp_min(1).unsqueeze(1).double()
            new = torch.zeros_like(centroids).index_add_(0, labels, x) / counts
            shift = float((new - centroids).pow(2).sum())
            centroids = new
            if shift <= tol:
                break
        labels = _fill_empty(x, torch.cdist(x, centroids).argmin(dim=1), centroids)
        counts = torch.bincount(labels, minlength=k).clamp_min(1).unsqueeze(1).double()
        centroids = torch.zeros_like(centroids).index_add_(0, labels, x) / counts
        inertia = float((x - centroids[labels]).pow(2).sum())
        if best is None or inertia < best.inertia - 1e-12:
            best = KMeans(labels, centroids, inertia)
    assert best is not None
    return best


@dataclass
class Clusters:
    """Images grouped by k-means on the PCA scores of their features."""

    labels: torch.Tensor  # (N,)
    embedding: torch.Tensor  # (N, r) PCA scores
    centroids: torch.Tensor  # (k, r)
    pca: PCA

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def members(self, c: int) -> torch.Tensor:
        return (self.labels == c).nonzero().flatten()

    def nearest(self, c: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (up to) m members closest to centroid c, closest first, with their distances."""
        idx = self.members(c)
        d = (self.embedding[idx] - self.centroids[c]).norm(dim=1)
        order = torch.argsort(d, stable=True)[:m]
        return idx[order], d[order]


def cluster(features: torch.Tensor, k: int, *, seed: int = 0, pca_dims: int = PCA_DIMS) -> Clusters:
    """PCA to at most `pca_dims`, then seeded k-means++ into k clusters."""
    pca = fit_pca(features, pca_dims)
    emb = pca.transform(features)
    km = kmeans(emb, k, seed=seed)
    return Clusters(km.labels, emb, km.centroids, pca)


# ============================================================================ parametrizations
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
    default_lr = 0.2

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
        return _grad_mask(torch.sigmoid(recorrelate(standardize(x))), self.grad_mask if self.training else None)


class ImagePixels(ImageParam):
    """Free pixels through a sigmoid, started from images (the authors' mean-image start)."""

    name = "pixel"
    default_lr = 0.05

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
    default_lr = 0.5

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


class _LinearSGD(torch.optim.SGD):
    """SGD whose learning rate falls linearly from `lr` to `end_lr` over `steps` steps."""

    def __init__(self, params: Sequence[torch.Tensor], *, lr: float, end_lr: float, steps: int) -> None:
        super().__init__(params, lr=lr, momentum=0.9, nesterov=True)
        self._lr0, self._lr1, self._steps, self._t = lr, end_lr, max(1, steps), 0

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        frac = min(self._t, self._steps - 1) / max(self._steps - 1, 1)
        for group in self.param_groups:
            group["lr"] = self._lr0 + (self._lr1 - self._lr0) * frac
        self._t += 1
        return super().step(closure)


@dataclass(frozen=True)
class PaperLoopSettings(LoopSettings):
    """The Mind's Eye optimizer: SGD Nesterov, lr falling linearly to `end_ratio` · lr."""

    optimizer: str = "sgd-nesterov"
    end_ratio: float = 0.16

    def make_optimizer(self, params: Sequence[torch.Tensor]) -> torch.optim.Optimizer:
        return _LinearSGD(params, lr=self.lr, end_lr=self.lr * self.end_ratio, steps=self.steps)


# ============================================================================ settings and results
@dataclass(frozen=True)
class DualSettings:
    """Everything that fixes a dual-objective run (with the model, layer and image set)."""

    recipe: str = "maco"
    k: int = 4
    steps: int = DEFAULT_STEPS
    size: int = DEFAULT_SIZE
    crops: int = DEFAULT_CROPS
    seed: int = 0
    lr: float = 0.3
    channels: int = 50
    nearest: int = 10
    distance_weight: float = 2.0
    activation_weight: float = 1.0
    crop_scale: tuple[float, float] = (1.0, 0.85)
    noise: float = 0.05
    spectrum: str | None = None

    def to_manifest(self) -> dict[str, Any]:
        out = asdict(self)
        out["crop_scale"] = list(self.crop_scale)
        return out


@dataclass(frozen=True)
class FacetSettings:
    """Everything that fixes a multifaceted run (with the model, layer, unit and image set)."""

    param: str = "maco"
    k: int = 4
    top: float = 0.5
    nearest: int = 15
    steps: int = DEFAULT_STEPS
    size: int = DEFAULT_SIZE
    crops: int = DEFAULT_CROPS
    seed: int = 0
    lr: float = 0.2
    center_bias: bool = True
    crop_scale: tuple[float, float] = (0.9, 0.5)
    noise: float = 0.05
    spectrum: str | None = None

    def to_manifest(self) -> dict[str, Any]:
        out = asdict(self)
        out["crop_scale"] = list(self.crop_scale)
        return out


def _check_common(*, k: int, steps: int, size: int, crops: int, lr: float | None, nearest: int) -> None:
    for name, value, (lo, hi) in (
        ("k", k, (1, 256)),
        ("steps", steps, LIMITS["steps"]),
        ("size", size, LIMITS["size"]),
        ("crops", crops, LIMITS["crops"]),
        ("nearest", nearest, (1, 10000)),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise InvalidSettings(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise InvalidSettings(f"lr must be a positive number, got {lr!r}")


def _model(model: VisionModel | str, device: str | torch.device | None) -> VisionModel:
    if isinstance(model, str):
        from ..hub import load_model

        return load_model(model, device=device or "auto")
    if device is not None:
        from ..hub import resolve_device

        model.to(resolve_device(device))
    return model


def _weights(d: torch.Tensor) -> torch.Tensor:
    """softmax(-d / mean d): closer members weigh more, independent of the distance scale."""
    scale = d.mean().clamp_min(1e-12)
    return torch.softmax(-d / scale, dim=0)


def _canvas(images01: torch.Tensor, size: int) -> torch.Tensor:
    """Start images (N, 3, h, w) at the model input size -> (N, 3, size, size) canvases."""
    if images01.shape[-2:] == (size, size):
        return images01
    return F.interpolate(images01, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _visualizations(result: Any, rows: Sequence[dict[str, Any]], *, method: str, settings: Any, model: VisionModel) -> list[Visualization]:
    images = result.images.permute(0, 2, 3, 1).numpy()
    trans = (result.transparency / 3.0).numpy()
    out = []
    for i, row in enumerate(rows):
        out.append(
            Visualization(
                image=np.ascontiguousarray(images[i], dtype=np.float32),
                alpha=alpha_from_transparency(trans[i]),
                transparency=trans[i],
                history=result.history[:, i].copy(),
                objective=float(result.final[i]),
                unit=row.pop("unit"),
                label=row.pop("label"),
                layer=row.pop("layer"),
                method=method,
                settings=settings,
                model_id=model.id,
                revision=model.revision,
                extra={"seconds": result.seconds, **row},
            )
        )
    return out


# ============================================================================ dual-objective
def charbonnier(x: torch.Tensor) -> torch.Tensor:
    """ρ(x) = √(x² + 1) − 1: Barron's adaptive loss at its defaults (α = 1, c = 1)."""
    return torch.sqrt(x * x + 1.0) - 1.0


@dataclass
class DualTargets:
    """Per-cluster targets in pooled feature space, divided by the set's RMS activation `scale`."""

    targets: torch.Tensor  # (k, C) standardized
    top: torch.Tensor  # (k, C) bool: each cluster's own top-n channels
    scale: float


def dual_terms(pooled: torch.Tensor, targets: torch.Tensor, top: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, activation) per row: mean Charbonnier distance to the row's target, and the
    dot product with the target on its top channels, 1.0 when the row equals the target."""
    u = pooled.float() / scale
    t = targets.to(u.device)
    mask = top.to(u.device).float()
    distance = charbonnier(u - t).mean(dim=1)
    activation = (u * t * mask).sum(dim=1) / (t * t * mask).sum(dim=1).clamp_min(1e-12)
    return distance, activation


def dual_score(
    model: VisionModel, layer: Layer, targets: DualTargets, *, crops: int, distance_weight: float, activation_weight: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Score for the render loop: crops grouped per image -> w_a·activation − w_d·distance, (N,)."""

    def score(x: torch.Tensor) -> torch.Tensor:
        n = targets.targets.shape[0]
        pooled = pool(model.activations(x, layer.name), layer)
        t = targets.targets.repeat_interleave(crops, dim=0)
        top = targets.top.repeat_interleave(crops, dim=0)
        distance, activation = dual_terms(pooled, t, top, targets.scale)
        return (activation_weight * activation - distance_weight * distance).view(n, crops).mean(dim=1)

    return score


def dual_objective(
    model: VisionModel | str,
    *,
    layer: str,
    images: ImagesSpec,
    k: int = 4,
    recipe: str = "maco",
    steps: int = DEFAULT_STEPS,
    size: int = DEFAULT_SIZE,
    crops: int = DEFAULT_CROPS,
    seed: int = 0,
    lr: float | None = None,
    channels: int = 50,
    nearest: int = 10,
    distance_weight: float = 2.0,
    activation_weight: float = 1.0,
    crop_scale: tuple[float, float] = (1.0, 0.85),
    noise: float = 0.05,
    spectrum: str | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
) -> list[Visualization]:
    """Class-agnostic visualization of what `layer` extracts from an image set: one image per
    cluster of the set, exciting the cluster's top channels while staying close to its pooled
    activations (The Mind's Eye, with the fixes listed in this module's docstring).

    Args:
        layer: a conv, tokens or logits layer of the model.
        images: "samples", a folder, files, an `ImageSet` or a float tensor (N, 3, H, W).
        k: clusters (one image each); the set needs at least k images.
        recipe: "maco" (MACO from the mean image's phase) or "paper" (pixels, SGD, blur, mask).
        channels: top channels per cluster for the activation term (at most half the layer).
        nearest: members closest to the centroid that make the target and start image.
        distance_weight, activation_weight: weights of the two terms.

    Each `Visualization.extra` holds `cluster`, `members` (names of the cluster's images),
    `nearest` (those used for the target), `top_channels`, `distances` (Euclidean, in
    standardized pooled space, from the final image to every cluster's target) and
    `init_distance` (the start image's distance to its own target).
    """
    if recipe not in RECIPES:
        raise InvalidSettings(f"unknown recipe '{recipe}': use one of {', '.join(RECIPES)}")
    _check_common(k=k, steps=steps, size=size, crops=crops, lr=lr, nearest=nearest)
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise InvalidSettings(f"channels must be a positive integer, got {channels!r}")
    for name, w in (("distance_weight", distance_weight), ("activation_weight", activation_weight)):
        if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
            raise InvalidSettings(f"{name} must be a number >= 0, got {w!r}")
    start = time.perf_counter()
    model = _model(model, device)
    info = model.layer(layer)
    imgs = load_images(images, model=model)
    imgs.require(k, what=f"dual-objective with k={k}")
    feats = pooled_features(model, imgs.float01(), layer)
    groups = cluster(feats, k, seed=seed)

    scale = float(feats.pow(2).mean().sqrt().clamp_min(1e-8))
    n_top = max(1, min(channels, feats.shape[1] // 2 if feats.shape[1] > 1 else 1))
    targets, inits, rows = [], [], []
    for c in range(k):
        idx, d = groups.nearest(c, nearest)
        w = _weights(d).float()
        targets.append((w[:, None] * feats[idx]).sum(dim=0))
        inits.append((w[:, None, None, None] * imgs.float01(idx)).sum(dim=0))
        rows.append(
            {
                "unit": None,
                "label": f"cluster {c}",
                "layer": layer,
                "cluster": c,
                "members": [imgs.names[int(i)] for i in groups.members(c)],
                "nearest": [imgs.names[int(i)] for i in idx],
                "weights": [round(float(v), 4) for v in w],
            }
        )
    target = torch.stack(targets) / scale
    top_idx = target.topk(n_top, dim=1).indices
    top = torch.zeros_like(target, dtype=torch.bool).scatter_(1, top_idx, True)
    dual_targets = DualTargets(target, top, scale)

    lr_used = float(lr) if lr is not None else (PaperPixels.default_lr if recipe == "paper" else DUAL_MACO_LR)
    settings = DualSettings(
        recipe, k, steps, size, crops, seed, lr_used, n_top, nearest, float(distance_weight), float(activation_weight),
        tuple(crop_scale), float(noise), spectrum,
    )
    start_images = _canvas(torch.stack(inits), size)
    if recipe == "paper":
        param: ImageParam = PaperPixels(start_images, steps=steps, device=model.device)
        crop_settings = CropSettings(crops=1, scale=(1 / 1.2, 1 / 1.2), scale_jitter=0.0, center_std=0.4 * 0.2 / 1.2, noise=0.0)
        loop: LoopSettings = PaperLoopSettings(steps=steps, lr=lr_used)
    else:
        param = ImageMaco(start_images, spectrum=spectrum, device=model.device)
        crop_settings = CropSettings(crops=crops, scale=tuple(crop_scale), noise=float(noise))
        loop = LoopSettings(steps=steps, lr=lr_used)
    transforms = RandomCrops(crop_settings, out_size=model.input_size, steps=steps, seed=seed, device=model.device)
    kwargs = dict(distance_weight=float(distance_weight), activation_weight=float(activation_weight))
    whole = lambda x: resize_whole(x, model.input_size)  # noqa: E731
    with torch.no_grad():
        param.eval()
        init_feats = pooled_features(model, whole(param()), layer)
    result = optimize(
        param,
        dual_score(model, info, dual_targets, crops=transforms.crops, **kwargs),
        transforms=transforms,
        normalize=model.normalize,
        settings=loop,
        final_score=dual_score(model, info, dual_targets, crops=1, **kwargs),
        final_transform=whole,
        progress=progress,
    )
    final_feats = pooled_features(model, whole(result.images.to(model.device)), layer)
    dist = torch.cdist(final_feats / scale, target)  # (k images, k targets)
    init_dist = torch.cdist(init_feats / scale, target).diagonal()
    for c, row in enumerate(rows):
        row["top_channels"] = top_idx[c].tolist()
        row["distances"] = [round(float(v), 5) for v in dist[c]]
        row["init_distance"] = round(float(init_dist[c]), 5)
    out = _visualizations(result, rows, method="dual", settings=settings, model=model)
    for v in out:
        v.extra["seconds"] = time.perf_counter() - start
        v.extra["chunk"] = 0
    return out


# ============================================================================ multifaceted
def _resolve_unit(model: VisionModel, layer: str | None, unit: int | str) -> tuple[str, int]:
    if isinstance(unit, str) and not unit.strip().lstrip("-").isdigit():
        if layer not in (None, LOGITS):
            raise InvalidSettings(f"a class name is a logit; drop --layer {layer} or give a unit index")
        if not model.has_head:
            model.layer(LOGITS)
        return LOGITS, model.class_index(unit)
    name = layer or model.default_layer
    return name, model.check_units(model.layer(name), [int(unit)])[0]


def _top_count(top: float, n: int, k: int) -> int:
    if isinstance(top, bool) or not isinstance(top, (int, float)) or not math.isfinite(top) or top <= 0:
        raise InvalidSettings(f"top must be a fraction in (0, 1] or a count >= 1, got {top!r}")
    count = math.ceil(top * n) if top <= 1 else int(top)
    return min(n, max(count, k, min(n, 2 * k)))


def multifaceted(
    model: VisionModel | str,
    *,
    unit: int | str,
    images: ImagesSpec,
    layer: str | None = None,
    k: int = 4,
    top: float = 0.5,
    nearest: int = 15,
    param: str = "maco",
    steps: int = DEFAULT_STEPS,
    size: int = DEFAULT_SIZE,
    crops: int = DEFAULT_CROPS,
    seed: int = 0,
    lr: float | None = None,
    center_bias: bool = True,
    crop_scale: tuple[float, float] = (0.9, 0.5),
    noise: float = 0.05,
    spectrum: str | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
) -> list[Visualization]:
    """Multifaceted feature visualization of one unit: k images, one per facet (cluster) of the
    images that excite the unit most (Nguyen et al. 2016).

    Args:
        unit: a unit index of `layer`, or a class name (implies `logits`).
        layer: conv, tokens or logits layer; default `logits` where the model has a head.
        images: "samples", a folder, files, an `ImageSet` or a float tensor.
        k: facets; the set needs at least k images.
        top: the images kept after ranking by the unit: a fraction (<= 1) or a count (at least k).
        nearest: images closest to each facet's centroid averaged into its start image (m = 15).
        param: "maco" (MACO from the mean image's phase) or "pixel" (the authors' pixel start).
        center_bias: crops centred on the canvas and a centre-weighted gradient (Nguyen's CBR idea).

    Each `Visualization.extra` holds `facet`, `members` (names), `nearest`, `member_activations`
    and `init_objective` (the unit's activation on the start image).
    """
    if param not in FACET_PARAMS:
        raise InvalidSettings(f"unknown parametrization '{param}': use one of {', '.join(FACET_PARAMS)}")
    _check_common(k=k, steps=steps, size=size, crops=crops, lr=lr, nearest=nearest)
    start = time.perf_counter()
    model = _model(model, device)
    layer_name, unit_idx = _resolve_unit(model, layer, unit)
    imgs = load_images(images, model=model)
    imgs.require(k, what=f"multifaceted visualization with k={k}")
    x01 = imgs.float01()
    ranking = unit_activations(model, x01, layer_name, unit_idx)
    kept = torch.argsort(ranking, descending=True, stable=True)[: _top_count(top, len(imgs), k)]
    embed_layer = penultimate_layer(model).name
    feats = pooled_features(model, x01[kept], embed_layer)
    groups = cluster(feats, k, seed=seed)

    inits, rows = [], []
    label = model.label(unit_idx, layer_name)
    for c in range(k):
        idx, _ = groups.nearest(c, nearest)
        inits.append(x01[kept[idx]].mean(dim=0))
        members = kept[groups.members(c)]
        rows.append(
            {
                "unit": unit_idx,
                "label": f"{label} · facet {c}",
                "layer": layer_name,
                "facet": c,
                "members": [imgs.names[int(i)] for i in members],
                "nearest": [imgs.names[int(i)] for i in kept[idx]],
                "member_activations": [round(float(ranking[int(i)]), 4) for i in members],
                "embedding_layer": embed_layer,
            }
        )
    lr_used = float(lr) if lr is not None else (ImageMaco.default_lr if param == "maco" else ImagePixels.default_lr)
    top_value = float(top)
    settings = FacetSettings(
        param, k, top_value, nearest, steps, size, crops, seed, lr_used, bool(center_bias), tuple(crop_scale), float(noise), spectrum
    )
    start_images = _canvas(torch.stack(inits), size)
    mask = center_mask(size, 0.35) if center_bias else None
    if param == "maco":
        image_param: ImageParam = ImageMaco(start_images, spectrum=spectrum, grad_mask=mask, device=model.device)
    else:
        image_param = ImagePixels(start_images, grad_mask=mask, device=model.device)
    crop_settings = CropSettings(crops=crops, scale=tuple(crop_scale), noise=float(noise), center_std=0.05 if center_bias else 0.15)
    transforms = RandomCrops(crop_settings, out_size=model.input_size, steps=steps, seed=seed, device=model.device)
    info = {lay.name: lay for lay in model.layers()}
    objective = obj.for_unit(layer_name, unit_idx)
    batch = obj.BatchObjective([objective] * k, info, crops=transforms.crops)
    whole_score = model_score(model, batch.with_crops(1), (layer_name,))
    whole = lambda x: resize_whole(x, model.input_size)  # noqa: E731
    with torch.no_grad():
        image_param.eval()
        init_objective = whole_score(whole(model.normalize(image_param()))).float().cpu()
    result = optimize(
        image_param,
        model_score(model, batch, (layer_name,)),
        transforms=transforms,
        normalize=model.normalize,
        settings=LoopSettings(steps=steps, lr=lr_used),
        final_score=whole_score,
        final_transform=whole,
        progress=progress,
    )
    for c, row in enumerate(rows):
        row["init_objective"] = round(float(init_objective[c]), 5)
    out = _visualizations(result, rows, method="facets", settings=settings, model=model)
    for v in out:
        v.extra["seconds"] = time.perf_counter() - start
        v.extra["chunk"] = 0
    return out


# ============================================================================ output folder
MANIFEST_EXTRA = ("cluster", "facet", "members", "nearest", "init_objective", "init_distance", "distances", "top_channels")


def item_stem(vis: Visualization, index: int) -> str:
    """File stem of one item: `cluster3` for dual, `285_facet2` for facets."""
    if "facet" in vis.extra:
        return f"{vis.unit}_facet{vis.extra['facet']}"
    if "cluster" in vis.extra:
        return f"cluster{vis.extra['cluster']}"
    return str(vis.unit) if vis.unit is not None else f"objective{index}"


def save(
    visualizations: Sequence[Visualization],
    out_dir: str,
    *,
    model: VisionModel | None = None,
    images: ImageSet | None = None,
    seconds: float | None = None,
) -> Any:
    """Write the output folder of the CLI contract (manifest.json, PNGs, grid.png) with, per item,
    its `members` (the input images of its cluster) and a distinct file per cluster/facet.

    Uses `render`'s image, grid and manifest helpers; items are renamed so that several facets of
    one unit never share a file.
    """
    import json
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from .. import render

    if not visualizations:
        raise ValueError("no visualizations to save")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        data = render.manifest(visualizations, model=model, seconds=seconds)
        for i, (vis, item) in enumerate(zip(visualizations, data["items"])):
            folder = render.safe_name(vis.layer)
            stem = render.safe_name(item_stem(vis, i))
            item["image"], item["rgba"] = f"{folder}/{stem}.png", f"{folder}/{stem}_rgba.png"
            (tmp / folder).mkdir(parents=True, exist_ok=True)
            render.rgb_image(vis).save(tmp / item["image"])
            render.rgba_image(vis).save(tmp / item["rgba"])
            for key in MANIFEST_EXTRA:
                if key in vis.extra:
                    item[key] = vis.extra[key]
        render.grid(visualizations).save(tmp / "grid.png")
        if images is not None:
            data["images"] = {"source": images.source, "count": len(images)}
            if "licences" in images.info:
                data["images"]["licences"] = images.info["licences"]
        (tmp / "manifest.json").write_text(json.dumps(data, indent=1) + "\n")
        if not out.exists():
            os.replace(tmp, out)
        else:
            files = sorted((p for p in tmp.rglob("*") if p.is_file()), key=lambda p: p.name == "manifest.json")
            for f in files:
                dst = out / f.relative_to(tmp)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "manifest.json"


__all__ = [
    "dual_objective",
    "multifaceted",
    "DualSettings",
    "FacetSettings",
    "ImageMaco",
    "ImagePixels",
    "PaperPixels",
    "cluster",
    "kmeans",
    "fit_pca",
    "pooled_features",
    "penultimate_layer",
    "save",
    "quality_imagesets",
    "ImagesetQuality",
]


# ============================================================================ measured quality
@dataclass
class ImagesetQuality:
    """`hf-fviz bench quality` figures for the image-set methods.

    facets: per class and method, the mean pairwise cosine distance between the k images in the
    judge's penultimate feature space (higher = more distinct), for facets (MACO and pixel starts)
    and for k plain MACO runs with different seeds. dual: per recipe, the nearest-cluster accuracy
    (the image's nearest cluster target, Euclidean in the layer's standardized pooled space, is its
    own), the mean distance to its own target and from its start image.
    """

    facets: list[dict[str, Any]] = field(default_factory=list)
    dual: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        lines = ["facet distinctness (mean pairwise cosine distance, judge features; higher = more distinct)"]
        lines.append(f"  {'class':<22} {'method':<16} {'distance':>9} {'objective':>10}")
        for r in self.facets:
            lines.append(f"  {r['class']:<22} {r['method']:<16} {r['distance']:>9.4f} {r['objective']:>10.2f}")
        lines.append("dual-objective (nearest-cluster accuracy in the layer's pooled space; chance = 1/k)")
        lines.append(f"  {'recipe':<8} {'layer':<10} {'k':>3} {'accuracy':>9} {'own dist':>9} {'start dist':>10} {'seconds':>8}")
        for r in self.dual:
            lines.append(
                f"  {r['recipe']:<8} {r['layer']:<10} {r['k']:>3} {r['accuracy']:>9.3f} {r['own_distance']:>9.2f} "
                f"{r['start_distance']:>10.2f} {r['seconds']:>8.1f}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"facets": self.facets, "dual": self.dual, "settings": self.settings}


def _judge_distance(judge: VisionModel, images: Sequence[np.ndarray]) -> float:
    """Mean pairwise cosine distance of images (H, W, 3) in the judge's penultimate pooled space."""
    x = torch.stack([torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1) for im in images]).float()
    x = F.interpolate(x, size=judge.input_size, mode="bilinear", align_corners=False, antialias=True)
    f = F.normalize(pooled_features(judge, x, penultimate_layer(judge).name).double(), dim=1)
    sim = f @ f.T
    n = f.shape[0]
    return float((1 - sim)[~torch.eye(n, dtype=torch.bool)].mean())


def quality_imagesets(
    *,
    model: VisionModel | str = "builtin:mobilenetv2",
    judge: VisionModel | str = "builtin:efficientnet-lite0",
    images: ImagesSpec = "samples",
    classes: Sequence[str] = ("tabby cat", "espresso"),
    k: int = 3,
    dual_layer: str = "blocks.5",
    dual_k: int = 3,
    steps: int = 64,
    size: int = 160,
    crops: int = 2,
    device: str | torch.device | None = "cpu",
    log: Callable[[str], None] | None = print,
) -> ImagesetQuality:
    """Measure facet distinctness (vs plain MACO seeds) and dual-objective cluster matching (MACO
    vs the paper recipe); prints the table through `log` and returns the figures. The judge
    (default EfficientNet-Lite0) is never used in the optimizations."""
    from .methods import visualize

    gen = _model(model, device)
    jdg = _model(judge, device)
    imgs = load_images(images, model=gen)
    report = ImagesetQuality(settings={"model": gen.id, "judge": jdg.id, "images": imgs.source, "k": k, "steps": steps,
                                       "size": size, "crops": crops, "classes": list(classes), "dual_layer": dual_layer})
    for name in classes:
        runs = {
            "facets (maco)": multifaceted(gen, unit=name, images=imgs, k=k, steps=steps, size=size, crops=crops, param="maco"),
            "facets (pixel)": multifaceted(gen, unit=name, images=imgs, k=k, steps=steps, size=size, crops=crops, param="pixel"),
            "maco seeds": [
                visualize(gen, classes=[name], steps=steps, size=size, crops=crops, seed=s)[0] for s in range(k)
            ],
        }
        for method, vis in runs.items():
            row = {"class": name, "method": method, "distance": _judge_distance(jdg, [v.image for v in vis]),
                   "objective": float(np.mean([v.objective for v in vis]))}
            report.facets.append(row)
            if log:
                log(f"facets {name} {method}: distance {row['distance']:.4f}, objective {row['objective']:.2f}")
    for recipe in RECIPES:
        t0 = time.perf_counter()
        vis = dual_objective(gen, layer=dual_layer, images=imgs, k=dual_k, steps=steps, size=size, crops=crops, recipe=recipe)
        own = [v.extra["distances"][v.extra["cluster"]] for v in vis]
        row = {
            "recipe": recipe, "layer": dual_layer, "k": dual_k,
            "accuracy": float(np.mean([int(np.argmin(v.extra["distances"])) == v.extra["cluster"] for v in vis])),
            "own_distance": float(np.mean(own)),
            "start_distance": float(np.mean([v.extra["init_distance"] for v in vis])),
            "seconds": time.perf_counter() - t0,
        }
        report.dual.append(row)
        if log:
            log(f"dual {recipe}: accuracy {row['accuracy']:.3f}, own distance {row['own_distance']:.2f}")
    if log:
        log(report.table())
    return report

