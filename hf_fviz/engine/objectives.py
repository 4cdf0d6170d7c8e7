"""Objectives: what a visualization excites, as a value per image computed from activations.

An objective knows the layer(s) it reads and maps their activations, in the canonical layouts of
`VisionModel` (conv N,C,H,W; tokens N,T,C; logits N,K), to one value per row:

    >>> from hf_fviz import objectives as obj
    >>> o = obj.channel("layer3", 7) - 0.5 * obj.channel("layer3", 9) + obj.class_logit(285)

Image-text models: `text("a red apple")` maximizes the cosine similarity between the image
embedding and that text's embedding from the model's own text tower; it is embedded once, when
`visualize()` binds the objective to its model (`objective.bind(model)` does it by hand).

Token layers: a channel is averaged over the patch tokens only (CLS, distillation and register
tokens excluded); a neuron picks one patch (default: the centre of the grid).

Batching: `BatchObjective([o_1, ..., o_N], layers, crops=K)` evaluates N objectives at once on
activations whose rows are grouped per image (K crops of image i in rows i*K..i*K+K-1) and returns
the mean over crops per image, shape (N,). When the N objectives share one structure and differ
only in their units (the usual "one image per unit" case) this is one vectorized gather; other
mixes fall back to evaluating each objective on its own rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidSettings
from ..hub.vision_model import LOGITS, Layer

Acts = Mapping[str, torch.Tensor]


def _infer_layer(name: str, act: torch.Tensor) -> Layer:
    """A stand-in Layer for plain tensors (tests, user code without a VisionModel)."""
    kind = {4: "conv", 3: "tokens", 2: "logits"}.get(act.ndim)
    if kind is None:
        raise ValueError(f"activations of layer '{name}' have {act.ndim} dims; expected 2 (logits), 3 (tokens) or 4 (conv)")
    units = act.shape[1] if kind != "tokens" else act.shape[-1]
    return Layer(name, kind, units, tuple(act.shape[1:]))  # type: ignore[arg-type]


def _patch_tokens(act: torch.Tensor, info: Layer) -> torch.Tensor:
    return act[:, info.prefix_tokens :, :]


class Objective:
    """Base class: a differentiable map from activations to one value per row, with + - * algebra."""

    def layers(self) -> tuple[str, ...]:
        raise NotImplementedError

    def structure(self) -> tuple[Any, ...]:
        """Hashable description without the per-unit parameters (used to vectorize batches)."""
        raise NotImplementedError

    def params(self) -> list[torch.Tensor]:
        """The per-unit parameters of every leaf, in tree order (unit index, position, direction)."""
        raise NotImplementedError

    def evaluate(self, acts: Acts, info: Mapping[str, Layer], params: Iterator[torch.Tensor]) -> torch.Tensor:
        """Values (rows,) given per-row parameters drawn from `params` in tree order."""
        raise NotImplementedError

    def bind(self, model: Any) -> Objective:
        """This objective with whatever needs the model filled in (a text's embedding); most need nothing."""
        return self

    def __call__(self, acts: Acts | torch.Tensor, info: Mapping[str, Layer] | None = None) -> torch.Tensor:
        """One value per row of the activations (a tensor is taken as this objective's only layer)."""
        if isinstance(acts, torch.Tensor):
            (name,) = self.layers()
            acts = {name: acts}
        info = dict(info or {})
        for name, act in acts.items():
            info.setdefault(name, _infer_layer(name, act))
        rows = next(iter(acts.values())).shape[0]
        per_row = [p.to(next(iter(acts.values())).device).unsqueeze(0).expand(rows, *p.shape) for p in self.params()]
        return self.evaluate(acts, info, iter(per_row))

    # algebra -----------------------------------------------------------------
    def __add__(self, other: Objective) -> Objective:
        return Sum((self, other), (1.0, 1.0))

    def __sub__(self, other: Objective) -> Objective:
        return Sum((self, other), (1.0, -1.0))

    def __mul__(self, k: float) -> Objective:
        if not isinstance(k, (int, float)):
            return NotImplemented
        return Sum((self,), (float(k),))

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return self * -1.0

    def __truediv__(self, k: float) -> Objective:
        return self * (1.0 / k)


@dataclass(frozen=True, eq=False)
class Sum(Objective):
    """Weighted sum of objectives (built by + - *)."""

    terms: tuple[Objective, ...]
    weights: tuple[float, ...]

    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for t in self.terms for name in t.layers()))

    def structure(self) -> tuple[Any, ...]:
        return ("sum", self.weights, tuple(t.structure() for t in self.terms))

    def params(self) -> list[torch.Tensor]:
        return [p for t in self.terms for p in t.params()]

    def bind(self, model: Any) -> Objective:
        return Sum(tuple(t.bind(model) for t in self.terms), self.weights)

    def evaluate(self, acts: Acts, info: Mapping[str, Layer], params: Iterator[torch.Tensor]) -> torch.Tensor:
        total = None
        for w, t in zip(self.weights, self.terms):
            v = t.evaluate(acts, info, params) * w
            total = v if total is None else total + v
        assert total is not None
        return total

    def __repr__(self) -> str:
        return " + ".join(f"{w:g}*{t!r}" for w, t in zip(self.weights, self.terms))


class _Leaf(Objective):
    layer: str

    def layers(self) -> tuple[str, ...]:
        return (self.layer,)


@dataclass(frozen=True, eq=False)
class Channel(_Leaf):
    """Mean of one channel: over space (conv), over patch tokens (tokens), or the logit itself."""

    layer: str
    unit: int

    def structure(self) -> tuple[Any, ...]:
        return ("channel", self.layer)

    def params(self) -> list[torch.Tensor]:
        return [torch.tensor(self.unit, dtype=torch.long)]

    def evaluate(self, acts: Acts, info: Mapping[str, Layer], params: Iterator[torch.Tensor]) -> torch.Tensor:
        act, lay, unit = acts[self.layer], info[self.layer], next(params)
        rows = torch.arange(act.shape[0], device=act.device)
        if lay.kind == "conv":
            return act[rows, unit].float().mean(dim=(-2, -1))
        if lay.kind == "tokens":
            return _patch_tokens(act, lay)[rows, :, unit].float().mean(dim=-1)
        return act[rows, unit].float()


@dataclass(frozen=True, eq=False)
class Neuron(_Leaf):
    """One unit at one position: (y, x) on the conv map or the patch grid, or a patch index;
    None = the centre. On logits it is the logit."""

    layer: str
    unit: int
    position: tuple[int, int] | int | None = None

    def structure(self) -> tuple[Any, ...]:
        return ("neuron", self.layer)

    def params(self) -> list[torch.Tensor]:
        if self.position is None:
            pos = (-1, -1)
        elif isinstance(self.position, int):
            pos = (-2, self.position)  # patch index
        else:
            pos = tuple(self.position)
        return [torch.tensor([self.unit, *pos], dtype=torch.long)]

    def evaluate(self, acts: Acts, info: Mapping[str, Layer], params: Iterator[torch.Tensor]) -> torch.Tensor:
        act, lay, p = acts[self.layer], info[self.layer], next(params)
        rows = torch.arange(act.shape[0], device=act.device)
        unit, y, x = p[:, 0], p[:, 1], p[:, 2]
        if lay.kind == "conv":
            h, w = act.shape[-2:]
            centre = y == -1
            y = torch.where(centre, h // 2, y)
            x = torch.where(centre, w // 2, x)
            return act[rows, unit, y, x].float()
        if lay.kind == "tokens":
            tokens = _patch_tokens(act, lay)
            n = tokens.shape[1]
            gh, gw = lay.grid if lay.grid else (1, n)
            index = torch.where(y == -2, x, y * gw + x)
            index = torch.where(y == -1, (gh // 2) * gw + gw // 2 if lay.grid else n // 2, index)
            return tokens[rows, index, unit].float()
        return act[rows, unit].float()


@dataclass(frozen=True, eq=False)
class LayerEnergy(_Leaf):
    """DeepDream: mean of squared activations of the whole layer (patch tokens for token layers)."""

    layer: str

    def structure(self) -> tuple[Any, ...]:
        return ("deepdream", self.layer)

    def params(self) -> list[torch.Tensor]:
        return []

    def evaluate(self, acts: Acts, info: Mapping[str, Layer], params: Iterator[torch.Tensor]) -> torch.Tensor:
        act, lay = acts[self.layer], info[self.layer]
        if lay.kind == "tokens":
            act = _patch_tokens(act, lay)
        return act.float().pow(2).flatten(1).mean(dim=1)


@dataclass(frozen=True, eq=False)
class Direction(_Leaf):
    """Lucid's direction objective: dot(a, v) · max(cos(a, v), 0.1)^cossim_pow, at every position
    (conv) or patch token, averaged; on logits, on the logit vector."""

    layer: str
    vector: tuple[float, ...]
    cossim_pow: float = 2.0

    def structure(self) -> tuple[Any, ...]:
        return ("direction", self.layer, self.cossim_pow, len(self.vector))

    def params(self) -> list[torch.Tensor]:
        return [torch.tensor(self.vector, dtype=torch.float32)]

    def evaluate(self, acts: Acts, info: Mapping[str, Layer], params: Iterator[torch.Tensor]) -> torch.Tensor:
        act, lay, v = acts[self.layer].float(), info[self.layer], next(params).float()
        if lay.kind == "conv":
            a = act.flatten(2).transpose(1, 2)  # rows, positions, C
        elif lay.kind == "tokens":
            a = _patch_tokens(act, lay)
        else:
            a = act[:, None, :]
        if a.shape[-1] != v.shape[-1]:
            raise ValueError(f"direction has {v.shape[-1]} values but layer '{self.layer}' has {a.shape[-1]} channels")
        v = v[:, None, :]
        dot = (a * v).sum(-1)
        cos = dot / (a.norm(dim=-1) * v.norm(dim=-1) + 1e-8)
        out = dot * cos.clamp_min(0.1).pow(self.cossim_pow) if self.cossim_pow else dot
        return out.mean(dim=1)


@dataclass(frozen=True, eq=False)
class TextSimilarity(_Leaf):
    """Cosine similarity between the image embedding (the model's `embedding_layer`, N x D) and a
    text's embedding in the same space (CLIP's zero-shot score, without the temperature)."""

    layer: str
    vector: tuple[float, ...]
    prompt: str = ""

    def structure(self) -> tuple[Any, ...]:
        return ("text", self.layer, len(self.vector))

    def params(self) -> list[torch.Tensor]:
        return [torch.tensor(self.vector, dtype=torch.float32)]

    def evaluate(self, acts: Acts, info: Mapping[str, Layer], params: Iterator[torch.Tensor]) -> torch.Tensor:
        a, v = acts[self.layer].float().flatten(1), next(params).float()
        if a.shape[-1] != v.shape[-1]:
            raise ValueError(f"text embedding has {v.shape[-1]} values but layer '{self.layer}' has {a.shape[-1]}")
        return torch.nn.functional.cosine_similarity(a, v, dim=-1)

    def __repr__(self) -> str:
        return f"text({self.prompt!r})"


@dataclass(frozen=True, eq=False)
class Text(Objective):
    """A text not embedded yet: `bind(model)` embeds it (no gradient, once) with the model's own
    tokenizer and text tower and returns the `TextSimilarity` to maximize."""

    prompt: str

    def bind(self, model: Any) -> Objective:
        vector = model.embed_text([self.prompt])[0]  # NoTextTower for models without a text tower
        return TextSimilarity(model.embedding_layer, tuple(vector.tolist()), self.prompt)

    def _unbound(self) -> InvalidSettings:
        return InvalidSettings(f"{self!r} is not bound to a model: pass it to visualize() or call .bind(model) first")

    def layers(self) -> tuple[str, ...]:
        raise self._unbound()

    def structure(self) -> tuple[Any, ...]:
        raise self._unbound()

    def params(self) -> list[torch.Tensor]:
        raise self._unbound()

    def evaluate(self, acts: Acts, info: Mapping[str, Layer], params: Iterator[torch.Tensor]) -> torch.Tensor:
        raise self._unbound()

    def __repr__(self) -> str:
        return f"text({self.prompt!r})"


# ---------------------------------------------------------------------------- constructors
def pool(act: torch.Tensor, info: Layer) -> torch.Tensor:
    """Canonical activations -> one vector per row: conv spatial mean, patch-token mean, logits."""
    if info.kind == "conv":
        return act.float().mean(dim=(-2, -1))
    if info.kind == "tokens":
        return act[:, info.prefix_tokens :, :].float().mean(dim=1)
    return act.float()


def charbonnier(x: torch.Tensor) -> torch.Tensor:
    """ρ(x) = √(x² + 1) − 1: Barron's adaptive loss at its defaults (α = 1, c = 1)."""
    return torch.sqrt(x * x + 1.0) - 1.0


@dataclass(frozen=True, eq=False)
class PooledDistance(_Leaf):
    """Mean Charbonnier distance between the layer's pooled activations, divided by `scale`, and a
    `target` vector (the dual objective's distance term: give it a negative weight)."""

    layer: str
    target: torch.Tensor  # (C,)
    scale: float

    def structure(self) -> tuple[Any, ...]:
        return ("pooled_distance", self.layer, self.scale)

    def params(self) -> list[torch.Tensor]:
        return [self.target]

    def evaluate(self, acts: Acts, info: Mapping[str, Layer], params: Iterator[torch.Tensor]) -> torch.Tensor:
        u = pool(acts[self.layer], info[self.layer]).float() / self.scale
        t = next(params).to(u.device)
        return charbonnier(u - t).mean(dim=1)


@dataclass(frozen=True, eq=False)
class PooledMatch(_Leaf):
    """The pooled activations' (÷ `scale`) dot product with `target` on the channels of `top`,
    divided by the target's own: 1.0 when the image matches the target there (the dual
    objective's activation term)."""

    layer: str
    target: torch.Tensor  # (C,)
    top: torch.Tensor  # (C,) bool
    scale: float

    def structure(self) -> tuple[Any, ...]:
        return ("pooled_match", self.layer, self.scale)

    def params(self) -> list[torch.Tensor]:
        return [self.target, self.top]

    def evaluate(self, acts: Acts, info: Mapping[str, Layer], params: Iterator[torch.Tensor]) -> torch.Tensor:
        u = pool(acts[self.layer], info[self.layer]).float() / self.scale
        t = next(params).to(u.device)
        mask = next(params).to(u.device).float()
        return (u * t * mask).sum(dim=1) / (t * t * mask).sum(dim=1).clamp_min(1e-12)


def channel(layer: str, unit: int) -> Objective:
    """Mean activation of channel `unit` of `layer` (patch tokens only on token layers)."""
    return Channel(layer, int(unit))


def neuron(layer: str, unit: int, position: tuple[int, int] | int | None = None) -> Objective:
    """Channel `unit` at one position (y, x) or patch index; default the centre."""
    return Neuron(layer, int(unit), position)


def deepdream(layer: str) -> Objective:
    """Mean of squared activations of a whole layer (DeepDream)."""
    return LayerEnergy(layer)


layer_energy = deepdream


def class_logit(unit: int) -> Objective:
    """The pre-softmax logit of class `unit`."""
    return Channel(LOGITS, int(unit))


def direction(layer: str, vector: Sequence[float] | torch.Tensor, *, cossim_pow: float = 2.0) -> Objective:
    """A direction in a layer's channel space (e.g. a concept vector), Lucid's dot x cos^pow."""
    vec = vector.detach().flatten().tolist() if isinstance(vector, torch.Tensor) else [float(v) for v in vector]
    return Direction(layer, tuple(vec), float(cossim_pow))


def text(prompt: str) -> Objective:
    """Cosine similarity between the image embedding and `prompt`'s embedding from the model's own
    text tower and tokenizer (image-text models: OpenCLIP, CLIP, SigLIP, MetaCLIP)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidSettings("a text objective needs a non-empty text")
    return Text(prompt.strip())


def dual(layer: str, target: torch.Tensor, top: torch.Tensor, scale: float, *, distance_weight: float,
         activation_weight: float) -> Objective:
    """The dual objective of one cluster (The Mind's Eye; engine/dual.py): excite the target's
    top channels, stay close to the target: w_a · match − w_d · distance."""
    return activation_weight * PooledMatch(layer, target, top, scale) - distance_weight * PooledDistance(layer, target, scale)


def for_unit(layer: Layer | str, unit: int) -> Objective:
    """The default objective of a unit: its logit on `logits`, its channel mean elsewhere."""
    name = layer.name if isinstance(layer, Layer) else layer
    return class_logit(unit) if name == LOGITS else channel(name, unit)


# ---------------------------------------------------------------------------- batching
class BatchObjective:
    """N objectives, one per image, evaluated on rows grouped per image (K rows each).

    `__call__(acts) -> (N,)`: each image's objective averaged over its K crops.
    """

    def __init__(self, objectives: Sequence[Objective], info: Mapping[str, Layer], *, crops: int) -> None:
        if not objectives:
            raise ValueError("BatchObjective needs at least one objective")
        self.objectives = list(objectives)
        self.info = dict(info)
        self.crops = crops
        self.layers = tuple(dict.fromkeys(n for o in self.objectives for n in o.layers()))
        first = self.objectives[0].structure()
        self.vectorized = all(o.structure() == first for o in self.objectives)
        # Per-image parameters stacked once: leaf j -> (N, ...)
        self._stacked = [torch.stack(ps) for ps in zip(*(o.params() for o in self.objectives))] if self.vectorized else []

    def with_crops(self, crops: int) -> BatchObjective:
        return BatchObjective(self.objectives, self.info, crops=crops)

    def __call__(self, acts: Acts) -> torch.Tensor:
        any_act = next(iter(acts.values()))
        n, k = len(self.objectives), self.crops
        if any_act.shape[0] != n * k:
            raise ValueError(f"expected {n}x{k} rows of activations, got {any_act.shape[0]}")
        info = dict(self.info)
        for name, act in acts.items():
            info.setdefault(name, _infer_layer(name, act))
        if self.vectorized:
            per_row = iter([p.to(any_act.device).repeat_interleave(k, dim=0) for p in self._stacked])
            values = self.objectives[0].evaluate(acts, info, per_row)
            return values.view(n, k).mean(dim=1)
        out = []
        for i, o in enumerate(self.objectives):  # mixed structures: one slice per image
            sub = {name: act[i * k : (i + 1) * k] for name, act in acts.items()}
            out.append(o(sub, info).mean())
        return torch.stack(out)
