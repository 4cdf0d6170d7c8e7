"""The text side of transformers image-text repos (CLIP, MetaCLIP, SigLIP, SigLIP 2).

The transformers adapter loads only the vision tower of such a repo. A text objective needs two
more things, added here without building the vision tower twice: the `embedding` pseudo-layer
(the vision tower's pooled output, through the checkpoint's `visual_projection` where the family
has one; SigLIP's pooled output is the embedding itself) and a text encoder made of the repo's
own tokenizer and text tower class, loaded from the same checkpoint on the first text asked.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import MissingDependency, NoTextTower
from .vision_model import EMBEDDING, LayerSpec, VisionModel


@dataclass(frozen=True)
class TextSide:
    """How one family embeds texts: its text class, which output is the embedding, the visual
    projection's checkpoint key (None: the pooled image output is the embedding), and how it was
    trained to read texts (SigLIP: padded to the full length, no attention mask)."""

    full_class: str
    text_class: str
    output: str
    projection: str | None
    pad_to_max: bool


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "spiece.model", "tokenizer.model", "sentencepiece.bpe.model")
FAMILIES = {
    "clip": TextSide("CLIPModel", "CLIPTextModelWithProjection", "text_embeds", "visual_projection.weight", False),
    "metaclip_2": TextSide("MetaClip2Model", "MetaClip2TextModelWithProjection", "text_embeds", "visual_projection.weight", False),
    "siglip": TextSide("SiglipModel", "SiglipTextModel", "pooler_output", None, True),
    "siglip2": TextSide("Siglip2Model", "Siglip2TextModel", "pooler_output", None, True),
}


def add_text_side(vm: VisionModel, folder: Path, config: dict[str, Any], *, allow_pickle: bool) -> VisionModel:
    """`vm` with the embedding layer and a text encoder when the repo is a full image-text model;
    `vm` unchanged for vision-only repos (a `*VisionModel` checkpoint has no text tower) and for
    classifiers fine-tuned from one (`CLIPForImageClassification`: their head replaced the projection)."""
    side = FAMILIES.get(str(config.get("model_type") or ""))
    archs = config.get("architectures") or [""]
    if side is None or not isinstance(config.get("text_config"), dict) or archs[0] not in ("", side.full_class):
        return vm
    weight = None
    if side.projection is not None:
        weight = _checkpoint_tensor(Path(folder), side.projection, allow_pickle)
        if weight is None:
            return vm  # no projection in the checkpoint: the image embedding cannot be formed
    spec = LayerSpec(EMBEDDING, "", "logits", read=_EmbeddingReader(weight))
    encoder = HFTextEncoder(Path(folder), side, config, model_id=vm.id, allow_pickle=allow_pickle)
    return dataclasses.replace(vm, specs=[*vm.specs, spec], _layers=[], text_encoder=encoder,
                               embedding_layer=EMBEDDING)


class _EmbeddingReader:
    """Vision tower output -> image embedding: the pooled output, projected when there is a projection."""

    def __init__(self, weight: torch.Tensor | None) -> None:
        self.weight = weight

    def __call__(self, out: Any) -> torch.Tensor:
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            raise RuntimeError("adapter bug: the vision tower's output has no pooler_output")
        if self.weight is None:
            return pooled
        return torch.nn.functional.linear(pooled, self.weight.to(device=pooled.device, dtype=pooled.dtype))


def _checkpoint_tensor(folder: Path, key: str, allow_pickle: bool) -> torch.Tensor | None:
    """One tensor of the checkpoint, read alone (safetensors, sharded or not; pickle only if allowed)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    files = sorted(folder.glob("*.safetensors"))
    if index.is_file():
        shard = json.loads(index.read_text()).get("weight_map", {}).get(key)
        files = [folder / shard] if shard else []
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            if key in handle.keys():
                return handle.get_tensor(key).float()
    if allow_pickle:
        for f in sorted(folder.glob("*.bin")):
            state = torch.load(f, map_location="cpu", weights_only=True)
            if key in state:
                return state[key].float()
    return None


class HFTextEncoder:
    """texts -> (N, D) text embeddings with the repo's tokenizer and text tower (loaded once, lazily:
    runs that use no text never pay for the text tower)."""

    def __init__(self, folder: Path, side: TextSide, config: dict[str, Any], *, model_id: str, allow_pickle: bool) -> None:
        self.folder, self.side, self.model_id, self.allow_pickle = folder, side, model_id, allow_pickle
        self.text_config = dict(config.get("text_config") or {})
        self.projection_dim = config.get("projection_dim")
        self.max_length = int(self.text_config.get("max_position_embeddings") or 64)
        self._loaded: tuple[Any, torch.nn.Module] | None = None

    def _load(self) -> tuple[Any, torch.nn.Module]:
        if self._loaded is None:
            import transformers

            if not any((self.folder / name).is_file() for name in TOKENIZER_FILES):
                # transformers would build an empty-vocabulary tokenizer and embed every text alike
                raise NoTextTower(f"{self.model_id} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...): "
                                  "its texts cannot be embedded")
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            except ImportError as err:
                raise MissingDependency(f"{self.model_id}: its tokenizer needs a package: {str(err).splitlines()[0]}") from None
            except (OSError, ValueError, TypeError) as err:
                raise NoTextTower(f"{self.model_id}: cannot load its tokenizer ({str(err).splitlines()[0][:160]})") from None
            cls = getattr(transformers, self.side.text_class, None)
            if cls is None:
                raise NoTextTower(f"{self.model_id}: the installed transformers {transformers.__version__} has no "
                                  f"{self.side.text_class} (update transformers)")
            dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
            level = transformers.utils.logging.get_verbosity()
            transformers.utils.logging.set_verbosity_error()  # the vision weights it skips are expected
            try:
                text_config = cls.config_class(**self.text_config)
                if self.projection_dim is not None:  # the full config holds the shared width, not text_config
                    text_config.projection_dim = self.projection_dim
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = cls.from_pretrained(str(self.folder), config=text_config, local_files_only=True, **{dtype_key: torch.float32},
                                                use_safetensors=None if self.allow_pickle else True)
            finally:
                transformers.utils.logging.set_verbosity(level)
            self._loaded = (tokenizer, model.eval().requires_grad_(False))
        return self._loaded

    def __call__(self, texts: list[str]) -> torch.Tensor:
        tokenizer, model = self._load()
        padding = "max_length" if self.side.pad_to_max else True
        batch = tokenizer(texts, padding=padding, truncation=True, max_length=self.max_length, return_tensors="pt")
        inputs = {"input_ids": batch["input_ids"]}
        if not self.side.pad_to_max and "attention_mask" in batch:
            inputs["attention_mask"] = batch["attention_mask"]
        with torch.no_grad():
            return getattr(model(**inputs), self.side.output)
