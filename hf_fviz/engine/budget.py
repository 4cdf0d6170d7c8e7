"""Memory bound of a run, checked before any optimization step.

A run that cannot fit should fail in a second with the numbers, not swap the machine to death
(or get OOM-killed on a Space) after minutes. The peak of one step is estimated as

    units x crops x (bytes the model saves for backward per image, up to the target layers) x ACT_FACTOR[family]
  + units x (3 x size^2 x 4 bytes) x CANVAS_FACTOR        (canvas, FFT buffers, gradients, Adam state)

The saved-for-backward bytes are measured, not guessed: one batch-1 forward pass at the model's
input size under `torch.autograd.graph.saved_tensors_hooks`, summing the distinct storages the
autograd graph keeps (parameters excluded), cached per model and layer set. The two factors were
calibrated against the peak resident memory of real runs (README, Safety defaults) and err high.

Available memory: `torch.cuda.mem_get_info` (plus what PyTorch's allocator holds but does not use)
on a GPU; on the CPU, /proc/meminfo's MemAvailable, lowered to the cgroup limit of a container
(a Space sees the host's memory in /proc/meminfo). `HF_FVIZ_MAX_MEMORY` (e.g. `4GB`) caps it
further. Where none of these can be read (macOS, Windows), nothing is refused.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidSettings, ResourceLimit

# Peak / saved-for-backward bytes, measured on CPU (peak RSS of 3-step runs at 224 px, 4-8 crops):
# MobileNetV2 1.05, ResNet-50 1.2; ViT-S 1.6 (attention backward materializes T x T per head).
ACT_FACTOR = {"cnn": 1.4, "vit": 2.0}
CANVAS_FACTOR = 14.0  # canvas copies: spectrum, irfft output, standardize, crops source, grads, Adam (measured: ~12x)
ENV_LIMIT = "HF_FVIZ_MAX_MEMORY"
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3,
          "t": 1024**4, "tb": 1024**4}


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes of one optimization step, and what it is made of."""

    total: int
    activations: int
    canvas: int
    per_image: int  # bytes saved for backward per crop, measured
    units: int
    crops: int
    size: int
    input_size: tuple[int, int]

    def describe(self) -> str:
        h, w = self.input_size
        return (f"{self.units} unit(s) at once x {self.crops} crop(s) of {h}x{w} px "
                f"({gib(self.activations)} of activations) + {self.units} canvas(es) of {self.size} px ({gib(self.canvas)})")


def gib(n: float) -> str:
    return f"{n / 1024**3:.2f} GB" if n >= 1024**3 / 100 else f"{n / 1024**2:.0f} MB"


def parse_bytes(text: str) -> int:
    """'4GB', '512 MB', '1.5g', '123456' -> bytes (powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]{0,2})\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise InvalidSettings(f"{ENV_LIMIT}={text!r} is not a size like 4GB, 512MB or a number of bytes")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def saved_bytes_per_image(model: Any, layers: Sequence[str]) -> int:
    """Bytes the autograd graph keeps per image for a forward pass up to `layers` (measured once
    per model and layer set with a batch-1 pass at the model's input size)."""
    cache: dict[tuple[str, ...], int] = model.__dict__.setdefault("_fviz_saved_bytes", {})
    key = tuple(sorted(set(layers)))
    if key in cache:
        return cache[key]
    module = model.module
    constant = {t.untyped_storage().data_ptr() for t in itertools.chain(module.parameters(), module.buffers())}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in constant:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    h, w = model.input_size
    x = torch.zeros(1, 3, h, w, device=model.device, requires_grad=True)
    keep = []  # the outputs hold the graph (and so its saved storages) alive until all are counted
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        for name in key:
            keep.append(model.activations(model.normalize(x), name))
    del keep
    cache[key] = sum(storages.values()) + 3 * h * w * 4  # + the crop itself
    return cache[key]


def estimate(model: Any, *, units: int, crops: int, size: int, layers: Sequence[str]) -> MemoryEstimate:
    """Estimated peak bytes of one step with `units` images optimized together."""
    per_image = saved_bytes_per_image(model, layers)
    k = max(int(crops), 1)
    activations = int(units * k * per_image * ACT_FACTOR.get(getattr(model, "family", "vit"), 2.0))
    canvas = int(units * 3 * size * size * 4 * CANVAS_FACTOR)
    return MemoryEstimate(activations + canvas, activations, canvas, per_image, units, k, size, tuple(model.input_size))


# ---------------------------------------------------------------------------- available memory
def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_free() -> int | None:
    """Free bytes under this process's cgroup memory limit (v2, then v1), or None when unlimited."""
    v2 = Path("/sys/fs/cgroup")
    limit, usage, stat = _read_int(v2 / "memory.max"), _read_int(v2 / "memory.current"), v2 / "memory.stat"
    if limit is None:  # cgroup v1
        v1 = v2 / "memory"
        limit, usage, stat = _read_int(v1 / "memory.limit_in_bytes"), _read_int(v1 / "memory.usage_in_bytes"), v1 / "memory.stat"
    if limit is None or usage is None or limit >= 1 << 60:
        return None
    reclaimable = 0
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name in ("inactive_file", "total_inactive_file") and value.strip().isdigit():
                reclaimable = int(value)
                break
    except OSError:
        pass
    return max(0, limit - max(0, usage - reclaimable))


def available_bytes(device: torch.device | str = "cpu") -> tuple[int | None, str]:
    """(bytes a run may use, where that number comes from); (None, ...) when unknown."""
    device = torch.device(device)
    found: list[tuple[int, str]] = []
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        found.append((int(free + cached), "free GPU memory"))
    elif device.type == "cpu":
        try:
            meminfo = Path("/proc/meminfo").read_text()
        except OSError:
            meminfo = ""
        m = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.M)
        if m:
            found.append((int(m.group(1)) * 1024, "available memory"))
        cgroup = _cgroup_free()
        if cgroup is not None:
            found.append((cgroup, "free memory under the container's limit"))
    cap = os.environ.get(ENV_LIMIT, "").strip()
    if cap:
        found.append((parse_bytes(cap), ENV_LIMIT))
    if not found:
        return None, "unknown"
    return min(found)


def largest_fit(model: Any, *, units: int, crops: int, size: int, layers: Sequence[str]) -> int:
    """How many of `units` images fit in one chunk (at least 1; all of them when memory is unknown)."""
    est = estimate(model, units=units, crops=crops, size=size, layers=layers)
    limit, _source = available_bytes(model.device)
    if limit is None or est.total <= limit:
        return units
    return max(1, int(limit // (est.total / units)))


def check(model: Any, *, units: int, crops: int, size: int, layers: Sequence[str], batch_size: int) -> MemoryEstimate:
    """Raise `ResourceLimit` with the estimate, the limit and what to change when one chunk of
    `min(units, batch_size)` images would not fit; returns the estimate otherwise."""
    at_once = max(1, min(units, batch_size))
    est = estimate(model, units=at_once, crops=crops, size=size, layers=layers)
    limit, source = available_bytes(model.device)
    if limit is None or est.total <= limit:
        return est
    per_unit = est.total / at_once
    fit = int(limit // per_unit) if per_unit > 0 else 0
    if fit >= 1:
        hint = f"optimize fewer units at once (--batch-size {fit}, batch_size={fit})"
    else:
        hint = "use fewer --crops or a smaller --size (one unit alone does not fit)"
    raise ResourceLimit(
        f"this run would need about {gib(est.total)} of memory per step ({est.describe()}) but only "
        f"{gib(limit)} is free ({source}); {hint}"
    )
