"""Random-weight models for the zoo sweep: one per timm family, one per transformers
image-classification model type, saved as hub repos (safetensors) so they load by ID.

timm: every family (the module of `timm.list_models()` names) gets its smallest variant,
measured by parameter count on the meta device (no memory, no weights), built with a small
`img_size` where the architecture takes one. transformers: a tiny config per model type of
`MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES` (the table below is test data: sizes only).
Extra builders (e.g. OpenCLIP models) plug in through `Builder`s passed to the zoo.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
MAX_PARAMS = 150_000_000  # bigger random models are cut to 2 blocks where timm allows, else skipped
SMALL_SIZES = (64, 96, 128, 224, 256)
CLASSES = 10


@dataclass(frozen=True)
class Builder:
    """One zoo entry: `build(folder)` writes a hub-layout repo into `folder` (or raises)."""

    library: str
    family: str
    name: str
    build: Callable[[Path], None]
    params: int | None = None  # parameter count when known before building


# ---------------------------------------------------------------------------------------- timm
def timm_families() -> dict[str, list[str]]:
    """{family (timm module name): model names}, from timm's own registry."""
    import timm
    from timm.models import _registry

    out: dict[str, list[str]] = {}
    for name in timm.list_models():
        out.setdefault(_registry._model_to_module[name], []).append(name)
    return out


def _meta_params(name: str, **kwargs: Any) -> int | None:
    import timm

    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = timm.create_model(name, pretrained=False, num_classes=CLASSES, **kwargs)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - a variant that cannot be built on meta is skipped
        return None


_SIZE_WORDS = ("test_", "atto", "femto", "pico", "nano", "xxxs", "xxs", "xs", "tiny", "mini", "t_", "_t", "small", "s_",
               "_s", "lite", "light", "base", "medium", "b_", "_b", "_m")


def _size_rank(name: str) -> tuple[int, int]:
    words = [i for i, w in enumerate(_SIZE_WORDS) if w in name]
    return (min(words) if words else len(_SIZE_WORDS)), len(name)


def smallest(names: list[str], candidates: int = 3) -> tuple[str, int | None]:
    """The variant with the fewest parameters among the few whose names say they are small
    (`test_*`, atto, femto, ..., tiny, small), counted on the meta device."""
    names = sorted(names, key=_size_rank)
    tests = [n for n in names if n.startswith("test_")]
    names = tests[:candidates] or names[:candidates]
    sized = [(n, _meta_params(n)) for n in names]
    known = [(p, n) for n, p in sized if p is not None]
    if not known:
        return sorted(names, key=len)[0], None
    p, n = min(known)
    return n, p


def _timm_build(name: str, extra: dict[str, Any] | None = None) -> Callable[[Path], None]:
    extra = dict(extra or {})

    def build(folder: Path) -> None:
        import timm

        model, size = None, None
        for img in (*SMALL_SIZES, None):
            kwargs = {"num_classes": CLASSES} | extra | ({"img_size": img} if img else {})
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    candidate = timm.create_model(name, pretrained=False, **kwargs).eval()
                    cfg = timm.data.resolve_model_data_config(candidate)
                    hw = (img, img) if img else tuple(cfg["input_size"][1:])
                    with torch.no_grad():
                        candidate(torch.zeros(1, 3, *hw))
            except Exception:  # noqa: BLE001 - this size (or img_size itself) is not accepted
                continue
            model, size, model_args = candidate, hw, extra | ({"img_size": img} if img else {})
            break
        if model is None:
            raise RuntimeError(f"timm cannot build {name} with random weights at any size tried")
        cfg = dict(model.pretrained_cfg)
        cfg.update(input_size=(3, *size), mean=MEAN, std=STD, num_classes=model.num_classes)
        model.pretrained_cfg = cfg
        args = model_args | {"num_classes": model.num_classes}  # an encoder-only variant keeps 0
        try:
            timm.models.save_for_hf(model, folder, model_args=args, safe_serialization=True)
        except RuntimeError as err:  # weights shared between modules (CoaT): store each key's own copy
            if "share memory" not in str(err):
                raise
            from safetensors.torch import save_file

            timm.models.save_for_hf(model, folder, model_args=args, safe_serialization=False)
            save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
        for f in folder.glob("*.bin"):
            f.unlink()

    return build


def _choose(item: tuple[str, list[str]]) -> tuple[str, str, int | None, dict[str, Any]]:
    """(family, smallest variant, its parameters, extra kwargs): a variant over the budget is
    cut to two blocks (`depth=2`) where the architecture takes a depth."""
    family, names = item
    name, params = smallest(names)
    if params is not None and params > MAX_PARAMS:
        cut = _meta_params(name, depth=2)
        if cut is not None and cut <= MAX_PARAMS:
            return family, name, cut, {"depth": 2}
    return family, name, params, {}


def timm_builders(families: list[str] | None = None, *, jobs: int = 1) -> list[Builder]:
    """One builder per timm family (its smallest variant), chosen in `jobs` processes."""
    items = [(f, n) for f, n in sorted(timm_families().items()) if families is None or f in families]
    if jobs <= 1:
        chosen = [_choose(i) for i in items]
    else:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            chosen = pool.map(_choose, items, chunksize=1)
    return [Builder("timm", family, name + (" (depth=2)" if extra else ""), _timm_build(name, extra), params)
            for family, name, params, extra in chosen]


# ---------------------------------------------------------------------------------------- transformers
_V = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
_VR = {k: v for k, v in _V.items() if k != "intermediate_size"}
_T = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=99,
          max_position_embeddings=16)
_SWIN = dict(image_size=32, patch_size=4, embed_dim=16, depths=[1, 2], num_heads=[1, 2], window_size=4)
_CNN = dict(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1])
_PYRAMID = dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2])
_TWO_TOWERS = dict(text_config=_T, vision_config=_V)
_LEVIT = dict(image_size=64, hidden_sizes=[16, 32, 48], num_attention_heads=[1, 2, 3], depths=[1, 1, 1],
              key_dim=[8, 8, 8], down_ops=[["Subsample", 8, 2, 4, 2, 2], ["Subsample", 8, 4, 4, 2, 2]])

# model_type -> config keyword arguments for a tiny model (sizes only: test data)
HF_TINY: dict[str, dict[str, Any]] = {
    "beit": _V, "data2vec-vision": _V, "deit": _V, "ijepa": _V, "vit": _V, "vit_msn": _V,
    "dinov2": _VR, "dinov2_with_registers": _VR | {"num_register_tokens": 4},
    "clip": _TWO_TOWERS, "metaclip_2": _TWO_TOWERS, "siglip": _TWO_TOWERS,
    "siglip2": dict(text_config=_T, vision_config={k: v for k, v in _V.items() if k != "image_size"} | {"num_patches": 16}),
    "bit": dict(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_groups=4),
    "convnext": dict(image_size=64, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1]),
    "convnextv2": dict(image_size=64, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1]),
    "cvt": dict(embed_dim=[16, 32, 48], num_heads=[1, 2, 3], depth=[1, 2, 3]),
    "dinat": dict(embed_dim=16, depths=[1, 1], num_heads=[1, 2], kernel_size=3),
    "donut-swin": _SWIN, "swin": _SWIN, "swinv2": _SWIN,
    "efficientnet": dict(image_size=64, width_coefficient=0.25, depth_coefficient=0.3, hidden_dim=320),
    "focalnet": dict(image_size=32, embed_dim=16, depths=[1, 1], hidden_sizes=[32, 64]),
    "hgnet_v2": dict(stem_channels=[3, 8, 8], stage_in_channels=[8, 16], stage_mid_channels=[8, 8],
                     stage_out_channels=[16, 32], stage_num_blocks=[1, 1], stage_downsample=[False, True],
                     stage_light_block=[False, True], stage_kernel_size=[3, 5], stage_numb_of_layers=[2, 2],
                     depths=[1, 1], hidden_sizes=[16, 32], embedding_size=8),
    "hiera": dict(image_size=[64, 64], embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], num_query_pool=2),
    "imagegpt": dict(n_embd=32, n_layer=2, n_head=2, n_positions=64),
    "levit": _LEVIT,
    "mobilenet_v1": dict(image_size=64, depth_multiplier=0.25),
    "mobilenet_v2": dict(image_size=64, depth_multiplier=0.25),
    "mobilevit": dict(image_size=64),
    "mobilevitv2": dict(image_size=64, width_multiplier=0.25),
    "perceiver": dict(image_size=32, d_latents=32, num_latents=16, d_model=512, num_blocks=1, num_self_attends_per_block=1,
                      num_self_attention_heads=1, num_cross_attention_heads=1),
    "poolformer": dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1]),
    "pp_lcnet": dict(scale=0.25),
    "pvt": _PYRAMID | {"image_size": 64}, "pvt_v2": _PYRAMID | {"image_size": 64},
    "segformer": _PYRAMID | {"decoder_hidden_size": 32},
    "regnet": _CNN | {"groups_width": 8}, "resnet": _CNN,
    "shieldgemma2": dict(text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                          intermediate_size=64, vocab_size=300, head_dim=16),
                         vision_config=_V, mm_tokens_per_image=4),
    "swiftformer": dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 1, 1]),
    "textnet": dict(image_size=[64, 64]),
    "timm_wrapper": dict(architecture="test_resnet"),
}
# processor input size where the model type's default processor size is not the tiny one
_HF_SIZE = {"perceiver": 32, "swin": 32, "swinv2": 32, "donut-swin": 32, "focalnet": 32}


def hf_types() -> dict[str, list[str]]:
    """{model_type: its image-classification class names} from transformers' own mapping."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES as names

    return {t: list(c) if isinstance(c, (tuple, list)) else [c] for t, c in names.items()}


def _hf_build(model_type: str, class_name: str) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        import transformers
        from transformers import CONFIG_MAPPING

        labels = {i: f"class {i}" for i in range(CLASSES)}
        kwargs = dict(HF_TINY.get(model_type, {}))
        config = CONFIG_MAPPING[model_type](**kwargs, num_labels=CLASSES, id2label=labels,
                                            label2id={v: k for k, v in labels.items()})
        cls = getattr(transformers, class_name)
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params = sum(p.numel() for p in cls(config).parameters())
        if params > 50_000_000:
            raise RuntimeError(f"the zoo's tiny config for {model_type} still has {params / 1e6:.0f} M parameters")
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls(config)
        model.save_pretrained(folder, safe_serialization=True)
        size = _HF_SIZE.get(model_type) or _image_size(config)
        proc = {"image_mean": list(MEAN), "image_std": list(STD), "do_normalize": True,
                "size": {"height": size, "width": size}, "do_center_crop": False, "do_resize": True}
        if model_type == "timm_wrapper":
            cfg = json.loads((folder / "config.json").read_text())
            cfg["pretrained_cfg"] = {"input_size": [3, 64, 64], "mean": list(MEAN), "std": list(STD)}
            (folder / "config.json").write_text(json.dumps(cfg))
        else:
            (folder / "preprocessor_config.json").write_text(json.dumps(proc))

    return build


def _image_size(config: Any) -> int:
    for cfg in (getattr(config, "vision_config", None), config):
        size = getattr(cfg, "image_size", None) if cfg is not None else None
        if size:
            return int(size[0] if isinstance(size, (list, tuple)) else size)
    return 64


def hf_builders(types: list[str] | None = None, *, every_class: bool = False) -> list[Builder]:
    out = []
    for model_type, classes in sorted(hf_types().items()):
        if types is not None and model_type not in types:
            continue
        for class_name in classes if every_class else classes[:1]:
            out.append(Builder("transformers", model_type, class_name, _hf_build(model_type, class_name)))
    return out


# ------------------------------------------------------------------------------------ OpenCLIP
OPENCLIP_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}
OPENCLIP_TINY: dict[str, dict[str, Any]] = {
    "tiny-openclip-vit": {"embed_dim": 16, "text_cfg": OPENCLIP_TEXT,
                          "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8}},
    "tiny-openclip-convnext": {"embed_dim": 16, "text_cfg": OPENCLIP_TEXT,
                               "vision_cfg": {"timm_model_name": "test_convnext", "timm_model_pretrained": False,
                                              "timm_pool": "", "timm_proj": "linear", "image_size": 64}},
    # a timm ViT trunk with attention-pool head, as SigLIP's; open_clip builds it at timm's own size
    "tiny-openclip-timm-vit": {"embed_dim": 64, "text_cfg": OPENCLIP_TEXT, "custom_text": True,  # 64: test_vit's width
                               "vision_cfg": {"timm_model_name": "test_vit", "timm_model_pretrained": False,
                                              "timm_pool": "map", "timm_proj": "none", "image_size": 160}},
    "tiny-openclip-rn": {"embed_dim": 16, "text_cfg": OPENCLIP_TEXT,  # OpenAI's ModifiedResNet
                         "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 64}},
}
OPENCLIP_CARD = "---\nlibrary_name: open_clip\nlicense: apache-2.0\ntags:\n- clip\n---\n# {name}\n\nTiny random OpenCLIP model.\n"


def write_openclip(folder: Path, name: str, *, seed: int) -> None:
    """Write the tiny OpenCLIP model `name` (random weights) as open_clip's own `push_to_hf_hub`
    lays a repo out: the full `model_cfg` and `preprocess_cfg` in `open_clip_config.json`, and
    `open_clip_model.safetensors`."""
    import open_clip
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    cfg = OPENCLIP_TINY[name]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {"mean": MEAN, "std": STD}}))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    save_config_for_hf(model, folder / "open_clip_config.json", model_config=cfg)
    (folder / "README.md").write_text(OPENCLIP_CARD.format(name=name))


def openclip_builders() -> list[Builder]:
    """One zoo entry per tiny OpenCLIP tower (ViT, timm ConvNeXt, timm ViT with attention pool,
    ModifiedResNet)."""
    return [Builder("open_clip", name.removeprefix("tiny-openclip-"), name,
                    lambda folder, name=name, i=i: write_openclip(folder, name, seed=100 + i))
            for i, name in enumerate(OPENCLIP_TINY)]
