"""Tiny random transformers repos for tests (safetensors, with their image processors).

`build(src_root)` saves each model into `src_root/<name>/` and returns `{repo_id: folder}`;
conftest lays them out as a hub cache. Every processor uses non-default mean/std (and some a size
that differs from the model config's `image_size`) so that hard-coded ImageNet values or a wrong
size rule fail the tests. Built once per session in a few seconds.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ORG = "hf-internal"
MEAN = [0.5, 0.4, 0.3]
STD = [0.2, 0.25, 0.3]
LABELS = {0: "cat", 1: "dog", 2: "fish"}
T = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
V = dict(T, image_size=32, patch_size=8)
CLASSES = dict(num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})

# What the tests expect from each repo: input size and which processor keys produced it.
EXPECTED_INPUT_SIZE = {
    "tiny-vit-classifier": (32, 32),
    "tiny-vit": (32, 32),
    "tiny-deit": (32, 32),
    "tiny-beit": (32, 32),
    "tiny-dinov2": (32, 32),
    "tiny-dinov2-registers": (32, 32),
    "tiny-convnext": (48, 48),  # processor shortest_edge 48; ConvNextConfig.image_size is 224
    "tiny-resnet": (40, 40),
    "tiny-regnet": (40, 40),
    "tiny-swin": (32, 32),
    "tiny-clip": (32, 32),  # crop_size 32 wins over size shortest_edge 40
    "tiny-clip-vision": (32, 32),
    "tiny-siglip-vision": (32, 32),
    "tiny-siglip": (32, 32),
    "tiny-timmwrapper": (64, 64),  # from pretrained_cfg.input_size
}


def _vit_proc(size: int = 32) -> Any:
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": size, "width": size}, image_mean=MEAN, image_std=STD)


def _clip_proc() -> Any:
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32},
                              image_mean=MEAN, image_std=STD)


def _convnext_proc(edge: int) -> Any:
    from transformers import ConvNextImageProcessor

    return ConvNextImageProcessor(size={"shortest_edge": edge}, image_mean=MEAN, image_std=STD)


def _builders() -> dict[str, Callable[[], tuple[Any, Any]]]:
    import transformers as tf

    text = dict(T, vocab_size=99, max_position_embeddings=16)
    return {
        "tiny-vit-classifier": lambda: (tf.ViTForImageClassification(tf.ViTConfig(**V, **CLASSES)), _vit_proc()),
        "tiny-vit": lambda: (tf.ViTModel(tf.ViTConfig(**V)), _vit_proc()),
        "tiny-deit": lambda: (tf.DeiTForImageClassificationWithTeacher(tf.DeiTConfig(**V, **CLASSES)), _vit_proc()),
        "tiny-beit": lambda: (tf.BeitModel(tf.BeitConfig(**V, use_relative_position_bias=True)), _vit_proc()),
        "tiny-dinov2": lambda: (tf.Dinov2Model(tf.Dinov2Config(**V)), _vit_proc()),
        "tiny-dinov2-registers": lambda: (
            tf.Dinov2WithRegistersModel(tf.Dinov2WithRegistersConfig(**V, num_register_tokens=4)), _vit_proc()),
        "tiny-convnext": lambda: (
            tf.ConvNextForImageClassification(tf.ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 2, 1, 1], **CLASSES)),
            _convnext_proc(48)),
        "tiny-resnet": lambda: (
            tf.ResNetModel(tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 2, 1], layer_type="basic")),
            _convnext_proc(40)),
        "tiny-regnet": lambda: (
            tf.RegNetForImageClassification(tf.RegNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                                                            groups_width=8, **CLASSES)),
            _convnext_proc(40)),
        "tiny-swin": lambda: (
            tf.SwinForImageClassification(tf.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 2],
                                                         num_heads=[2, 2], window_size=4, **CLASSES)),
            _vit_proc()),
        "tiny-clip": lambda: (
            tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=V, projection_dim=16)), _clip_proc()),
        "tiny-clip-vision": lambda: (tf.CLIPVisionModelWithProjection(tf.CLIPVisionConfig(**V, projection_dim=16)), _clip_proc()),
        "tiny-siglip-vision": lambda: (tf.SiglipVisionModel(tf.SiglipVisionConfig(**V)), _vit_proc()),
        "tiny-siglip": lambda: (tf.SiglipModel(tf.SiglipConfig(text_config=text, vision_config=V)), _vit_proc()),
        "tiny-timmwrapper": lambda: (
            tf.TimmWrapperForImageClassification(tf.TimmWrapperConfig(architecture="test_resnet", **CLASSES)), None),
        "tiny-bert": lambda: (tf.BertForMaskedLM(tf.BertConfig(**T, vocab_size=99, max_position_embeddings=16)), None),
    }


def build(src_root: Path) -> dict[str, Path]:
    """Save every tiny repo under `src_root/hf/<name>/`; returns {repo_id: folder}."""
    import transformers

    out: dict[str, Path] = {}
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        for i, (name, make) in enumerate(_builders().items()):
            folder = Path(src_root) / "hf" / name
            out[f"{ORG}/{name}"] = folder
            if (folder / "config.json").is_file():
                continue  # built earlier in this session
            torch.manual_seed(i)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model, proc = make()
            model.save_pretrained(folder, safe_serialization=True)
            if proc is not None:
                proc.save_pretrained(folder)
            if name == "tiny-timmwrapper":  # timm repos carry their preprocessing in config.json
                cfg_path = folder / "config.json"
                cfg = json.loads(cfg_path.read_text())
                cfg["pretrained_cfg"] = {"input_size": [3, 64, 64], "mean": MEAN, "std": STD,
                                         "interpolation": "bilinear", "crop_pct": 1.0}
                cfg_path.write_text(json.dumps(cfg, indent=2))
    finally:
        transformers.logging.set_verbosity(verbosity)
    return out
