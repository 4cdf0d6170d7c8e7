"""timm adapter: a timm model (from a hub snapshot, a local dir, or a builtin) as a VisionModel.

The catalogue comes from `discovery` (one probe forward pass, no family list), helped by timm's
own seams: `num_prefix_tokens` (CLS, distillation, register tokens), `output_fmt` (NHWC models
such as Swin), `feature_info` (the stage outputs timm itself reports) and `pretrained_cfg` (input
size, mean, std). `logits` where the model has a classifier (`num_classes > 0`), whatever the
head's name or kind (a Linear, a 1x1 convolution, two branches averaged as in CrossViT).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CorruptWeights, UnsupportedArchitecture
from .discovery import discover
from .vision_model import LOGITS, LayerSpec, VisionModel


def timm_specs(model: nn.Module, input_size: tuple[int, int]) -> tuple[list[LayerSpec], bool]:
    """(specs in forward order, transformer-like) for a timm model, probed at `input_size`."""
    prefix = getattr(model, "num_prefix_tokens", None)
    stages = [info.get("module") for info in (getattr(model, "feature_info", None) or []) if isinstance(info, dict)]
    return discover(model, input_size, prefix_hint=int(prefix) if prefix is not None else None,
                    nhwc_hint=getattr(model, "output_fmt", "NCHW") == "NHWC",
                    extra_stages=[s for s in stages if s])


def timm_logits(out: Any) -> torch.Tensor:
    """timm returns (N, K) logits; a head left spatial (N, K, 1, 1) is flattened."""
    t = out[0] if isinstance(out, (tuple, list)) else out
    return t.flatten(1) if t.ndim == 4 else t


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
    data = resolve_model_data_config(model)
    _, h, w = data["input_size"]
    embed = getattr(model, "patch_embed", None)
    if getattr(embed, "strict_img_size", False) and getattr(embed, "img_size", None):
        h, w = embed.img_size  # a model built for another size than its pretrained_cfg says
    model.eval().to(device)
    specs, transformer = timm_specs(model, (int(h), int(w)))
    if not specs:
        raise UnsupportedArchitecture(
            f"{model_id}: the probe forward pass of timm '{type(model).__name__}' found no feature maps or token layers"
        )
    has_head = (getattr(model, "num_classes", 0) or 0) > 0
    if has_head:
        specs.append(LayerSpec(LOGITS, None, "logits"))
    labels, aliases = _labels(model, config) if has_head else (None, None)
    family = "vit" if transformer else "cnn"
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
        logits_fn=timm_logits if has_head else None,
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
