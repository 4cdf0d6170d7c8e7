"""Tiny random timm repos (safetensors, timm's own hub format) plus hostile ones for error tests."""

from __future__ import annotations

import json
from pathlib import Path

LABELS = ["cat", "dog", "fish", "bird", "tabby cat"]
# Non-ImageNet statistics so that a hard-coded ImageNet mean/std would be caught.
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)

# repo id -> (architecture, model kwargs, input size)
TINY = {
    "org/tiny-resnet": ("resnet18", dict(num_classes=5), 64),
    "org/tiny-mobilenetv2": ("mobilenetv2_050", dict(num_classes=5), 64),
    "org/tiny-mobilenetv3": ("mobilenetv3_small_050", dict(num_classes=5), 64),
    "org/tiny-efficientnet": ("test_efficientnet", dict(num_classes=5), 64),
    "org/tiny-convnext": ("test_convnext", dict(num_classes=5), 64),
    "org/tiny-regnet": ("regnetx_002", dict(num_classes=5), 64),
    "org/tiny-vit": ("vit_tiny_patch16_224", dict(num_classes=5, img_size=64, depth=3, embed_dim=48, num_heads=2), 64),
    "org/tiny-deit": ("deit_tiny_distilled_patch16_224", dict(num_classes=5, img_size=64, depth=2, embed_dim=48, num_heads=2), 64),
    "org/tiny-vit-reg": ("vit_small_patch14_reg4_dinov2", dict(num_classes=0, img_size=56, depth=2, embed_dim=48, num_heads=2), 56),
    "org/tiny-swin": ("swin_tiny_patch4_window7_224", dict(num_classes=5, img_size=64, embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4), 64),
    "org/tiny-eva": ("eva02_tiny_patch14_224", dict(num_classes=5, img_size=56, depth=2, embed_dim=48, num_heads=2), 56),
}


def _save(model, folder: Path, model_args: dict, size: int, labels: list[str] | None) -> None:
    import timm

    cfg = dict(model.pretrained_cfg)
    cfg.update(input_size=(3, size, size), mean=MEAN, std=STD, num_classes=model.num_classes)
    model.pretrained_cfg = cfg
    extra = {"label_names": labels} if labels else None
    timm.models.save_for_hf(model, folder, model_config=extra, model_args=model_args, safe_serialization=True)
    for f in folder.glob("*.bin"):
        f.unlink()


def build(src_root: Path) -> dict[str, Path]:
    import timm
    import torch

    out: dict[str, Path] = {}
    for repo_id, (arch, kwargs, size) in TINY.items():
        torch.manual_seed(0)
        model = timm.create_model(arch, pretrained=False, **kwargs)
        folder = src_root / repo_id.replace("/", "--")
        folder.mkdir(parents=True, exist_ok=True)
        _save(model, folder, kwargs, size, LABELS if kwargs.get("num_classes") else None)
        out[repo_id] = folder

    # Hostile repos for the error paths, derived from tiny-resnet.
    base = out["org/tiny-resnet"]
    pickle_only = src_root / "org--pickle-only"
    pickle_only.mkdir(exist_ok=True)
    (pickle_only / "config.json").write_bytes((base / "config.json").read_bytes())
    from safetensors.torch import load_file

    torch.save(load_file(base / "model.safetensors"), pickle_only / "pytorch_model.bin")
    out["org/pickle-only"] = pickle_only

    remote = src_root / "org--remote-code"
    remote.mkdir(exist_ok=True)
    (remote / "config.json").write_text(json.dumps(
        {"model_type": "custom_vision", "architectures": ["CustomVisionModel"],
         "auto_map": {"AutoModel": "modeling_custom.CustomVisionModel"}}))
    (remote / "modeling_custom.py").write_text("raise SystemExit('remote code must never run in tests')\n")
    (remote / "model.safetensors").write_bytes((base / "model.safetensors").read_bytes())
    out["org/remote-code"] = remote

    truncated = src_root / "org--truncated"
    truncated.mkdir(exist_ok=True)
    (truncated / "config.json").write_bytes((base / "config.json").read_bytes())
    data = (base / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 3])
    out["org/truncated"] = truncated

    unknown = src_root / "org--unknown-arch"
    unknown.mkdir(exist_ok=True)
    cfg = json.loads((base / "config.json").read_text())
    cfg["architecture"] = "no_such_architecture_v9"
    (unknown / "config.json").write_text(json.dumps(cfg))
    (unknown / "model.safetensors").write_bytes(data)
    out["org/unknown-arch"] = unknown
    return out
