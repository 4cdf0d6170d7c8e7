"""transformers adapter: a transformers vision repo (a local snapshot folder) as a VisionModel.

Which class: `config.architectures[0]` decides whether the repo has a trained classifier
(`*ForImageClassification*`, distillation `...WithTeacher` heads included: their `logits` are the
inference-time average the model returns); everything else loads as the model type's *base*
class, so a backbone is never built through a classifier class (that would add a random head),
and task heads we cannot use (masked image modeling, ...) are left out. Multimodal repos (CLIP,
SigLIP, MetaCLIP 2) load only their vision tower, which `VisionTower` registers under the
attribute name it has in the full model (`vision_model`), so layer names equal the full model's
module paths. Any model type works whose class takes images (`pixel_values`, or Perceiver's
`inputs`) and nothing else; others get one line saying why (text or audio model, a model that
also needs text, a package such as natten that is not installed).

The catalogue comes from `discovery` (one probe forward pass; no family list). The VisionModel's
`module` is the HF model itself, with an instance-level `forward` that takes the batch as its
pixel input and passes `interpolate_pos_encoding=True` where the model supports it.
"""

from __future__ import annotations

import inspect
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CorruptWeights, NotAVisionModel, UnsafeWeights, UnsupportedArchitecture
from .discovery import discover
from .vision_model import VisionModel, first_tensor

# multimodal model_type -> the class of its vision tower (loaded from the full checkpoint)
_TOWERS: dict[str, str] = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel", "siglip2": "Siglip2VisionModel",
                           "metaclip_2": "MetaClip2VisionModel"}
# backbone classes accepted as named in `architectures` (besides the model type's base class)
_BACKBONES = {"CLIPVisionModel", "CLIPVisionModelWithProjection", "SiglipVisionModel", "Siglip2VisionModel",
              "MetaClip2VisionModel", "MetaClip2VisionModelWithProjection"}
# the name of the image argument of a model's forward, where it is not `pixel_values`
_PIXEL_ARGS = ("pixel_values", "inputs")
_FALLBACK_MEAN_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preprocessing:
    """What the model expects as input, and where that came from (for messages and tests)."""

    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str


# ---------------------------------------------------------------------------------------- entry point
def load_transformers(
    snapshot_dir: Path,
    config: dict[str, Any],
    *,
    model_id: str,
    revision: str | None,
    device: torch.device,
    allow_pickle: bool,
    trust_remote_code: bool,
) -> VisionModel:
    """Load a transformers vision repo from a local folder and describe it as a VisionModel.

    `trust_remote_code` is accepted for the resolver's sake but never used to run code: only
    classes built into the installed transformers are instantiated.
    """
    del trust_remote_code  # the resolver has already decided; we only use built-in classes
    snapshot_dir = Path(snapshot_dir)
    model_type = str(config.get("model_type") or "")
    archs = config.get("architectures") or []
    arch = str(archs[0]) if archs else ""
    _check_vision(model_id, model_type, arch)
    class_name, classifier, tower = _choose_class(model_type, arch)
    _check_takes_images(model_id, class_name)
    hf_model = _from_pretrained(class_name, snapshot_dir, model_id=model_id, allow_pickle=allow_pickle,
                                classifier=classifier, model_type=model_type)
    hf_model.eval()

    _PixelForward.install(hf_model)
    module: nn.Module = VisionTower(hf_model, attr=tower) if tower else hf_model
    prep = read_preprocessing(snapshot_dir, config, model=hf_model)
    module.to(device)
    inner = getattr(hf_model, "timm_model", None)  # TimmWrapper: timm's own seams
    specs, transformer = discover(
        module, prep.input_size,
        prefix_hint=int(inner.num_prefix_tokens) if getattr(inner, "num_prefix_tokens", None) is not None else None,
        nhwc_hint=getattr(inner, "output_fmt", "NCHW") == "NHWC",
    )
    family = "vit" if transformer else "cnn"
    if not specs:
        raise UnsupportedArchitecture(
            f"{model_id}: the probe forward pass of {class_name} found no feature maps or token layers"
        )

    labels, aliases = _labels(hf_model.config) if classifier else (None, None)
    return VisionModel(
        id=model_id,
        module=module,
        specs=specs,
        input_size=prep.input_size,
        mean=prep.mean,
        std=prep.std,
        library="transformers",
        family=family,  # type: ignore[arg-type]
        revision=revision,
        labels=labels,
        label_aliases=aliases,
        logits_fn=_logits if classifier else None,
        device=device,
    )


def _logits(output: Any) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else first_tensor(output)


# ---------------------------------------------------------------------------------------- which class
def _check_vision(model_id: str, model_type: str, arch: str) -> None:
    """NotAVisionModel for text and audio model types; UnsupportedArchitecture for a model type
    the installed transformers does not know."""
    from transformers import CONFIG_MAPPING

    modality = _modality(model_type, arch)
    what = f"{arch or 'model'} (model_type '{model_type or '?'}')"
    if modality is not None:
        raise NotAVisionModel(
            f"{model_id} is {_article(modality)} {modality} model, {what}, not an image model: "
            "hf-fviz visualizes vision models."
        )
    if model_type not in CONFIG_MAPPING:
        import transformers

        raise UnsupportedArchitecture(
            f"{model_id}: the installed transformers {transformers.__version__} does not know {what} (update transformers?)"
        )


def _check_takes_images(model_id: str, class_name: str) -> None:
    """One clear line for classes whose forward does not take an image batch alone."""
    import transformers

    cls = getattr(transformers, class_name, None)
    if cls is None:
        return  # _from_pretrained reports the missing class
    params = inspect.signature(cls.forward).parameters
    if not any(p in params for p in _PIXEL_ARGS):
        raise UnsupportedArchitecture(
            f"{model_id}: {class_name} does not take pixel values (its input is {next(iter(list(params)[1:]), '?')}), "
            "so there is no image to optimize"
        )
    if "input_ids" in params:
        raise UnsupportedArchitecture(
            f"{model_id}: {class_name} needs a text prompt (input_ids) as well as the image; hf-fviz visualizes "
            "models that take an image alone"
        )


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


_TEXT_HEADS = ("ForMaskedLM", "ForCausalLM", "ForSequenceClassification", "ForTokenClassification",
               "ForQuestionAnswering", "ForMultipleChoice", "ForNextSentencePrediction", "LMHeadModel")
_AUDIO_HEADS = ("ForCTC", "ForAudioClassification", "ForSpeechSeq2Seq", "ForAudioFrameClassification",
                "ForXVector", "ForSpeechToText", "ForTextToSpeech")


def _modality(model_type: str, arch: str) -> str | None:
    """'text' or 'audio' for model types transformers knows as such; None when it may be a vision
    model (it has an image processor) or nothing tells."""
    try:
        from transformers.models.auto.feature_extraction_auto import FEATURE_EXTRACTOR_MAPPING_NAMES
        from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES
        from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES
    except ImportError:  # pragma: no cover - layout of older/newer transformers
        IMAGE_PROCESSOR_MAPPING_NAMES = FEATURE_EXTRACTOR_MAPPING_NAMES = TOKENIZER_MAPPING_NAMES = {}
    if model_type in IMAGE_PROCESSOR_MAPPING_NAMES:
        return None
    if model_type in FEATURE_EXTRACTOR_MAPPING_NAMES or arch.endswith(_AUDIO_HEADS):
        return "audio"
    if model_type in TOKENIZER_MAPPING_NAMES or arch.endswith(_TEXT_HEADS):
        return "text"
    return None


def _choose_class(model_type: str, arch: str) -> tuple[str, bool, str | None]:
    """(class name to instantiate, has a trained classifier, tower attribute or None).

    Only a repo whose own architecture is a classifier is loaded with one; other heads are
    dropped by loading the family's base model from the same checkpoint.
    """
    if "ForImageClassification" in arch:
        return arch, True, None
    if model_type in _TOWERS:
        return _TOWERS[model_type], False, "vision_model"
    if arch in _BACKBONES:
        return arch, False, None
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    base = MODEL_MAPPING_NAMES.get(model_type)
    if isinstance(base, (tuple, list)):
        base = base[0]
    if not base:
        raise UnsupportedArchitecture(f"no base model class for model_type '{model_type}' in this transformers")
    return str(base), False, None


def _from_pretrained(class_name: str, snapshot_dir: Path, *, model_id: str, allow_pickle: bool,
                     classifier: bool, model_type: str = "") -> nn.Module:
    """Instantiate `class_name` from the local folder in float32, safetensors unless pickle is allowed;
    weights the checkpoint lacks (left random) are reported as a warning."""
    import transformers

    if not allow_pickle and not any(Path(snapshot_dir).glob("*.safetensors")):
        raise UnsafeWeights(
            f"{model_id} has only pickle weights (.bin), which can run code when loaded; "
            "pass --allow-pickle (allow_pickle=True) if you trust it"
        )
    cls = getattr(transformers, class_name, None)
    if cls is None:
        raise UnsupportedArchitecture(
            f"{model_id}: the installed transformers {transformers.__version__} has no class {class_name}"
            " (update transformers?)"
        )
    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    kwargs: dict[str, Any] = {
        "local_files_only": True,
        "use_safetensors": None if allow_pickle else True,
        "output_loading_info": True,
        dtype_key: torch.float32,
    }
    hf_logging = transformers.utils.logging
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # unused text-tower weights of CLIP repos are expected; we report missing ones
    hf_logging.disable_progress_bar()
    try:
        config = _config(snapshot_dir, model_type)
        if config is not None:
            kwargs["config"] = config
        model, info = cls.from_pretrained(str(snapshot_dir), **kwargs)
    except ImportError as err:  # a model whose code needs an optional package (DiNAT: natten)
        found = re.search(r"requires the (\S+) library", str(err))
        package = found.group(1) if found else str(err).splitlines()[0][:80]
        raise UnsupportedArchitecture(
            f"{model_id}: {class_name} needs the package {package}, which is not installed (pip install {package})"
        ) from None
    except Exception as err:  # map damaged files to one clear line; keep other bugs as they are
        name = type(err).__name__
        if name in ("SafetensorError", "HeaderTooLarge", "HeaderTooSmall") or "safetensors" in str(err).lower():
            raise CorruptWeights(f"{model_id}: the weights file is corrupt or truncated ({str(err)[:160]})") from None
        raise
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys") or [])
    if not classifier:  # a backbone's pooler feeds no catalogued layer: a head checkpoint may lack it
        missing = [k for k in missing if ".pooler." not in f".{k}"]
    if missing:
        shown = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
        warnings.warn(
            f"{model_id}: {len(missing)} weights of {class_name} are not in the checkpoint and stay random: {shown}",
            stacklevel=3,
        )
    return model


_BACKBONE_KEYS = ("out_features", "out_indices", "_out_features", "_out_indices", "stage_names")


def _config(snapshot_dir: Path, model_type: str) -> Any:
    """None when the repo's config loads as it is; when its backbone `out_features` do not fit its depth (a DINOv2 or BEiT
    config edited to another depth), without them: they only matter to *Backbone classes."""
    from transformers import CONFIG_MAPPING

    cfg_cls = CONFIG_MAPPING[model_type] if model_type in CONFIG_MAPPING else None  # a lazy mapping: no .get
    if cfg_cls is None:
        return None
    try:
        cfg_cls.from_pretrained(str(snapshot_dir), local_files_only=True)
        return None  # loads as it is: let the model class read it (a tower reads its own part)
    except ValueError as err:
        if "out_features" not in str(err) and "out_indices" not in str(err):
            raise
    data = json.loads((Path(snapshot_dir) / "config.json").read_text(encoding="utf-8"))
    return cfg_cls.from_dict({k: v for k, v in data.items() if k not in _BACKBONE_KEYS})


# ---------------------------------------------------------------------------------------- module wrapping
class _PixelForward:
    """Instance-level `forward` for an HF model: the batch goes in as its pixel argument (plus
    `interpolate_pos_encoding=True` where supported, so canvases of other sizes work). Models that
    take pre-cut patch sequences (NaFlex: SigLIP 2) get the image cut as their processor cuts it,
    with a full attention mask and the patch grid as `spatial_shapes`."""

    def __init__(self, bound: Callable[..., Any], kwargs: dict[str, Any], arg: str = "pixel_values",
                 patch: int | None = None) -> None:
        self.bound = bound
        self.kwargs = kwargs
        self.arg = arg
        self.patch = patch

    @classmethod
    def install(cls, model: nn.Module) -> _PixelForward:
        params = inspect.signature(type(model).forward).parameters
        kwargs = {"interpolate_pos_encoding": True} if "interpolate_pos_encoding" in params else {}
        arg = next((p for p in _PIXEL_ARGS if p in params), "pixel_values")
        patch = _patch_size(model.config) if "spatial_shapes" in params else None
        fwd = cls(model.forward, kwargs, arg, patch)
        model.forward = fwd  # type: ignore[method-assign]
        return fwd

    def __call__(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        if self.patch:
            kwargs = {**_patches(pixel_values, self.patch), **kwargs}
            return self.bound(**{**self.kwargs, **kwargs})
        return self.bound(**{self.arg: pixel_values}, **{**self.kwargs, **kwargs})


def _patch_size(config: Any) -> int | None:
    for cfg in (getattr(config, "vision_config", None), config):
        size = getattr(cfg, "patch_size", None) if cfg is not None else None
        if size:
            return int(size[0] if isinstance(size, (list, tuple)) else size)
    return None


def _patches(x: torch.Tensor, p: int) -> dict[str, torch.Tensor]:
    """(N, 3, H, W) -> NaFlex inputs: (N, h*w, p*p*3) patches in the processor's order
    (row-major patches, each flattened as (row, col, channel)), a full mask, and (h, w)."""
    n, c, height, width = x.shape
    h, w = height // p, width // p
    patches = x[:, :, : h * p, : w * p].reshape(n, c, h, p, w, p).permute(0, 2, 4, 3, 5, 1).reshape(n, h * w, p * p * c)
    return {"pixel_values": patches,
            "pixel_attention_mask": torch.ones(n, h * w, dtype=torch.long, device=x.device),
            "spatial_shapes": torch.tensor([[h, w]] * n, dtype=torch.long, device=x.device)}


class VisionTower(nn.Module):
    """The vision half of a multimodal (CLIP, SigLIP) repo, registered under the attribute name it
    has in the full model, so module paths read `vision_model.encoder.layers.3` as users see them in
    `CLIPModel.named_modules()`; the text tower is never built."""

    def __init__(self, tower: nn.Module, *, attr: str = "vision_model") -> None:
        super().__init__()
        self.attr = attr
        self.add_module(attr, tower)

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        return getattr(self, self.attr)(pixel_values, **kwargs)


def _cfg(config: Any, name: str, default: Any = None) -> Any:
    return getattr(config, name, default)


# ---------------------------------------------------------------------------------------- labels
def _labels(config: Any) -> tuple[list[str] | None, list[list[str]] | None]:
    """Class names from `id2label` (first comma-separated name as the label, all of them as
    aliases); None when the names are transformers' placeholders `LABEL_i`."""
    id2label = dict(_cfg(config, "id2label", None) or {})
    if not id2label:
        return None, None
    num = int(_cfg(config, "num_labels", len(id2label)))
    names = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(num)]
    if all(re.fullmatch(r"LABEL_\d+", n) for n in names):
        return None, None
    aliases = [[p.strip() for p in n.split(",") if p.strip()] or [n] for n in names]
    aliases = [a if n in a else [*a, n] for a, n in zip(aliases, names)]
    return [a[0] for a in aliases], aliases


# ---------------------------------------------------------------------------------------- preprocessing
def _size_of(value: Any) -> tuple[int, int] | None:
    """An image size from a processor `size`/`crop_size` entry (int or dict) as (H, W)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value), int(value)
    if isinstance(value, (list, tuple)) and len(value) in (2, 3):
        return int(value[-2]), int(value[-1])
    if isinstance(value, dict):
        if value.get("height") and value.get("width"):
            return int(value["height"]), int(value["width"])
        for key in ("shortest_edge", "longest_edge", "max_height"):
            if value.get(key):
                return int(value[key]), int(value[key])
    return None


def _triple(v: Any) -> tuple[float, float, float] | None:
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return (float(v),) * 3  # type: ignore[return-value]
    vals = [float(x) for x in v]
    if len(vals) == 1:
        vals *= 3
    return (vals[0], vals[1], vals[2]) if len(vals) == 3 else None


def _processor_defaults(model_type: str) -> dict[str, Any]:
    """mean/std/size defaults of the image processor class transformers uses for `model_type`
    (what `AutoImageProcessor` would apply to keys the repo's file leaves out)."""
    try:
        import transformers
        from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

        names = IMAGE_PROCESSOR_MAPPING_NAMES.get(model_type)
        if isinstance(names, dict):
            names = list(names.values())
        elif isinstance(names, str):
            names = [names]
        for name in names or []:
            cls = getattr(transformers, name, None) if name else None
            if cls is None:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                proc = cls()
            out = {k: getattr(proc, k, None) for k in ("image_mean", "image_std", "size", "crop_size")}
            for k in ("size", "crop_size"):
                if out[k] is not None and not isinstance(out[k], (int, dict)):
                    out[k] = {f: getattr(out[k], f, None) for f in ("height", "width", "shortest_edge", "longest_edge")}
            return out
    except Exception:  # noqa: BLE001 - defaults are a best effort; the caller falls back below
        pass
    return {}


def read_preprocessing(snapshot_dir: Path, config: dict[str, Any], *, model: nn.Module | None = None) -> Preprocessing:
    """Input size, mean and std from the repo itself.

    Rules: a TimmWrapper repo's `pretrained_cfg` (else the wrapped timm model's own default config);
    otherwise `preprocessor_config.json`, with keys it leaves out taken from the defaults of the
    image processor class transformers assigns to the model type. Input size: `crop_size` (when
    center cropping), else `size`, else the model config's `image_size`. Only when none of these
    exist: mean = std = 0.5 (the transformers ViT default, which maps [0, 1] to [-1, 1]) and 224 px.
    """
    model_type = str(config.get("model_type") or "")
    if model_type == "timm_wrapper":
        return _timm_preprocessing(config, model)
    path = Path(snapshot_dir) / "preprocessor_config.json"
    proc: dict[str, Any] = {}
    source = "preprocessor_config.json"
    if path.is_file():
        try:
            proc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            warnings.warn(f"{path} is not valid JSON; using the model type's default preprocessing", stacklevel=2)
    if not proc:
        source = f"{model_type} image processor defaults"
    defaults = _processor_defaults(model_type)
    mean = _triple(proc.get("image_mean")) or _triple(defaults.get("image_mean"))
    std = _triple(proc.get("image_std")) or _triple(defaults.get("image_std"))
    if proc.get("do_normalize") is False:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if mean is None or std is None:
        warnings.warn(f"no image mean/std for model type '{model_type}'; using 0.5", stacklevel=2)
        mean, std, source = _FALLBACK_MEAN_STD, _FALLBACK_MEAN_STD, "fallback"
    vision_cfg = _cfg(model, "config", None) if model is not None else None
    image_size = _cfg(vision_cfg, "image_size", None) if vision_cfg is not None else None
    if image_size is None:
        image_size = (config.get("vision_config") or {}).get("image_size") or config.get("image_size")
    crop = proc.get("crop_size") if proc.get("do_center_crop", True) is not False else None
    size = (
        _size_of(crop)
        or _size_of(proc.get("size"))
        or _size_of(image_size)
        or _size_of(defaults.get("crop_size"))
        or _size_of(defaults.get("size"))
        or (224, 224)
    )
    return Preprocessing(size, mean, std, source)


def _timm_preprocessing(config: dict[str, Any], model: nn.Module | None) -> Preprocessing:
    cfg = dict(config.get("pretrained_cfg") or {})
    source = "config.json pretrained_cfg"
    if not cfg.get("mean") or not cfg.get("input_size"):
        inner = getattr(model, "timm_model", None)
        if inner is not None:
            from timm.data import resolve_model_data_config

            cfg = {**resolve_model_data_config(inner), **{k: v for k, v in cfg.items() if v}}
            source = "timm model default config"
    mean, std = _triple(cfg.get("mean")), _triple(cfg.get("std"))
    size = _size_of(cfg.get("input_size"))
    if mean is None or std is None or size is None:
        raise UnsupportedArchitecture("TimmWrapper repo without mean/std/input_size in its pretrained_cfg")
    return Preprocessing(size, mean, std, source)
