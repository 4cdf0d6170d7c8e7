"""timm adapter: a timm model (from a hub snapshot, a local dir, or a builtin) as a VisionModel.

The catalogue is read from the live module tree, never from state-dict keys:
- CNNs: every block output, then its stage output (stages found through `stages` / `layers` /
  `blocks` containers or timm's `feature_info`), then the pre-pool feature map where there is one.
- ViTs (VisionTransformer, EVA, DeiT, register models): per block, the MLP hidden layer after its
  activation (`blocks.i.mlp.act`, read at the input of `fc2` so gated MLPs are right too), then
  the residual stream after the block (`blocks.i`), both as tokens with prefix count and grid.
- Swin and other NHWC models: stage and block outputs permuted to NCHW.
- `logits` where the model has a classifier.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CorruptWeights, UnsupportedArchitecture
from .vision_model import LOGITS, LayerSpec, VisionModel, first_tensor, nhwc_to_nchw

_STAGE_CONTAINERS = ("stages", "layers", "blocks")
_PREPOOL = ("bn2", "final_conv", "conv_head", "norm_pre")


def _is_identity(m: nn.Module) -> bool:
    return isinstance(m, nn.Identity)


def _first_input(inputs: Any) -> torch.Tensor:
    return inputs[0]


def _stage_paths(model: nn.Module) -> list[str]:
    for name in _STAGE_CONTAINERS:
        container = getattr(model, name, None)
        if isinstance(container, (nn.Sequential, nn.ModuleList)) and len(container):
            return [f"{name}.{child}" for child, _ in container.named_children()]
    modules = dict(model.named_modules())
    paths = []
    for info in getattr(model, "feature_info", []) or []:
        path = info.get("module") if isinstance(info, dict) else None
        if path in modules and len(list(modules[path].children())) > 0:
            paths.append(path)
    return paths


def _block_paths(model: nn.Module, stage: str) -> list[str]:
    module = model.get_submodule(stage)
    inner = getattr(module, "blocks", None)
    if isinstance(inner, (nn.Sequential, nn.ModuleList)):
        return [f"{stage}.blocks.{c}" for c, _ in inner.named_children()]
    children = [(c, m) for c, m in module.named_children() if not _is_identity(m)]
    # A stage that is itself one block (e.g. a single conv) has only leaf children: no block list.
    if all(len(list(m.children())) == 0 for _, m in children):
        return []
    return [f"{stage}.{c}" for c, m in children if len(list(m.children())) > 0]


def _vit_specs(model: nn.Module) -> list[LayerSpec]:
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    grid = tuple(getattr(getattr(model, "patch_embed", None), "grid_size", ()) or ()) or None
    specs = []
    for i, block in enumerate(model.blocks):
        mlp = getattr(block, "mlp", None)
        if mlp is not None and hasattr(mlp, "fc2"):
            specs.append(
                LayerSpec(f"blocks.{i}.mlp.act", f"blocks.{i}.mlp.fc2", "tokens", read=_first_input,
                          prefix_tokens=prefix, grid=grid, on_input=True)
            )
        specs.append(LayerSpec(f"blocks.{i}", f"blocks.{i}", "tokens", prefix_tokens=prefix, grid=grid))
    return specs


def _cnn_specs(model: nn.Module) -> list[LayerSpec]:
    nhwc = getattr(model, "output_fmt", "NCHW") == "NHWC"
    read = (lambda out: nhwc_to_nchw(first_tensor(out))) if nhwc else first_tensor
    specs = []
    for stage in _stage_paths(model):
        for block in _block_paths(model, stage):
            specs.append(LayerSpec(block, block, "conv", read=read))
        specs.append(LayerSpec(stage, stage, "conv", read=read))
    modules = dict(model.named_modules())
    for name in _PREPOOL:
        if name in modules and not _is_identity(modules[name]):
            specs.append(LayerSpec(name, name, "conv", read=read))
            break
    return specs


def _labels(model: nn.Module, config: dict[str, Any]) -> tuple[list[str] | None, list[list[str]] | None]:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    names = config.get("label_names") or cfg.get("label_names")
    descriptions = config.get("label_descriptions") or cfg.get("label_descriptions")
    num_classes = getattr(model, "num_classes", 0)
    if names and len(names) == num_classes:
        if descriptions:
            full = [descriptions.get(n, n) for n in names]
            return [d.split(",")[0].strip() for d in full], [[s.strip() for s in d.split(",")] + [n] for d, n in zip(full, names)]
        return list(names), [[n] for n in names]
    if num_classes in (1000, 11821, 21841, 21843):
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(model)
        if subset:
            info = ImageNetInfo(subset)
            full = [info.index_to_description(i) for i in range(num_classes)]
            return [d.split(",")[0].strip() for d in full], [[s.strip() for s in d.split(",")] for d in full]
    return None, None


def wrap_timm(model: nn.Module, *, model_id: str, revision: str | None, device: torch.device,
              config: dict[str, Any] | None = None) -> VisionModel:
    """Describe an instantiated timm model as a VisionModel."""
    from timm.data import resolve_model_data_config

    config = config or {}
    is_vit = hasattr(model, "num_prefix_tokens") and isinstance(getattr(model, "blocks", None), (nn.Sequential, nn.ModuleList))
    specs = _vit_specs(model) if is_vit else _cnn_specs(model)
    if not specs:
        raise UnsupportedArchitecture(
            f"{model_id}: timm architecture '{type(model).__name__}' has no stages or blocks hf_fviz can hook. "
            "Supported timm families: ResNet, EfficientNet, MobileNet, ConvNeXt, RegNet, ViT/DeiT/EVA, Swin and similar."
        )
    has_head = getattr(model, "num_classes", 0) > 0
    if has_head:
        specs.append(LayerSpec(LOGITS, None, "logits"))
    data = resolve_model_data_config(model)
    _, h, w = data["input_size"]
    labels, aliases = _labels(model, config) if has_head else (None, None)
    family = "vit" if is_vit or "swin" in type(model).__name__.lower() else "cnn"
    model.to(device)
    return VisionModel(
        id=model_id,
        module=model,
        specs=specs,
        input_size=(int(h), int(w)),
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        library="timm",
        family=family,
        revision=revision,
        labels=labels,
        label_aliases=aliases,
        logits_fn=(lambda out: out) if has_head else None,
        device=device,
    )


def load_timm(snapshot_dir: Path, config: dict[str, Any], *, model_id: str, revision: str | None,
              device: torch.device) -> VisionModel:
    """Instantiate a timm repo from a local folder (config.json + weights) and wrap it."""
    import timm

    try:
        model = timm.create_model(f"local-dir:{snapshot_dir}", pretrained=True)
    except RuntimeError as err:  # unknown architecture name in timm's registry, or bad weights
        msg = str(err)
        if "Unknown model" in msg:
            raise UnsupportedArchitecture(
                f"{model_id}: timm has no architecture '{config.get('architecture')}' (update timm?)"
            ) from None
        raise CorruptWeights(f"{model_id}: could not load weights: {msg.splitlines()[0][:200]}") from None
    except Exception as err:
        if type(err).__name__ in ("SafetensorError", "HeaderTooLarge", "HeaderTooSmall"):
            raise CorruptWeights(f"{model_id}: the safetensors file is corrupt or truncated ({err})") from None
        raise
    return wrap_timm(model, model_id=model_id, revision=revision, device=device, config=config)


def read_config(snapshot_dir: Path) -> dict[str, Any]:
    return json.loads((Path(snapshot_dir) / "config.json").read_text(encoding="utf-8"))
