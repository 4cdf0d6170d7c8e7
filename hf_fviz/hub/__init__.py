"""Model id -> VisionModel, for timm, transformers and OpenCLIP repos, local folders and builtins."""

from __future__ import annotations

import torch

from ..errors import InvalidSettings
from .resolve import Resolved, resolve
from .vision_model import Layer, LayerSpec, VisionModel

__all__ = ["load_model", "resolve_device", "Layer", "LayerSpec", "VisionModel", "Resolved"]


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
