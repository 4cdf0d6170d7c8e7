"""Model id -> VisionModel, for timm, transformers and OpenCLIP repos, local folders and builtins.

`as_vision_model` is THE one place where something the user gave (an id, a folder, a timm or
transformers model, a VisionModel) becomes the `VisionModel` the engine takes."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidSettings
from .resolve import Resolved, resolve
from .vision_model import Layer, LayerSpec, VisionModel

__all__ = ["as_vision_model", "load_model", "resolve_device", "Layer", "LayerSpec", "VisionModel", "Resolved"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` picks CUDA when present, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidSettings("--device cuda was asked for but no CUDA GPU is available (use --device cpu or auto)")
    return dev


def load_model(
    model_id: str,
    *,
    revision: str | None = None,
    device: str | torch.device = "auto",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> VisionModel:
    """Load a hub vision model by id as a hookable `VisionModel`.

    Args:
        model_id: `org/name[@revision]` (a timm, transformers or OpenCLIP repo), a local folder in hub layout, or `builtin:mobilenetv2` /
            `builtin:efficientnet-lite0` (real ImageNet models that work offline).
        revision: branch, tag or commit; also accepted as `model_id@revision`.
        device: `auto` (CUDA when present), `cpu` or `cuda`.
        allow_pickle: allow `.bin`/`.pth` weights (they can run code when unpickled).
        trust_remote_code: allow repos that ship their own model code.

    Raises:
        FvizError subclasses with a one-line message: InvalidModelId, ModelNotFound, GatedRepo,
        NotAVisionModel, UnsupportedArchitecture, UnsafeWeights, RemoteCodeRequired, CorruptWeights.
    """
    dev = resolve_device(device)
    found = resolve(model_id, revision=revision, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    if found.library == "timm":
        from .timm_models import load_timm

        return load_timm(found.folder, found.config, model_id=found.model_id, revision=found.revision, device=dev)
    if found.library == "open_clip":
        from .openclip_models import load_open_clip

        return load_open_clip(found.folder, model_id=found.model_id, revision=found.revision,
                              device=dev, allow_pickle=allow_pickle)
    from .hf_models import load_transformers
    from .hf_text import add_text_side

    vm = load_transformers(
        found.folder, found.config, model_id=found.model_id, revision=found.revision, device=dev,
        allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
    )
    return add_text_side(vm, found.folder, found.config, allow_pickle=allow_pickle)


def as_vision_model(
    model: Any,
    *,
    device: str | torch.device | None = None,
    revision: str | None = None,
    name: str | None = None,
    processor: Any = None,
    scratch: str | os.PathLike[str] | None = None,
) -> VisionModel:
    """Anything that names or holds a model -> a `VisionModel` (the engine takes nothing else).

    - a `VisionModel`: itself, moved to `device` when one is given (None: where it is);
    - a model id or local folder (str / PathLike): `load_model(model, device=device or "auto")`;
    - a transformers `PreTrainedModel` (duck-typed; transformers is not imported here): saved,
      with `processor`, into `scratch` (default: a temp folder, removed after loading) and loaded
      from there, the same path as a hub repo;
    - a timm model (`pretrained_cfg` + `forward_features`): a copy wrapped, so the live model
      stays trainable; `name` (default its architecture) becomes the model id.
    """
    if isinstance(model, VisionModel):
        if device is not None:
            model.to(resolve_device(device))
        return model
    dev = "auto" if device is None else device
    if isinstance(model, (str, os.PathLike)):
        return load_model(os.fspath(model), revision=revision, device=dev)
    save_pretrained = getattr(model, "save_pretrained", None)
    if callable(save_pretrained) and hasattr(model, "config") and hasattr(model.config, "to_dict"):
        # transformers: class from config.architectures, preprocessing from preprocessor_config.json
        if scratch is not None:
            return _load_saved(model, processor, Path(scratch), dev)
        with tempfile.TemporaryDirectory(prefix="hf_fviz-model-") as tmp:
            return _load_saved(model, processor, Path(tmp), dev)
    if hasattr(model, "pretrained_cfg") and hasattr(model, "forward_features"):
        from .timm_models import wrap_timm

        live = copy.deepcopy(model)  # the VisionModel freezes and folds its module
        label = name or str(getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__)
        return wrap_timm(live, model_id=label, revision=None, device=resolve_device(dev))
    raise InvalidSettings(
        f"cannot visualize a {type(model).__name__}: give a VisionModel, a model id or folder, a timm model or a transformers model"
    )


def _load_saved(model: Any, processor: Any, folder: Path, device: str | torch.device) -> VisionModel:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    if processor is not None and hasattr(processor, "save_pretrained"):
        processor.save_pretrained(folder)
    return load_model(str(folder), device=device)
