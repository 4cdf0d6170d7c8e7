"""The public Python API: keyword arguments -> checked settings -> `VisionModel` -> images -> engine.

    >>> import hf_fviz
    >>> vis = hf_fviz.visualize("builtin:mobilenetv2", classes=["goldfish", "espresso"])
    >>> hf_fviz.render.save(vis, "out")

Each function is a thin layer: it packs its keywords into the settings object of its method
(`hf_fviz.settings`, where every default and limit is defined and explained), checks it once,
turns the model into a `VisionModel` (`hub.as_vision_model`), loads the image set where the
method takes one (`hub.images.load_images`) and calls the engine. Faces that already hold a
settings object (the CLI, the Space, the webhook, atlas) call `run(model, settings, ...)`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import BadImageSet, InvalidSettings
from .hub import as_vision_model
from .hub.images import IMAGE_SUFFIXES, ImagesSpec, load_images, read_image
from .hub.vision_model import VisionModel
from .results import Visualization
from .settings import LIMITS, SPECTRUM_CROPS, SPECTRUM_SIZE, DualSettings, FacetSettings, ImageSetSettings, Settings, check_int
from .engine import objectives as obj
from .engine.optimize import Progress

_V, _D, _F = Settings(), DualSettings(), FacetSettings()  # the defaults below come from settings.py


def run(
    model: Any,
    settings: Settings,
    *,
    layer: str | None = None,
    units: Sequence[int] | None = None,
    classes: Sequence[str | int] | None = None,
    objectives: Sequence[obj.Objective] | None = None,
    unit: int | str | None = None,
    images: ImagesSpec | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
) -> list[Visualization]:
    """Run the method `settings` stands for: `Settings` -> `visualize` (layer, units / classes /
    objectives), `DualSettings` -> the dual objective (layer, images), `FacetSettings` ->
    multifaceted (layer, unit, images). Checks `settings` (once, here), then loads the model
    (`as_vision_model`: an id, a folder, a timm or transformers model or a VisionModel) and images."""
    settings.check()
    if isinstance(settings, ImageSetSettings):
        if images is None:
            raise InvalidSettings(f"{settings.method} needs images")
        vm = as_vision_model(model, device=device)
        if isinstance(settings, DualSettings):
            from .engine.dual import dual_objective as run_dual

            if layer is None:
                raise InvalidSettings("dual-objective needs a layer")
            vm.layer(layer)  # UnknownLayer before the images are loaded
            return run_dual(vm, layer, load_images(images, model=vm), settings, progress=progress)
        from .engine.facets import multifaceted as run_facets

        if unit is None:
            raise InvalidSettings("multifaceted needs a unit")
        return run_facets(vm, layer, unit, load_images(images, model=vm), settings, progress=progress)  # type: ignore[arg-type]
    from .engine.methods import objective_targets, unit_targets, visualize as run_visualize

    if objectives is not None and (units is not None or classes is not None):
        raise InvalidSettings("give objectives, or units/classes, not both")
    vm = as_vision_model(model, device=device)
    targets = objective_targets(vm, objectives) if objectives is not None else unit_targets(vm, layer, units, classes)
    return run_visualize(vm, targets, settings, progress=progress)


def visualize(
    model: VisionModel | str,
    *,
    layer: str | None = None,
    units: Sequence[int] | None = None,
    classes: Sequence[str | int] | None = None,
    objectives: Sequence[obj.Objective] | None = None,
    method: str = _V.method,
    steps: int = _V.steps,
    size: int = _V.size,
    crops: int = _V.crops,
    seed: int = _V.seed,
    lr: float | None = None,
    crop_scale: tuple[float, float] = _V.crop_scale,
    noise: float = _V.noise,
    spectrum: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
    max_seconds: float | None = None,
) -> list[Visualization]:
    """Visualize units of a layer, one image per unit.

    Args:
        model: a `VisionModel`, a model id (loaded with `load_model`), a timm or transformers model.
        layer: layer name (`hf-fviz layers MODEL`); default `logits` where the model has a head.
        units: unit indices (channels or classes); default the first 4.
        classes: class names (case-insensitive, any synonym) or indices; implies `logits`.
        objectives: custom `Objective`s instead of units (one image each), e.g. `objectives.text("a red apple")`
            on image-text models.
        method: 'maco' (phase only, natural magnitude), 'fourier' (Olah et al.) or 'pixel'.
        steps, size, crops: optimization steps, canvas side in pixels, crops per step.
        seed: fixes the result on one device (the same seed gives every unit the same start).
        lr: learning rate; default 0.3 for maco, 1.0 for fourier, 0.05 for pixel.
        crop_scale: mean crop side (fraction of the canvas) at the first and last step.
        noise: std of the noise added to each crop (model input space).
        spectrum: a .npy magnitude spectrum (`hf-fviz spectrum`) instead of the shipped one.
        batch_size: units optimized together per forward pass; None: on a CPU 4 units at the
            default crops (a power of two within 24 crops), elsewhere the fastest per unit,
            measured (`engine.chunking`).
        progress: `progress(step, total, info)`, steps counted over all chunks.
        device: 'auto', 'cpu', 'cuda' or None (the model's device; 'auto' for an id).
        max_seconds: stop at the first step boundary after this many seconds and return the
            images as they are; chunks not started by then are left out. Every returned
            visualization then has `extra['stopped_early']`, `extra['steps_done']` and
            `extra['units_skipped']`.

    Defaults, limits and why: `hf_fviz.settings`. Raises `InvalidSettings` for a setting out of
    range, and `ResourceLimit` before any step when one chunk would not fit in the free memory.
    """
    settings = Settings(method=method, steps=steps, size=size, crops=crops, seed=seed, lr=lr, crop_scale=crop_scale,
                        noise=noise, spectrum=spectrum, batch_size=batch_size, max_seconds=max_seconds)
    return run(model, settings, layer=layer, units=units, classes=classes, objectives=objectives, progress=progress,
               device=device)


def dual_objective(
    model: VisionModel | str,
    *,
    layer: str,
    images: ImagesSpec,
    k: int = _D.k,
    recipe: str = _D.recipe,
    steps: int = _D.steps,
    size: int = _D.size,
    crops: int = _D.crops,
    seed: int = _D.seed,
    lr: float | None = None,
    channels: int = _D.channels,
    nearest: int = _D.nearest,
    distance_weight: float = _D.distance_weight,
    activation_weight: float = _D.activation_weight,
    crop_scale: tuple[float, float] = _D.crop_scale,
    noise: float = _D.noise,
    spectrum: str | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
) -> list[Visualization]:
    """Class-agnostic visualization of what `layer` extracts from an image set: one image per
    cluster of the set, exciting the cluster's top channels while staying close to its pooled
    activations (The Mind's Eye; see `hf_fviz.engine.dual`).

    Args:
        layer: a conv, tokens or logits layer of the model.
        images: "samples", a folder, files, a hub dataset id, an `ImageSet` or a float tensor (N, 3, H, W).
        k: clusters (one image each); the set needs at least k images.
        recipe: "maco" (MACO from the mean image's phase) or "paper" (pixels, SGD, blur, mask).
        channels: top channels per cluster for the activation term (at most half the layer).
        nearest: members closest to the centroid that make the target and start image.
        distance_weight, activation_weight: weights of the two terms.
    """
    settings = DualSettings(recipe=recipe, k=k, steps=steps, size=size, crops=crops, seed=seed, lr=lr, channels=channels,
                            nearest=nearest, distance_weight=distance_weight, activation_weight=activation_weight,
                            crop_scale=crop_scale, noise=noise, spectrum=spectrum)
    return run(model, settings, layer=layer, images=images, progress=progress, device=device)


def multifaceted(
    model: VisionModel | str,
    *,
    unit: int | str,
    images: ImagesSpec,
    layer: str | None = None,
    k: int = _F.k,
    top: float = _F.top,
    nearest: int = _F.nearest,
    param: str = _F.param,
    steps: int = _F.steps,
    size: int = _F.size,
    crops: int = _F.crops,
    seed: int = _F.seed,
    lr: float | None = None,
    center_bias: bool = _F.center_bias,
    crop_scale: tuple[float, float] = _F.crop_scale,
    noise: float = _F.noise,
    spectrum: str | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
) -> list[Visualization]:
    """Multifaceted feature visualization of one unit: k images, one per facet (cluster) of the
    images that excite the unit most (Nguyen et al. 2016; see `hf_fviz.engine.facets`).

    Args:
        unit: a unit index of `layer`, or a class name (implies `logits`).
        layer: conv, tokens or logits layer; default `logits` where the model has a head.
        images: "samples", a folder, files, a hub dataset id, an `ImageSet` or a float tensor.
        k: facets; the set needs at least k images.
        top: the images kept after ranking by the unit: a fraction (<= 1) or a count (at least k).
        nearest: images closest to each facet's centroid averaged into its start image (m = 15).
        param: "maco" (MACO from the mean image's phase) or "pixel" (the authors' pixel start).
        center_bias: crops centred on the canvas and a centre-weighted gradient (Nguyen's CBR idea).
    """
    settings = FacetSettings(param=param, k=k, top=top, nearest=nearest, steps=steps, size=size, crops=crops, seed=seed,
                             lr=lr, center_bias=center_bias, crop_scale=crop_scale, noise=noise, spectrum=spectrum)
    return run(model, settings, layer=layer, unit=unit, images=images, progress=progress, device=device)


def build_spectrum(image_dir: str | os.PathLike[str], *, crops: int = SPECTRUM_CROPS, size: int = SPECTRUM_SIZE,
                   seed: int = 0) -> tuple[np.ndarray, Any]:
    """Build a MACO magnitude spectrum from every image in a folder (recursively); returns
    (array, `SpectrumProvenance`). Unreadable files are skipped (the provenance counts the rest)."""
    from .engine.spectrum import SpectrumProvenance, spectrum_from_images

    check_int("spectrum crops", crops, *LIMITS["spectrum_crops"])
    check_int("spectrum size", size, *LIMITS["spectrum_size"])

    root = Path(image_dir)
    if not root.is_dir():
        raise BadImageSet(f"{root} is not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    images = []
    for f in files:
        try:
            images.append(read_image(f))
        except (OSError, BadImageSet):
            continue  # unreadable file: skip, the count below says how many were used
    if not images:
        raise BadImageSet(f"no readable images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    spec = spectrum_from_images(images, crops=crops, size=size, seed=seed)
    prov = SpectrumProvenance(images=len(images), crops=crops, size=size, sources=(str(root),))
    return spec.numpy(), prov


__all__ = ["run", "visualize", "dual_objective", "multifaceted", "build_spectrum"]
