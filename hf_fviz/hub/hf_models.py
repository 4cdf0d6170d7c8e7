"""transformers adapter: a transformers vision repo (a local snapshot folder) as a VisionModel.

Which class: `config.architectures[0]` decides whether the repo has a trained classifier
(`*ForImageClassification*`); everything else loads as the family's *base* model class, so a
backbone is never built through a classifier class (that would add a random head), and task
heads we cannot use (masked image modeling, ...) are left out. Multimodal CLIP/SigLIP repos load
only their vision tower, which `VisionTower` registers under the attribute name it has in the full
model (`vision_model`), so layer names equal the full model's module paths.

Module paths come from the live module tree (`named_modules()`), never from state-dict keys
(transformers v5 renames modules at load time). Layer names are those paths, unprefixed: the
VisionModel's `module` is the HF model itself, with an instance-level `forward` that takes the
batch as `pixel_values` and passes `interpolate_pos_encoding=True` where the model supports it.

Catalogue per family (input to output; `logits` last for classifiers):
- ViT-like (ViT, DeiT, BEiT, DINOv2 (+registers), CLIP, SigLIP): per block, the MLP hidden layer
  after its activation (the activation module, e.g. `vit.layers.3.mlp.activation_fn`), then the
  residual stream after the block (`vit.layers.3`); both `tokens` with the measured prefix count
  (CLS, distillation, registers) and the patch grid.
- CNNs (ConvNeXt, ResNet, RegNet): the stem, then per stage each block output and the stage output.
- Swin: per block, the MLP hidden layer and the block output, as `conv` (N, C, H, W): the (N, L, C)
  tokens are reshaped with the stage's spatial size at the actual input size (no prefix tokens).
  The last block of a stage is the stage output before patch merging.
- TimmWrapper: the inner timm model's catalogue (as the timm adapter builds it), under `timm_model.`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CorruptWeights, NotAVisionModel, UnsafeWeights, UnsupportedArchitecture
from .vision_model import LayerSpec, VisionModel, first_tensor

# model_type -> how its layers are described
_FAMILY_KIND: dict[str, str] = {
    "vit": "vit",
    "deit": "vit",
    "beit": "vit",
    "dinov2": "vit",
    "dinov2_with_registers": "vit",
    "clip": "vit",
    "clip_vision_model": "vit",
    "siglip": "vit",
    "siglip_vision_model": "vit",
    "convnext": "cnn",
    "resnet": "cnn",
    "regnet": "cnn",
    "swin": "swin",
    "timm_wrapper": "timm",
}
# multimodal model_type -> the class of its vision tower (loaded from the full checkpoint)
_TOWERS: dict[str, str] = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel"}
# backbone classes accepted as named in `architectures` (besides the family's base class)
_BACKBONES = {"CLIPVisionModel", "CLIPVisionModelWithProjection", "SiglipVisionModel"}
SUPPORTED_FAMILIES = (
    "ViT, DeiT, BEiT, DINOv2 (with registers), CLIP and SigLIP vision towers, ConvNeXt, ResNet, RegNet, Swin, "
    "TimmWrapper"
)
_ACT_MODULES = ("transformers.activations", "torch.nn.modules.activation")
_FALLBACK_MEAN_STD = (0.5, 0.5, 0.5)
_MAX_PREFIX_TOKENS = 32


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
    kind = _check_family(model_id, model_type, arch)
    class_name, classifier, tower = _choose_class(model_type, arch)
    hf_model = _from_pretrained(class_name, snapshot_dir, model_id=model_id, allow_pickle=allow_pickle,
                                classifier=classifier)
    hf_model.eval()

    forward = _PixelForward.install(hf_model)
    module: nn.Module = VisionTower(hf_model, attr=tower) if tower else hf_model
    prep = read_preprocessing(snapshot_dir, config, model=hf_model)

    if kind == "vit":
        specs = _vit_specs(module, hf_model.config, prep.input_size)
        family = "vit"
    elif kind == "cnn":
        specs = _cnn_specs(module, hf_model.config)
        family = "cnn"
    elif kind == "swin":
        specs = _swin_specs(module, hf_model.config, forward)
        family = "vit"
    else:
        specs, family = _timm_specs(module)
    if not specs:
        raise UnsupportedArchitecture(
            f"{model_id}: found no layers to hook in {class_name}. Supported families: {SUPPORTED_FAMILIES}."
        )

    labels, aliases = _labels(hf_model.config) if classifier else (None, None)
    module.to(device)
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
    return output.logits


# ---------------------------------------------------------------------------------------- which class
def _check_family(model_id: str, model_type: str, arch: str) -> str:
    """The family kind for a supported model_type; else NotAVisionModel / UnsupportedArchitecture."""
    if model_type in _FAMILY_KIND:
        return _FAMILY_KIND[model_type]
    modality = _modality(model_type, arch)
    what = f"{arch or 'model'} (model_type '{model_type or '?'}')"
    if modality is not None:
        raise NotAVisionModel(
            f"{model_id} is {_article(modality)} {modality} model, {what}, not an image model: "
            "hf-fviz visualizes vision models."
        )
    raise UnsupportedArchitecture(
        f"{model_id}: architecture {what} is not supported by hf-fviz; supported transformers families: "
        f"{SUPPORTED_FAMILIES}."
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
                     classifier: bool) -> nn.Module:
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
        model, info = cls.from_pretrained(str(snapshot_dir), **kwargs)
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


# ---------------------------------------------------------------------------------------- module wrapping
class _PixelForward:
    """Instance-level `forward` for an HF model: the batch goes in as `pixel_values` (plus
    `interpolate_pos_encoding=True` where supported, so canvases of other sizes work), and the
    input size is remembered for layers that must be reshaped at the actual size (Swin)."""

    def __init__(self, bound: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        self.bound = bound
        self.kwargs = kwargs
        self.hw: tuple[int, int] | None = None

    @classmethod
    def install(cls, model: nn.Module) -> _PixelForward:
        params = inspect.signature(type(model).forward).parameters
        kwargs = {"interpolate_pos_encoding": True} if "interpolate_pos_encoding" in params else {}
        fwd = cls(model.forward, kwargs)
        model.forward = fwd  # type: ignore[method-assign]
        return fwd

    def __call__(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        self.hw = (int(pixel_values.shape[-2]), int(pixel_values.shape[-1]))
        return self.bound(pixel_values=pixel_values, **{**self.kwargs, **kwargs})


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


# ---------------------------------------------------------------------------------------- catalogues
def _cfg(config: Any, name: str, default: Any = None) -> Any:
    return getattr(config, name, default)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[-1])
    return int(v), int(v)


def _module_lists(root: nn.Module, length: int) -> list[str]:
    """Paths of the ModuleLists/Sequentials of `length` children all of one class (block stacks)."""
    out = []
    for name, m in root.named_modules():
        if isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) == length and length > 0:
            if len({type(c) for c in m}) == 1:
                out.append(name)
    return out


def _shared_ids(root: nn.Module) -> set[int]:
    """Ids of modules reachable under more than one path: hooking those would fire at the wrong place."""
    seen: dict[int, int] = {}
    for _, m in root.named_modules(remove_duplicate=False):
        seen[id(m)] = seen.get(id(m), 0) + 1
    return {k for k, n in seen.items() if n > 1}


def _mlp_activation(block: nn.Module, block_path: str, shared: set[int]) -> str | None:
    """Path of the block's MLP activation module (its output is the MLP hidden layer after the
    non-linearity), skipping anything inside attention; None when the activation is not a module
    of its own (e.g. a functional SwiGLU) or is shared between blocks."""
    found = None
    for name, m in block.named_modules():
        if not name or list(m.children()):
            continue
        parts = name.split(".")
        if any("attn" in p or "attention" in p for p in parts):
            continue
        if type(m).__module__.startswith(_ACT_MODULES):
            found = (name, m)
    if found is None or id(found[1]) in shared:
        return None
    return f"{block_path}.{found[0]}"


class _Stop(Exception):
    pass


def _tokens_at(root: nn.Module, path: str, size: tuple[int, int]) -> int:
    """Token count at a module's output for one zero image at `size`, running only up to it."""
    module = root.get_submodule(path)
    seen: list[int] = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        seen.append(first_tensor(out).shape[1])
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            root(torch.zeros(1, 3, *size, device=next(root.parameters()).device))
    except _Stop:
        pass
    finally:
        handle.remove()
    if not seen:
        raise RuntimeError(f"adapter bug: {path} not reached in the forward pass")
    return seen[0]


def _vit_specs(root: nn.Module, config: Any, input_size: tuple[int, int]) -> list[LayerSpec]:
    depth = _cfg(config, "num_hidden_layers")
    stacks = _module_lists(root, int(depth)) if depth else []
    if not stacks:
        return []
    stack = stacks[0]
    ph, pw = _pair(_cfg(config, "patch_size", 16))
    grid = (input_size[0] // ph, input_size[1] // pw)
    first = f"{stack}.0"
    prefix = _tokens_at(root, first, input_size) - grid[0] * grid[1]
    if not 0 <= prefix <= _MAX_PREFIX_TOKENS:
        raise RuntimeError(f"adapter bug: {prefix} prefix tokens measured for a {grid} patch grid")
    shared = _shared_ids(root)
    specs = []
    for i, block in enumerate(root.get_submodule(stack)):
        path = f"{stack}.{i}"
        act = _mlp_activation(block, path, shared)
        if act is not None:
            specs.append(LayerSpec(act, act, "tokens", prefix_tokens=prefix, grid=grid))
        specs.append(LayerSpec(path, path, "tokens", prefix_tokens=prefix, grid=grid))
    return specs


def _stage_blocks(stage: nn.Module, depth: int) -> str | None:
    """The child container holding a stage's blocks: `layers`/`blocks` first, else any block list of `depth`."""
    for name in ("layers", "blocks"):
        c = getattr(stage, name, None)
        if isinstance(c, (nn.ModuleList, nn.Sequential)) and len(c) == depth:
            return name
    for name, c in stage.named_children():
        if isinstance(c, (nn.ModuleList, nn.Sequential)) and len(c) == depth:
            return name
    return None


def _stages(root: nn.Module, config: Any) -> tuple[str, list[int]] | None:
    depths = list(_cfg(config, "depths", None) or [])
    if not depths:
        return None
    stacks = _module_lists(root, len(depths))
    stacks.sort(key=lambda p: not p.endswith(("stages", "layers")))  # prefer the named stage lists
    for stack in stacks:
        stages = list(root.get_submodule(stack))
        if all(_stage_blocks(s, d) for s, d in zip(stages, depths)):
            return stack, depths
    return None


def _cnn_specs(root: nn.Module, config: Any) -> list[LayerSpec]:
    found = _stages(root, config)
    if found is None:
        return []
    stack, depths = found
    specs = []
    base = stack.rsplit(".", 2)[0] if stack.count(".") >= 2 else ""
    for stem in ("embeddings", "embedder"):
        path = f"{base}.{stem}" if base else stem
        if path in dict(root.named_modules()):
            specs.append(LayerSpec(path, path, "conv"))
            break
    for s, (stage, depth) in enumerate(zip(root.get_submodule(stack), depths)):
        inner = _stage_blocks(stage, depth)
        for j in range(depth):
            path = f"{stack}.{s}.{inner}.{j}"
            specs.append(LayerSpec(path, path, "conv"))
        specs.append(LayerSpec(f"{stack}.{s}", f"{stack}.{s}", "conv"))
    return specs


def _swin_grid(hw: tuple[int, int], patch: tuple[int, int], stage: int) -> tuple[int, int]:
    """Spatial size of a Swin stage: ceil(size / patch), then halved (rounding up) per merge."""
    h, w = math.ceil(hw[0] / patch[0]), math.ceil(hw[1] / patch[1])
    for _ in range(stage):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


def _swin_reader(forward: _PixelForward, patch: tuple[int, int], stage: int) -> Callable[[Any], torch.Tensor]:
    def read(out: Any) -> torch.Tensor:
        t = first_tensor(out)
        n, length, c = t.shape
        if forward.hw is None:
            raise RuntimeError("Swin layer read outside the model's forward")
        h, w = _swin_grid(forward.hw, patch, stage)
        if h * w != length:
            raise RuntimeError(f"adapter bug: Swin stage {stage} has {length} tokens, expected {h}x{w}")
        return t.transpose(1, 2).reshape(n, c, h, w)

    return read


def _swin_specs(root: nn.Module, config: Any, forward: _PixelForward) -> list[LayerSpec]:
    found = _stages(root, config)
    if found is None:
        return []
    stack, depths = found
    patch = _pair(_cfg(config, "patch_size", 4))
    shared = _shared_ids(root)
    specs = []
    for s, (stage, depth) in enumerate(zip(root.get_submodule(stack), depths)):
        inner = _stage_blocks(stage, depth)
        read = _swin_reader(forward, patch, s)
        for j, block in enumerate(stage.get_submodule(inner)):
            path = f"{stack}.{s}.{inner}.{j}"
            act = _mlp_activation(block, path, shared)
            if act is not None:
                specs.append(LayerSpec(act, act, "conv", read=read))
            specs.append(LayerSpec(path, path, "conv", read=read))
    return specs


def _timm_specs(root: nn.Module) -> tuple[list[LayerSpec], str]:
    """The timm adapter's catalogue of the wrapped timm model, re-rooted under `timm_model.`."""
    from . import timm_models

    inner = getattr(root, "timm_model", None)
    if inner is None:
        return [], "cnn"
    is_vit = hasattr(inner, "num_prefix_tokens") and isinstance(getattr(inner, "blocks", None), (nn.Sequential, nn.ModuleList))
    specs = timm_models._vit_specs(inner) if is_vit else timm_models._cnn_specs(inner)
    out = [
        dataclasses.replace(sp, name=f"timm_model.{sp.name}",
                            module_path=None if sp.module_path is None else f"timm_model.{sp.module_path}")
        for sp in specs
    ]
    family = "vit" if is_vit or "swin" in type(inner).__name__.lower() else "cnn"
    return out, family


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
