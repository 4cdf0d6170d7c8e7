"""OpenCLIP adapter: an OpenCLIP repo (`open_clip_config.json`) as a VisionModel with a text tower.

OpenCLIP repos carry no config that timm or transformers can read: open_clip itself builds the
model from `model_cfg`, so the towers are exactly the ones the authors trained (OpenAI-style ViT,
timm trunks such as ConvNeXt or SigLIP ViTs, ModifiedResNet). The image tower `model.visual` is
the VisionModel's module, registered as `visual` so layer names are the full model's module
paths; the text tower stays outside it and only serves `embed_text`.

Catalogue (input to output):
- OpenCLIP ViT: per block `visual.transformer.resblocks.i`, the MLP hidden after its activation
  (`...mlp.gelu`) and the block output, as tokens (class token first, then the patch grid);
- timm trunks (`visual.trunk`): token blocks (`blocks.i`, with timm's `num_prefix_tokens`) or the
  blocks of each stage (`stages.i.blocks.j`) as conv maps, each with its MLP hidden after the
  activation; other trunks: the stage outputs timm lists in `feature_info`;
- ModifiedResNet: each bottleneck of `visual.layer1..4`;
- `embedding`: the image embedding `visual(x)` (projected, not normalized), where texts compare.

Weights load from `open_clip_model.safetensors`; pickle weights only with `allow_pickle`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CorruptWeights, MissingDependency, ModelNotFound, NoTextTower, UnsafeWeights, UnsupportedArchitecture
from .vision_model import EMBEDDING, LayerSpec, VisionModel, first_tensor, nhwc_to_nchw

SAFE_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors")
PICKLE_WEIGHTS = ("open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")
INSTALL_HINT = "pip install 'hf-fviz[open_clip]'"


def import_open_clip(model_id: str = "this model") -> Any:
    """The `open_clip` module, or one clear line saying how to install it."""
    try:
        import open_clip
    except ImportError:
        raise MissingDependency(
            f"{model_id} is an OpenCLIP model and the open_clip package is not installed: {INSTALL_HINT}"
        ) from None
    return open_clip


class ImageTower(nn.Module):
    """OpenCLIP's `visual`, under the name it has in the full model; returns the image embedding."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return first_tensor(self.visual(x))  # (pooled, tokens) when a tower outputs tokens too


# ---------------------------------------------------------------------------------------- entry point
def load_open_clip(folder: Path, *, model_id: str, revision: str | None,
                   device: torch.device, allow_pickle: bool) -> VisionModel:
    """Build the model with open_clip from the local snapshot, load its weights, describe its image
    tower; the tokenizer is made on the first `embed_text` (a channel run needs none). open_clip
    reads `open_clip_config.json` from the folder itself (`local-dir:`), after hf_fviz resolved it."""
    open_clip = import_open_clip(model_id)
    folder = Path(folder)
    weights = _weights_file(folder, model_id, allow_pickle)
    model = _build(open_clip, folder, weights, model_id)
    visual = model.visual
    prep = open_clip.get_model_preprocess_cfg(model)
    size = prep.get("size", getattr(visual, "image_size", 224))
    input_size = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[-1]))
    mean, std = tuple(float(v) for v in prep["mean"]), tuple(float(v) for v in prep["std"])
    specs, family = image_specs(visual, input_size, model_id)
    specs.append(LayerSpec(EMBEDDING, "visual", "logits"))
    model.to(device)
    vm = VisionModel(
        id=model_id, module=ImageTower(visual), specs=specs, input_size=input_size,
        mean=mean, std=std, library="open_clip", family=family, revision=revision, device=device,  # type: ignore[arg-type]
        text_encoder=TextEncoder(open_clip, model, folder, model_id), embedding_layer=EMBEDDING,
    )
    model.visual = vm.module.visual  # the batch-norm-folded copy where one was made: one image tower in memory
    return vm


def _weights_file(folder: Path, model_id: str, allow_pickle: bool) -> Path:
    for name in SAFE_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    pickles = [folder / n for n in PICKLE_WEIGHTS if (folder / n).is_file()]
    if pickles and allow_pickle:
        return pickles[0]
    if pickles:
        raise UnsafeWeights(
            f"{model_id} has only pickle OpenCLIP weights ({pickles[0].name}), which can run code when loaded; "
            "pass --allow-pickle (allow_pickle=True) if you trust it"
        )
    raise ModelNotFound(
        f"{model_id} has no OpenCLIP safetensors weights ({SAFE_WEIGHTS[0]}); "
        "if it has only open_clip_pytorch_model.bin, pass --allow-pickle"
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """open_clip logs a warning for every model it builds without weights: we load them just after."""
    before = logging.root.manager.disable
    logging.disable(max(before, logging.WARNING))
    try:
        yield
    finally:
        logging.disable(before)


def _build(open_clip: Any, folder: Path, weights: Path, model_id: str) -> nn.Module:
    try:
        with _quiet():
            model = open_clip.create_model(f"local-dir:{folder}", load_weights=False, pretrained_image=False,
                                           pretrained_text=False)
    except (RuntimeError, ValueError, KeyError, TypeError, OSError, AssertionError) as err:
        raise UnsupportedArchitecture(
            f"{model_id}: open_clip cannot build the model in open_clip_config.json ({_first_line(err)})"
        ) from None
    try:
        open_clip.load_checkpoint(model, str(weights), strict=True, weights_only=True, device="cpu")
    except RuntimeError as err:
        raise CorruptWeights(f"{model_id}: {weights.name} does not match open_clip_config.json ({_first_line(err)})") from None
    except Exception as err:  # safetensors' own error types for damaged files
        if "safetensor" in type(err).__module__.lower() or "header" in str(err).lower():
            raise CorruptWeights(f"{model_id}: {weights.name} is corrupt or truncated ({_first_line(err)})") from None
        raise
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


# ---------------------------------------------------------------------------------------- text tower
class TextEncoder:
    """texts -> (N, D) embeddings from the model's own tokenizer and text tower, not normalized
    (the objective takes the cosine). The tokenizer is open_clip's choice for this repo (its
    `hf_tokenizer_name` files, else the CLIP BPE vocabulary that ships with open_clip)."""

    def __init__(self, open_clip: Any, model: nn.Module, folder: Path, model_id: str) -> None:
        self.open_clip, self.model, self.folder, self.model_id = open_clip, model, folder, model_id
        self._tokenizer: Callable[..., torch.Tensor] | None = None

    def tokenizer(self) -> Callable[..., torch.Tensor]:
        if self._tokenizer is None:
            try:
                with _quiet():
                    self._tokenizer = self.open_clip.get_tokenizer(f"local-dir:{self.folder}")
            except ImportError as err:
                raise MissingDependency(f"{self.model_id}: its tokenizer needs a package: {_first_line(err)}") from None
            except (OSError, ValueError, KeyError) as err:
                raise NoTextTower(f"{self.model_id}: cannot load its tokenizer ({_first_line(err)})") from None
        return self._tokenizer

    def __call__(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer()(texts)
        text_params = [p for n, p in self.model.named_parameters() if not n.startswith("visual.")]
        device = text_params[0].device if text_params else torch.device("cpu")
        with torch.no_grad():
            return self.model.encode_text(ids.to(device), normalize=False)


# ---------------------------------------------------------------------------------------- catalogue
def image_specs(visual: nn.Module, input_size: tuple[int, int], model_id: str) -> tuple[list[LayerSpec], str]:
    """The image tower's layers (module paths under `visual.`) and its family, by tower type."""
    if hasattr(visual, "transformer") and hasattr(getattr(visual, "transformer"), "resblocks"):
        return _vit_specs(visual), "vit"
    if hasattr(visual, "trunk"):
        return _timm_specs(visual, input_size)
    layers = [getattr(visual, f"layer{i}", None) for i in range(1, 5)]
    if all(isinstance(stage, nn.Sequential) for stage in layers):  # ModifiedResNet
        return [LayerSpec(f"visual.layer{i}.{j}", f"visual.layer{i}.{j}", "conv")
                for i, stage in enumerate(layers, 1) for j in range(len(stage))], "cnn"
    raise UnsupportedArchitecture(
        f"{model_id}: OpenCLIP image tower {type(visual).__name__} is not supported "
        "(supported: OpenCLIP ViT, timm trunks, ModifiedResNet)"
    )


def _batch_first(read_tbc: bool) -> Callable[[Any], torch.Tensor]:
    if not read_tbc:
        return first_tensor
    return lambda out: first_tensor(out).transpose(0, 1)  # (T, N, C) -> (N, T, C)


def _vit_specs(visual: nn.Module) -> list[LayerSpec]:
    """OpenAI-style ViT: class token plus the patch grid; the stack may run sequence-first."""
    grid = (int(visual.grid_size[0]), int(visual.grid_size[1]))
    prefix = int(visual.positional_embedding.shape[0]) - grid[0] * grid[1]
    read = _batch_first(not getattr(visual.transformer, "batch_first", True))
    specs = []
    for i, block in enumerate(visual.transformer.resblocks):
        path = f"visual.transformer.resblocks.{i}"
        mlp = getattr(block, "mlp", None)
        if mlp is not None and hasattr(mlp, "gelu"):
            specs.append(LayerSpec(f"{path}.mlp.gelu", f"{path}.mlp.gelu", "tokens", read=read,
                                   prefix_tokens=prefix, grid=grid))
        specs.append(LayerSpec(path, path, "tokens", read=read, prefix_tokens=prefix, grid=grid))
    return specs


def _mlp_act(block: nn.Module, path: str) -> tuple[str, bool] | None:
    """(path of the block's MLP activation, whether it runs channels-last) or None. timm MLPs keep
    `fc1` (or `fc1_g`/`fc1_x` for gated ones) and `act` as children; a Linear fc1 is channels-last."""
    mlp = getattr(block, "mlp", None)
    act = getattr(mlp, "act", None) if mlp is not None else None
    if not isinstance(act, nn.Module) or isinstance(act, nn.Identity):
        return None
    fc1 = getattr(mlp, "fc1", None) or getattr(mlp, "fc1_g", None)
    return f"{path}.mlp.act", not isinstance(fc1, nn.Conv2d)


def _timm_specs(visual: nn.Module, input_size: tuple[int, int]) -> tuple[list[LayerSpec], str]:
    trunk = visual.trunk
    blocks = getattr(trunk, "blocks", None)
    if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and hasattr(trunk, "num_prefix_tokens"):
        prefix = int(trunk.num_prefix_tokens)
        grid = tuple(int(g) for g in trunk.patch_embed.grid_size)
        specs = []
        for i, block in enumerate(blocks):
            path = f"visual.trunk.blocks.{i}"
            act = _mlp_act(block, path)
            if act is not None:
                specs.append(LayerSpec(act[0], act[0], "tokens", prefix_tokens=prefix, grid=grid))  # type: ignore[arg-type]
            specs.append(LayerSpec(path, path, "tokens", prefix_tokens=prefix, grid=grid))  # type: ignore[arg-type]
        return specs, "vit"
    channels = _stage_channels(trunk)
    candidates: list[tuple[str, bool | None]] = []  # (path, channels-last?) None = decide by probing
    stages = getattr(trunk, "stages", None)
    if isinstance(stages, (nn.Sequential, nn.ModuleList)) and all(hasattr(s, "blocks") for s in stages):
        for i, stage in enumerate(stages):
            for j, block in enumerate(stage.blocks):
                path = f"visual.trunk.stages.{i}.blocks.{j}"
                act = _mlp_act(block, path)
                if act is not None:
                    candidates.append(act)
                candidates.append((path, None))
    else:
        candidates = [(f"visual.trunk.{name}", None) for name in channels]
    if not candidates:
        raise UnsupportedArchitecture(f"OpenCLIP timm trunk {type(trunk).__name__}: no blocks or stages to hook")
    shapes = _probe(visual, [p for p, _ in candidates], input_size)
    specs = []
    known = set(channels.values())
    for path, last in candidates:
        shape = shapes.get(path)
        if shape is None or len(shape) != 3:
            continue  # not reached, or not a spatial map
        if last is None:  # a block or stage output: channels-last when its last dim is a stage width
            last = shape[-1] in known and shape[0] not in known
        specs.append(LayerSpec(path, path, "conv", read=_nhwc if last else first_tensor))
    return specs, "cnn"


def _nhwc(out: Any) -> torch.Tensor:
    return nhwc_to_nchw(first_tensor(out))


def _stage_channels(trunk: nn.Module) -> dict[str, int]:
    """timm's `feature_info`: module name -> channel count of each stage output."""
    info = getattr(trunk, "feature_info", None) or []
    out = {}
    for entry in info:
        if isinstance(entry, dict) and entry.get("module") and entry.get("num_chs"):
            out[str(entry["module"])] = int(entry["num_chs"])
    return out


def _probe(visual: nn.Module, paths: list[str], input_size: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """Per-image output shape of each module path (under `visual.`) for one zero image."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for path in paths:

        def record(_m: nn.Module, _i: Any, out: Any, path: str = path) -> None:  # returns None: output unchanged
            shapes.setdefault(path, tuple(first_tensor(out).shape[1:]))

        handles.append(visual.get_submodule(path.removeprefix("visual.")).register_forward_hook(record))
    try:
        with torch.no_grad():
            visual(torch.zeros(1, 3, *input_size, device=next(visual.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return shapes
