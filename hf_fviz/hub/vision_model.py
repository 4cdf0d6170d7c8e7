"""VisionModel: the one interface the engine sees, whatever library a model came from.

An adapter (timm, transformers) describes its model as a list of `LayerSpec`s: which module to
hook and how to turn that module's raw output into the canonical layout of its `Layer.kind`
(conv: N,C,H,W; tokens: N,T,C; logits: N,K). Everything else (early exit, hook hygiene, layer
lookup with suggestions, class-name lookup) lives here once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ..errors import NoTextTower, UnitOutOfRange, UnknownClass, UnknownLayer, suggest

LayerKind = Literal["conv", "tokens", "logits"]
LOGITS = "logits"
EMBEDDING = "embedding"  # image-text models: the image embedding, where texts are compared


@dataclass(frozen=True)
class Layer:
    """One entry of a model's layer catalogue.

    `shape` is the per-image output shape at the model's input size in the canonical layout:
    (C, H, W) for conv, (T, C) for tokens, (K,) for logits. `units` is C (or K).
    For token layers, `prefix_tokens` (CLS, distillation, registers) come first and the remaining
    tokens form the patch `grid` (rows, cols).
    """

    name: str
    kind: LayerKind
    units: int
    shape: tuple[int, ...]
    prefix_tokens: int = 0
    grid: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "units": self.units, "shape": list(self.shape)}
        if self.kind == "tokens":
            out["prefix_tokens"] = self.prefix_tokens
            out["grid"] = list(self.grid) if self.grid else None
        return out


def first_tensor(output: Any) -> torch.Tensor:
    """The main tensor of a module output (a tensor, a tuple whose first item is one, or a ModelOutput)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):  # transformers ModelOutput is an OrderedDict
        output = list(output.values())
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find a tensor in module output of type {type(output).__name__}")


def nhwc_to_nchw(t: torch.Tensor) -> torch.Tensor:
    """Channels-last maps (Swin, ConvNeXt blocks in timm's NHWC mode) in the canonical N, C, H, W."""
    return t.permute(0, 3, 1, 2)


_INPUT_HW = threading.local()


def set_input_hw(hw: Sequence[int]) -> None:
    """Remember the spatial size of the batch this thread runs: a layer whose tokens are laid out
    on a map (Swin, PVT) needs the grid of the actual input, which may differ from `input_size`."""
    _INPUT_HW.value = (int(hw[0]), int(hw[1]))


def input_hw() -> tuple[int, int]:
    hw = getattr(_INPUT_HW, "value", None)
    if hw is None:
        raise RuntimeError("a token-map layer was read outside VisionModel.activations")
    return hw


@dataclass
class LayerSpec:
    """How to read one layer: the module to hook (None for the pseudo-layer `logits`) and a
    function mapping the module's raw output (or its positional inputs, with `on_input`) to the
    canonical layout. `kind`, `prefix_tokens` and `grid` describe the result; units and shape are
    measured by a probe forward pass."""

    name: str
    module_path: str | None
    kind: LayerKind
    read: Callable[[Any], torch.Tensor] = first_tensor
    prefix_tokens: int = 0
    grid: tuple[int, int] | None = None
    on_input: bool = False

    def attach(self, module: nn.Module, fn: Callable[[torch.Tensor], None]) -> torch.utils.hooks.RemovableHandle:
        """Register a hook on `module` that calls `fn` with this layer's canonical tensor."""
        if self.on_input:
            return module.register_forward_pre_hook(lambda _m, inputs: fn(self.read(inputs)))
        return module.register_forward_hook(lambda _m, _i, output: fn(self.read(output)))


class _StopForward(Exception):
    """Raised by the capture hook to end the forward pass right after the target layer."""


@dataclass
class VisionModel:
    """A hub vision model made hookable, with its own preprocessing, layers and labels.

    `module` takes a normalized batch (N, 3, H, W) and returns the model's usual output;
    `logits_fn` maps that output to (N, K) class logits (None for backbones without a head).
    Image-text models (CLIP, SigLIP, OpenCLIP) also carry `text_encoder` (texts -> their embeddings
    from the model's own tokenizer and text tower) and `embedding_layer`, the layer holding the
    image embedding in the same space; both None for vision-only models.
    """

    id: str
    module: nn.Module
    specs: Sequence[LayerSpec]
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    library: Literal["timm", "transformers", "open_clip"]
    family: Literal["cnn", "vit"]
    revision: str | None = None
    labels: list[str] | None = None
    label_aliases: list[list[str]] | None = None
    logits_fn: Callable[[Any], torch.Tensor] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    fold_bn: bool = True
    folded_norms: int = 0
    text_encoder: Callable[[list[str]], torch.Tensor] | None = None
    embedding_layer: str | None = None
    _layers: list[Layer] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        if self.fold_bn:
            from .fuse import fold_batchnorm

            example = torch.randn(1, 3, *self.input_size, generator=torch.Generator().manual_seed(0)).to(self.device)
            self.module, self.folded_norms = fold_batchnorm(self.module, example)
        if self.family == "cnn":
            # oneDNN / cuDNN run NHWC convolutions (depthwise ones especially) much faster; inputs
            # need no conversion, the kernel follows the weight layout. Measured by `bench speed`.
            self.module.to(memory_format=torch.channels_last)
        self._spec_by_name = {s.name: s for s in self.specs}
        self._modules = dict(self.module.named_modules())
        missing = [s.module_path for s in self.specs if s.module_path is not None and s.module_path not in self._modules]
        if missing:
            raise RuntimeError(f"adapter bug: modules not found in {self.id}: {missing[:5]}")
        self._mean_t = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std_t = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        if not self._layers:
            self._layers = self._probe_layers()

    # ------------------------------------------------------------------ catalogue
    def layers(self) -> list[Layer]:
        """The ordered layer catalogue (input to output, `logits` last where there is a head)."""
        return list(self._layers)

    def layer(self, name: str) -> Layer:
        """Look a layer up by name; raises `UnknownLayer` with up to 3 close names."""
        for layer in self._layers:
            if layer.name == name:
                return layer
        names = [layer.name for layer in self._layers]
        hint = suggest(name, names)
        if not hint:
            hint = f" Run `hf-fviz layers {self.id}` to list the {len(names)} layers."
        raise UnknownLayer(f"unknown layer '{name}' for {self.id}.{hint}")

    @property
    def default_layer(self) -> str:
        return LOGITS if self.has_head else self._layers[-1].name

    @property
    def has_head(self) -> bool:
        return self.logits_fn is not None

    def check_units(self, layer: str | Layer, units: Sequence[int]) -> list[int]:
        """Validate unit indices against a layer; raises `UnitOutOfRange` with the valid range."""
        info = layer if isinstance(layer, Layer) else self.layer(layer)
        out = []
        for u in units:
            if not isinstance(u, int) or isinstance(u, bool) or not 0 <= u < info.units:
                raise UnitOutOfRange(
                    f"unit {u} is out of range for layer '{info.name}' of {self.id}: valid units are 0..{info.units - 1}"
                )
            out.append(u)
        return out

    def class_index(self, name_or_index: str | int) -> int:
        """Map a class name (case-insensitive, any synonym) or an index to a class index."""
        if not self.labels:
            raise UnknownClass(f"{self.id} has no class labels: pick units of a layer instead of classes")
        if isinstance(name_or_index, int) or re.fullmatch(r"\s*\d+\s*", str(name_or_index)):
            idx = int(name_or_index)
            return self.check_units(LOGITS, [idx])[0] if self.has_head else idx
        key = str(name_or_index).strip().lower()
        aliases = self.label_aliases or [[label] for label in self.labels]
        for i, names in enumerate(aliases):
            if any(key == n.lower() for n in names):
                return i
        every = [n for names in aliases for n in names]
        hint = suggest(key, [n.lower() for n in every]) or " Give a class name from the model's labels or an index."
        raise UnknownClass(f"unknown class '{name_or_index}' for {self.id}.{hint}")

    def label(self, unit: int, layer: str = LOGITS) -> str:
        """A human caption for a unit: its class name for logits, else `layer:unit`."""
        if layer == LOGITS and self.labels and 0 <= unit < len(self.labels):
            return self.labels[unit]
        return f"{layer}:{unit}"

    # ------------------------------------------------------------------ running
    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """Map images in [0, 1] to the model's input space with its own mean and std."""
        mean = self._mean_t.to(device=x01.device, dtype=x01.dtype)
        std = self._std_t.to(device=x01.device, dtype=x01.dtype)
        return (x01 - mean) / std

    def activations(self, x: torch.Tensor, layer: str | Layer) -> torch.Tensor:
        """Run the model on a normalized batch and return `layer`'s output in canonical layout,
        stopping the forward pass right after that layer."""
        name = layer.name if isinstance(layer, Layer) else layer
        if name == LOGITS:
            if self.logits_fn is None:
                self.layer(LOGITS)  # raises UnknownLayer with suggestions
            return self.logits_fn(self.module(x))
        spec = self._spec_by_name.get(name)
        if spec is None:
            self.layer(name)  # raises UnknownLayer
            raise AssertionError("unreachable")
        captured: list[torch.Tensor] = []
        owner = threading.get_ident()

        def capture(t: torch.Tensor) -> None:
            # The hook sits on a module shared by every thread: a forward pass run by another
            # thread at the same time (a Space serving two visitors) passes through untouched.
            if threading.get_ident() != owner:
                return
            # Copy what we read: an in-place op later in the graph must not change it.
            captured.append(t.clone())
            raise _StopForward

        handle = spec.attach(self._modules[spec.module_path], capture)
        set_input_hw(x.shape[-2:])
        try:
            self.module(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"adapter bug: layer '{name}' of {self.id} was never reached in the forward pass")
        return captured[0]

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), D) float32 CPU embeddings of texts from the model's own text tower, computed
        without gradients; raises `NoTextTower` for models without one."""
        if self.text_encoder is None or self.embedding_layer is None:
            raise NoTextTower(
                f"{self.id} has no text tower: text objectives need an image-text model "
                "(OpenCLIP, or a transformers CLIP / SigLIP / MetaCLIP repo)"
            )
        with torch.no_grad():
            return self.text_encoder([str(t) for t in texts]).detach().float().cpu()

    def to(self, device: str | torch.device) -> VisionModel:
        self.device = torch.device(device)
        self.module.to(self.device)
        return self

    # ------------------------------------------------------------------ probing
    def _probe_layers(self) -> list[Layer]:
        """One no-grad forward pass at the input size, with a hook on every layer, to measure
        each layer's canonical shape."""
        shapes: dict[str, tuple[int, ...]] = {}
        handles = []
        for spec in self.specs:
            if spec.module_path is None:
                continue

            def record(t: torch.Tensor, name: str = spec.name) -> None:
                shapes.setdefault(name, tuple(t.shape[1:]))

            handles.append(spec.attach(self._modules[spec.module_path], record))
        h, w = self.input_size
        x = torch.zeros(1, 3, h, w, device=self.device)
        set_input_hw((h, w))
        try:
            with torch.no_grad():
                out = self.module(x)
                if self.logits_fn is not None:
                    shapes[LOGITS] = tuple(self.logits_fn(out).shape[1:])
        finally:
            for handle in handles:
                handle.remove()
        layers = []
        for spec in self.specs:
            if spec.name not in shapes:
                continue  # module not used on this path (e.g. an unused head)
            shape = shapes[spec.name]
            units = shape[0] if spec.kind in ("conv", "logits") else shape[-1]
            grid = spec.grid
            if spec.kind == "tokens" and grid is None:
                n = shape[0] - spec.prefix_tokens
                side = int(round(n**0.5))
                grid = (side, side) if side * side == n else None
            layers.append(Layer(spec.name, spec.kind, units, shape, spec.prefix_tokens, grid))
        if self.logits_fn is not None and not any(s.name == LOGITS for s in self.specs):
            layers.append(Layer(LOGITS, "logits", shapes[LOGITS][0], shapes[LOGITS]))
        return layers
