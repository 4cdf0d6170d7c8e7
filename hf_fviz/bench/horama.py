"""horama (the MACO authors' PyTorch code) as the benchmarks' reference arm.

horama downloads its magnitude spectrum at run time; `horama_offline()` points it at our shipped
spectrum (the same (3, 512, 257) layout) and silences its progress bar. `load_pair` loads one
network both ways: as hf_fviz loads it (batch norm folded) and as a horama user has it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import MissingDependency

@contextlib.contextmanager
def horama_offline(spectrum: str | os.PathLike[str] | None = None) -> Iterator[Any]:
    """Make `horama.maco` run with no network and no progress bar.

    horama loads `MACO_SPECTRUM_FILENAME` (relative to the working directory) and downloads it
    only when that file is missing; pointing the name at our spectrum file (same (3, 512, 257)
    rfft2 layout) makes it load ours, which it then resizes to its canvas itself.
    """
    try:
        import horama.maco_fv as maco_fv
    except ImportError as err:
        raise MissingDependency(f"the comparison needs horama: pip install 'horama==0.3.0' ({err})") from None
    from ..engine.spectrum import DEFAULT_SPECTRUM

    saved = (maco_fv.MACO_SPECTRUM_FILENAME, maco_fv.tqdm)
    maco_fv.MACO_SPECTRUM_FILENAME = os.fspath(spectrum or DEFAULT_SPECTRUM)
    maco_fv.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield maco_fv
    finally:
        maco_fv.MACO_SPECTRUM_FILENAME, maco_fv.tqdm = saved


@dataclass(frozen=True)
class HoramaSettings:
    """horama `maco()` defaults (v0.3.0), overridable for small runs."""

    size: int = 1280
    crops: int = 6
    lr: float = 1.0
    noise: float = 0.05
    values_range: tuple[float, float] = (-2.5, 2.5)
    box_size: tuple[float, float] = (0.20, 0.25)


def horama_objective(module: nn.Module, layer: str, unit: int, *, prefix_tokens: int = 0) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[], None]]:
    """The objective a horama user writes: the whole model runs; a forward hook reads the layer.

    Returns (objective, remove_hook). Conv layers: channel mean over space; token layers: channel
    mean over patch tokens (prefix tokens excluded); logits: the class logit; all averaged over crops.
    """
    if layer == "logits":
        return (lambda crops: module(crops)[:, unit].mean()), (lambda: None)
    seen: dict[str, torch.Tensor] = {}
    handle = module.get_submodule(layer).register_forward_hook(lambda _m, _i, out: seen.__setitem__("act", out))

    def objective(crops: torch.Tensor) -> torch.Tensor:
        module(crops)
        act = seen.pop("act")
        if act.ndim == 4:
            return act[:, unit].mean()
        return act[:, prefix_tokens:, unit].mean()

    return objective, handle.remove


def run_horama(
    objective: Callable[[torch.Tensor], torch.Tensor],
    *,
    steps: int,
    settings: HoramaSettings = HoramaSettings(),
    input_size: int = 224,
    seed: int = 0,
    on_call: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One `horama.maco` run on the CPU; `on_call()` is called at every objective evaluation
    (once per step). Returns horama's (image in model input space (3, S, S), transparency)."""

    def wrapped(crops: torch.Tensor) -> torch.Tensor:
        if on_call is not None:
            on_call()
        return objective(crops)

    with horama_offline() as maco_fv:
        torch.manual_seed(seed)  # horama draws its phase and crops from the global generator
        image, alpha = maco_fv.maco(
            wrapped,
            total_steps=steps,
            learning_rate=settings.lr,
            image_size=settings.size,
            model_input_size=input_size,
            noise=settings.noise,
            values_range=settings.values_range,
            crops_per_iteration=settings.crops,
            box_size=settings.box_size,
            device="cpu",
        )
    return image.detach(), alpha.detach()



@dataclass
class LoadedPair:
    """The same network twice: as hf_fviz loads it (batch norm folded) and as a horama user has
    it (the library's own eval-mode module, frozen)."""

    vision_model: Any
    horama_module: nn.Module | None


def _random_timm(arch: str, *, with_horama: bool) -> LoadedPair:
    import timm

    from ..hub.timm_models import wrap_timm

    torch.manual_seed(0)
    ours = timm.create_model(arch, pretrained=False)
    vm = wrap_timm(ours, model_id=f"random:{arch}", revision=None, device=torch.device("cpu"))
    theirs = None
    if with_horama:
        torch.manual_seed(0)
        theirs = timm.create_model(arch, pretrained=False).eval().requires_grad_(False)
    return LoadedPair(vm, theirs)


def load_pair(model_id: str, *, with_horama: bool = True, with_ours: bool = True) -> LoadedPair:
    """Load `model_id` for both libraries. `random:ARCH` builds a timm architecture with random
    weights (speed only)."""
    if model_id.startswith("random:"):
        return _random_timm(model_id.split(":", 1)[1], with_horama=with_horama)
    from ..hub import load_model
    from ..hub.resolve import resolve

    vm = load_model(model_id, device="cpu")
    theirs: nn.Module | None = None
    if with_horama:
        found = resolve(model_id)
        if found.library == "timm":
            import timm

            theirs = timm.create_model(f"local-dir:{found.folder}", pretrained=True).eval().requires_grad_(False)
        else:  # transformers: no batch norm to speak of; the same module, unwrapped to logits
            theirs = _LogitsModule(vm)
    return LoadedPair(vm if with_ours else None, theirs)


class _LogitsModule(nn.Module):
    def __init__(self, vm: Any) -> None:
        super().__init__()
        self.inner = vm.module
        self.logits_fn = vm.logits_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_fn(self.inner(x))


def rgb_uint8_from_model_space(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A horama image (3, S, S) in the model's normalized space -> displayed RGB uint8 (S, S, 3),
    through the same display step as ours (de-normalize, percentile clip, min-max)."""
    from ..output.render import display_image, to_uint8

    x01 = image.float() * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return to_uint8(display_image(x01.permute(1, 2, 0).numpy()))

