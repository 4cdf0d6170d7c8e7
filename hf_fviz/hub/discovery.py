"""Layer discovery by probing: one forward pass finds the layers worth visualizing in any model.

No list of families. One no-grad forward pass at the model's input size, with a hook on every
module, records what each module is called with and returns (order, call count, tensor shapes).
From the module tree and that record:

- **blocks**: the children of every *stack* (a container whose children are numbered: `blocks.0`,
  `layer1.2`, `denseblock1.denselayer3`); **stages**: stacks that have sibling stacks (ResNet's
  `layer1..4`, DenseNet's dense blocks) and timm's `feature_info` modules. Without any stack of
  blocks (VGG), the activations of the numbered leaf containers; without those, the model's
  top-level children.
- **stem** and **pre-pool map**: the last top-level feature map before the first block, and after
  the last one (when still at the last block's resolution, pooling modules excluded).
- **MLP hidden layer** of every block whose last expanding projection (`fc2`: a Linear, or a 1x1
  conv in an MLP, with more inputs than outputs) is found: read at that projection's input (or the
  input of a norm right before it), so gated MLPs (SwiGLU, an activation called as a function)
  are read after gating; named after the block's activation module when there is one.
- each output is classified by shape: NCHW or NHWC maps (the layout whose spatial sides match the
  input size at one stride; ties go to the stack's other blocks, then to the model's own
  `output_fmt`), token sequences (N, T, C) with their prefix-token count and patch grid (solved
  from T and the input size, timm's `num_prefix_tokens` first), pooled vectors and logits (not
  listed). Prefix-free token sequences of hierarchical models (Swin, PVT, SegFormer: the token
  count changes between blocks) are maps and come out NCHW, their grid computed at each call from
  the actual input size.

What is specific to a family is data: `UNORDERED_TOKENS` (token order that is not row-major).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .vision_model import LayerSpec, first_tensor, input_hw, nhwc_to_nchw, set_input_hw

# Module classes whose token sequences are not in row-major patch order (Hiera's "unrolled"
# order): their tokens keep kind `tokens` without a grid, so only orderless objectives use them.
UNORDERED_TOKENS = ("Hiera",)
# Words that make a 1x1 convolution an MLP projection (a Linear always is one).
_MLP_WORDS = ("mlp", "ffn", "feed_forward", "feedforward", "channel_mixer", "pwconv")
_ACT_MODULES = ("torch.nn.modules.activation", "transformers.activations", "timm.layers.activations")
_NOT_ACT = ("Softmax", "Softmin", "LogSoftmax", "MultiheadAttention", "Threshold")
_ACT_NAMES = re.compile(r"(ReLU\d*|GELU|GeLU|SiLU|Swish|Mish|Sigmoid|Tanh|ELU|Act)$")  # StarReLU, QuickGELU, ...
_MAX_PREFIX_TOKENS = 32
_NUMBERED = re.compile(r"^(.*?)(\d+)$")

# ---------------------------------------------------------------------------------------- probing
@dataclass
class Call:
    """What the probe saw of one module: when it started and ended, how often it ran, shapes."""

    start: int = -1
    done: int = -1
    calls: int = 0
    out: tuple[int, ...] | None = None
    inp: tuple[int, ...] | None = None
    out_index: int | None = None


def _shape(value: Any) -> tuple[int, ...] | None:
    try:
        return tuple(first_tensor(value).shape)
    except (TypeError, IndexError):
        return None


def _main_output(value: Any) -> tuple[int | None, tuple[int, ...] | None]:
    """(index in a tuple output, shape) of a module's per-image feature tensor: in a tuple, the
    first item with the probe's batch of 1 (TNT returns inner pixel tokens, batched per patch,
    before the patch tokens)."""
    if isinstance(value, (tuple, list)) and not isinstance(value, torch.Tensor):
        for i, item in enumerate(value):
            if isinstance(item, torch.Tensor) and item.ndim in (3, 4) and item.shape[0] == 1:
                return (i if i else None), tuple(item.shape)
    return None, _shape(value)


def probe(root: nn.Module, x: torch.Tensor) -> dict[str, Call]:
    """Run `root(x)` once without gradients and record every (non-shared) module's call."""
    seen: dict[str, Call] = {}
    counter = [0]
    handles = []
    shared = shared_ids(root)

    def pre(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, inputs: Any) -> None:
            call = seen.setdefault(name, Call())
            call.calls += 1
            if call.calls == 1:
                call.start, counter[0] = counter[0], counter[0] + 1
                call.inp = _shape(inputs)
        return hook

    def post(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: Any, output: Any) -> None:
            call = seen[name]
            if call.done < 0:
                call.done, counter[0] = counter[0], counter[0] + 1
                call.out_index, call.out = _main_output(output)
        return hook

    for name, m in root.named_modules():
        if name and id(m) not in shared:
            handles.append(m.register_forward_pre_hook(pre(name)))
            handles.append(m.register_forward_hook(post(name)))
    try:
        with torch.no_grad():
            out = root(x)
    finally:
        for h in handles:
            h.remove()
    seen[""] = Call(0, counter[0], 1, _shape(out), tuple(x.shape))
    return seen


def shared_ids(root: nn.Module) -> set[int]:
    """Ids of modules reachable under more than one path: a hook there fires in several places."""
    count: dict[int, int] = {}
    for _, m in root.named_modules(remove_duplicate=False):
        count[id(m)] = count.get(id(m), 0) + 1
    return {k for k, n in count.items() if n > 1}


# ---------------------------------------------------------------------------------------- shapes
def _is_grid(h: int, w: int, hw: tuple[int, int]) -> bool:
    """Whether (h, w) is the input's (H, W) seen at one stride (rounding either way)."""
    if h < 1 or w < 1 or h > hw[0] or w > hw[1]:
        return False
    return any(abs(h - hw[0] / s) < 1 and abs(w - hw[1] / s) < 1 for s in (hw[0] / h, hw[1] / w))


def solve_grid(n: int, hw: tuple[int, int], stride: float | None = None) -> tuple[int, int] | None:
    """(rows, cols) of `n` patch tokens for an input of size `hw`: first at `stride` (ceil, floor,
    round), else the factorization of n closest to the input's aspect ratio at one stride."""
    if n < 1:
        return None
    if stride:
        for f in (math.ceil, math.floor, round):
            gh, gw = max(1, int(f(hw[0] / stride))), max(1, int(f(hw[1] / stride)))
            if gh * gw == n:
                return gh, gw
    best = None
    for gh in range(1, int(math.isqrt(n)) + 1):
        if n % gh:
            continue
        for a, b in ((gh, n // gh), (n // gh, gh)):
            if _is_grid(a, b, hw):
                err = abs(math.log((hw[0] / a) / (hw[1] / b)))
                if best is None or err < best[0]:
                    best = (err, (a, b))
    return best[1] if best else None


def _prefix_and_grid(tokens: int, hw: tuple[int, int], hint: int | None) -> tuple[int, tuple[int, int] | None]:
    """Prefix-token count and patch grid of a (T, C) sequence: the smallest prefix (the model's
    own count first) leaving a grid whose stride divides the input evenly, else any grid."""
    order = ([hint] if hint is not None else []) + [p for p in range(_MAX_PREFIX_TOKENS + 1) if p != hint]
    for exact in (True, False):
        for p in order:
            grid = solve_grid(tokens - p, hw)
            if grid and (not exact or (hw[0] % grid[0] == 0 and hw[1] % grid[1] == 0)):
                return p, grid
    return (hint or 0), None


# ---------------------------------------------------------------------------------------- tree
def _children(m: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, c) for n, c in m.named_children() if not isinstance(c, nn.Identity)]


def _is_leaf(m: nn.Module) -> bool:
    return not any(True for _ in m.children())


def _is_stack(m: nn.Module) -> bool:
    """Children all numbered with one prefix (`0, 1, ...` or `denselayer1, denselayer2, ...`)."""
    names = [n for n, _ in m.named_children()]
    if not names:
        return False
    found = [_NUMBERED.match(n) for n in names]
    if not all(found):
        return False
    prefixes = {f.group(1) for f in found if f}
    return len(prefixes) == 1 and (len(names) >= 2 or prefixes == {""})


def _is_activation(m: nn.Module) -> bool:
    name = type(m).__name__
    if any(w in name for w in _NOT_ACT):
        return False
    return type(m).__module__.startswith(_ACT_MODULES) or bool(_ACT_NAMES.search(name))


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _ancestors(path: str) -> Iterable[str]:
    while path:
        path = _parent(path)
        yield path


# ---------------------------------------------------------------------------------------- discovery
@dataclass
class Found:
    """One discovered layer before it becomes a LayerSpec."""

    name: str
    path: str
    shape: tuple[int, ...]  # raw shape of what is read (batch 1)
    on_input: bool = False
    role: str = "block"  # block | stage | stem | prepool | mlp
    layout: str = ""  # NCHW | NHWC | tokens
    stack: str = ""
    index: int | None = None  # item of a tuple output


@dataclass
class Discovery:
    root: nn.Module
    calls: dict[str, Call]
    hw: tuple[int, int]
    prefix_hint: int | None = None
    nhwc_hint: bool = False
    extra_stages: tuple[str, ...] = ()
    modules: dict[str, nn.Module] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.modules = dict(self.root.named_modules())

    # -------------------------------------------------------------- candidates
    def _ran_once(self, path: str) -> Call | None:
        call = self.calls.get(path)
        if call is None or call.calls != 1 or call.out is None:
            return None
        return call

    def _feature(self, path: str, role: str, stack: str = "") -> Found | None:
        call = self._ran_once(path)
        if call is None or len(call.out) not in (3, 4) or call.out[0] != 1:
            return None
        return Found(path, path, call.out, role=role, stack=stack, index=call.out_index)

    def blocks(self) -> list[Found]:
        out: dict[str, Found] = {}
        leaf_stacks = []
        for path, m in self.modules.items():
            if not _is_stack(m):
                continue
            kids = _children(m)
            if all(_is_leaf(c) for _, c in kids):
                leaf_stacks.append(path)
                continue
            if self._nesting(path) >= 2:
                continue  # a stack inside a block of a stage: the block's own parts (HF ResNet's conv layers)
            for name, _ in kids:
                child = f"{path}.{name}" if path else name
                f = self._feature(child, "block", stack=path)
                if f:
                    out[child] = f
            parent = self.modules[_parent(path)] if path else None
            if parent is not None and not _is_stack(parent) and sum(
                    _is_stack(c) and not all(_is_leaf(k) for _, k in _children(c)) for _, c in parent.named_children()) >= 2:
                f = self._feature(path, "stage")  # one of several sibling stacks: a stage (ResNet layer1..4)
                if f:
                    out[path] = f
        if not any(f.role == "block" for f in out.values()):
            for path in leaf_stacks:  # VGG-like: the activations of numbered leaf containers
                for name, c in _children(self.modules[path]):
                    child = f"{path}.{name}" if path else name
                    f = self._feature(child, "block", stack=path) if _is_activation(c) else None
                    if f:
                        out[child] = f
        if not out:  # no containers at all: the top-level children (Inception-style)
            trunk = self._trunk()
            for name, c in _children(self.modules[trunk]):
                child = f"{trunk}.{name}" if trunk else name
                f = self._feature(child, "block", stack=trunk) if (not _is_leaf(c) or _is_activation(c)) else None
                if f:
                    out[child] = f
        return list(out.values())

    def _nesting(self, path: str) -> int:
        """How many of `path`'s ancestors are themselves elements of a stack of blocks."""
        return sum(1 for a in _ancestors(path) if a and self._is_block_stack(_parent(a)))

    def _is_block_stack(self, path: str) -> bool:
        m = self.modules.get(path)
        return m is not None and _is_stack(m) and not all(_is_leaf(c) for _, c in _children(m))

    def _trunk(self) -> str:
        """The module holding the feature extractor: down through single wrappers (`model.vit`)."""
        path = ""
        while True:
            total = sum(p.numel() for p in self.modules[path].parameters()) or 1
            heavy = [n for n, c in _children(self.modules[path]) if sum(p.numel() for p in c.parameters()) > 0.9 * total]
            if len(heavy) != 1 or _is_leaf(self.modules[f"{path}.{heavy[0]}" if path else heavy[0]]):
                return path
            path = f"{path}.{heavy[0]}" if path else heavy[0]

    def outer(self, listed: list[Found], *, before: bool) -> Found | None:
        """The stem (before=True) or the pre-pool map: a top-level 4D map next to the blocks."""
        names = {f.path for f in listed}
        ancestors = {a for f in listed for a in _ancestors(f.path)} | {""}
        first = min(self.calls[f.path].start for f in listed)
        last = max(self.calls[f.path].done for f in listed)
        last_map = max(listed, key=lambda f: self.calls[f.path].done)
        best = None
        for path, m in self.modules.items():
            if not path or path in ancestors or path in names or _parent(path) not in ancestors:
                continue
            if _is_stack(self.modules[_parent(path)]):
                continue  # a sibling of blocks is a block of its own (VGG's leaves)
            if any(path.startswith(n + ".") for n in names) or "Pool" in type(m).__name__:
                continue
            call = self._ran_once(path)
            if call is None or len(call.out) != 4:
                continue
            if before and call.done < first or not before and call.start > last and _same_spatial(call.out, last_map.shape):
                if best is None or call.done > self.calls[best].done:
                    best = path
        return self._feature(best, "stem" if before else "prepool") if best else None

    def mlp(self, block: Found) -> Found | None:
        """The MLP hidden layer of a block: the input of its last expanding projection."""
        prefix = block.path + "."
        proj = None
        for path, m in self.modules.items():
            if not path.startswith(prefix) or not _is_projection(m, path[len(prefix):]):
                continue
            call = self._ran_once(path)
            if call and (proj is None or call.start > self.calls[proj].start):
                proj = path
        if proj is None:
            return None
        pcall = self.calls[proj]
        width = _in_features(self.modules[proj])
        read = proj
        prev = max((p for p, c in self.calls.items() if p.startswith(prefix) and c.start < pcall.start
                    and c.calls == 1 and _is_leaf(self.modules.get(p, nn.Identity()))),
                   key=lambda p: self.calls[p].start, default=None)
        if prev and _parent(prev) == _parent(proj) and "Norm" in type(self.modules[prev]).__name__:
            read = prev
        act = None
        for path, m in self.modules.items():
            call = self.calls.get(path)
            if (path.startswith(prefix) and call and call.calls == 1 and call.start < pcall.start and _is_activation(m)
                    and call.out and _channels(call.out, linear=isinstance(self.modules[proj], nn.Linear)) == width):
                if act is None or call.start > self.calls[act].start:
                    act = path
        while act and _is_activation(self.modules[_parent(act)]):
            act = _parent(act)  # the whole activation (StarReLU), not its inner ReLU
        shape = self.calls[read].inp
        if shape is None or len(shape) not in (3, 4):
            return None
        name = act or f"{proj}:input"
        if len(shape) == 4:
            if not _same_spatial(shape, block.shape):
                return None  # not at the block's positions (e.g. a squeeze-excite on a pooled vector)
            layout = "NHWC" if isinstance(self.modules[proj], nn.Linear) else "NCHW"
        elif len(block.shape) == 4 and shape[1] in (block.shape[1] * block.shape[2], block.shape[2] * block.shape[3]):
            layout = "map"  # flattened positions of a block whose output is a map (Swin)
        elif len(block.shape) == 3 and shape[1] == block.shape[1]:
            layout = ""
        else:
            return None
        return Found(name, read, shape, on_input=True, role="mlp", layout=layout, stack=block.stack)


def _same_spatial(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Whether two 4D outputs have the same spatial size (in either layout)."""
    return len(a) == len(b) == 4 and bool({a[1:3], a[2:4]} & {b[1:3], b[2:4]})


def _in_features(m: nn.Module) -> int:
    return int(getattr(m, "in_features", 0) or getattr(m, "in_channels", 0))


def _channels(shape: tuple[int, ...], *, linear: bool) -> int:
    return shape[-1] if linear or len(shape) == 3 else shape[1]


def _is_projection(m: nn.Module, rel: str) -> bool:
    """An MLP's output projection: a Linear, or a 1x1 conv inside an MLP, that narrows."""
    if isinstance(m, nn.Linear):
        return m.in_features > m.out_features
    if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1) and m.groups == 1:
        return m.in_channels > m.out_channels and any(w in rel.lower() for w in _MLP_WORDS)
    return False


# ---------------------------------------------------------------------------------------- layouts
def _nhwc_stacks(found: list[Found], hw: tuple[int, int], hint: bool) -> dict[str, str]:
    """Layout of each 4D output: NCHW or NHWC where the shape says so; ties follow the same
    stack's other blocks, then the model's hint."""
    votes: dict[str, list[str]] = {}
    layouts: dict[str, str] = {}
    for f in found:
        if len(f.shape) != 4:
            continue
        _, a, b, c = f.shape
        nchw, nhwc = _is_grid(b, c, hw), _is_grid(a, b, hw)
        if not (nchw or nhwc) or (f.layout == "NCHW" and not nchw) or (f.layout == "NHWC" and not nhwc):
            layouts[f.name] = "none"  # not a map of the image (NesT's blocks of token sequences)
            continue
        if f.layout:
            continue
        if nchw != nhwc:
            layouts[f.name] = "NCHW" if nchw else "NHWC"
            votes.setdefault(f.stack, []).append(layouts[f.name])
    for f in found:
        if len(f.shape) == 4 and not f.layout and f.name not in layouts:
            v = votes.get(f.stack) or [x for vs in votes.values() for x in vs]
            if v and v.count("NHWC") != v.count("NCHW"):
                layouts[f.name] = max(("NHWC", "NCHW"), key=v.count)
            else:
                layouts[f.name] = "NHWC" if hint else "NCHW"
    return layouts


def _token_map_reader(prefix: int, stride: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def read(t: torch.Tensor) -> torch.Tensor:
        t = t[:, prefix:] if prefix else t
        n, length, c = t.shape
        grid = solve_grid(length, input_hw(), stride)
        if grid is None:
            raise RuntimeError(f"cannot lay {length} tokens out on a grid for input {input_hw()}")
        return t.transpose(1, 2).reshape(n, c, *grid)

    return read


def _source(on_input: bool, index: int | None = None) -> Callable[[Any], torch.Tensor]:
    if index is not None:
        return lambda out: out[index]
    return (lambda inputs: inputs[0]) if on_input else first_tensor


def _compose(src: Callable[[Any], torch.Tensor], fn: Callable[[torch.Tensor], torch.Tensor] | None) -> Callable[[Any], torch.Tensor]:
    return src if fn is None else (lambda raw: fn(src(raw)))


def discover(root: nn.Module, hw: tuple[int, int], *, prefix_hint: int | None = None, nhwc_hint: bool = False,
             extra_stages: Iterable[str] = (), device: torch.device | None = None) -> tuple[list[LayerSpec], bool]:
    """Probe `root` at input size `hw` and return (layer specs in forward order, whether any layer is
    token-based or channels-last: a transformer-like model)."""
    dev = device or next((p.device for p in root.parameters()), torch.device("cpu"))
    set_input_hw(hw)
    calls = probe(root, torch.zeros(1, 3, *hw, device=dev))
    d = Discovery(root, calls, hw, prefix_hint, nhwc_hint, tuple(extra_stages))
    found = d.blocks()
    if not found:
        return [], False
    parents = {a for f in found for a in _ancestors(f.path)}
    innermost = [f for f in found if f.path not in parents]
    mlps = [m for m in (d.mlp(f) for f in innermost) if m is not None]
    stem, prepool = d.outer(found, before=True), d.outer(found, before=False)
    names = {f.path for f in found}
    first = min(calls[f.path].start for f in found)
    stages = [f for f in (d._feature(p, "stage") for p in extra_stages if p in d.modules and p not in names) if f]
    if any(calls[f.path].done < first for f in stages):
        stem = None  # the library names its own stem output (timm feature_info)
    every = [*([stem] if stem else []), *found, *stages, *mlps, *([prepool] if prepool else [])]
    every.sort(key=lambda f: (calls[f.path].done if not f.on_input else calls[f.path].start - 0.5))
    unordered = {p for p, m in d.modules.items() if type(m).__name__.startswith(UNORDERED_TOKENS)}
    return _specs(every, hw, prefix_hint, nhwc_hint, unordered)


def _specs(every: list[Found], hw: tuple[int, int], prefix_hint: int | None, nhwc_hint: bool,
           unordered: set[str]) -> tuple[list[LayerSpec], bool]:
    layouts = _nhwc_stacks(every, hw, nhwc_hint)
    tokens: dict[str, tuple[int, tuple[int, int] | None]] = {}
    for f in every:
        if len(f.shape) == 3:
            tokens[f.name] = _prefix_and_grid(f.shape[1], hw, prefix_hint)
    patch_counts = {f.shape[1] - tokens[f.name][0] for f in every if f.name in tokens}
    hierarchical = len(patch_counts) > 1
    transformer = bool(tokens) or any(v == "NHWC" for v in layouts.values())
    specs: list[LayerSpec] = []
    names: set[str] = set()
    for f in every:
        if f.name in names:
            continue
        names.add(f.name)
        src = _source(f.on_input, f.index)
        if len(f.shape) == 4:
            if layouts.get(f.name) == "none":
                continue
            nhwc = (f.layout or layouts.get(f.name)) == "NHWC"
            specs.append(LayerSpec(f.name, f.path, "conv", read=_compose(src, nhwc_to_nchw if nhwc else None),
                                   on_input=f.on_input))
            continue
        prefix, grid = tokens[f.name]
        in_unordered = any(f.path == u or f.path.startswith(u + ".") for u in unordered)
        if in_unordered:
            specs.append(LayerSpec(f.name, f.path, "tokens", read=src, prefix_tokens=prefix, grid=None, on_input=f.on_input))
        elif (hierarchical or f.layout == "map") and prefix == 0 and grid is not None:
            stride = hw[0] / grid[0]
            specs.append(LayerSpec(f.name, f.path, "conv", read=_compose(src, _token_map_reader(0, stride)),
                                   on_input=f.on_input))
        else:
            specs.append(LayerSpec(f.name, f.path, "tokens", read=src, prefix_tokens=prefix, grid=grid, on_input=f.on_input))
    return specs, transformer
