"""Opt-in speed-ups for the render loop, measured by `hf-fviz bench speed --speedups ...`.

- `channels_last`: converts a CNN's weights to NHWC (now done by `VisionModel` at load for every
  CNN; kept here so the benchmark can name it). oneDNN (CPU) and cuDNN (GPU) then run every
  convolution in NHWC, the layout their fast kernels use (depthwise convolutions especially);
  without it each convolution reorders its input and output. Input batches need no conversion:
  PyTorch picks the channels-last kernel when the weight is channels-last.
- `cpu_bf16`: bfloat16 autocast for the model on CPUs with native bf16 dot products
  (`avx512_bf16` / AMX), as the loop already does on CUDA. The parametrization stays float32.

Each helper changes a `VisionModel` in place and returns it; `apply(model, names)` applies several.
Meant to become defaults of `load_model`/`optimize` once the benchmark shows they pay off.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

SPEEDUPS = ("channels_last", "cpu_bf16")


def channels_last(model: Any) -> Any:
    """Put a CNN's 4-D weights in channels-last layout (no-op for ViTs, which have no convs
    beyond the patch embedding)."""
    if getattr(model, "family", "cnn") == "cnn":
        model.module.to(memory_format=torch.channels_last)
    return model


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 dot products (oneDNN then runs bf16 convs and matmuls fast)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_for(device: torch.device | str, *, cpu_bf16: bool = False) -> Any:
    """The autocast context the loop should use on `device`: bf16 on CUDA, bf16 on CPU when asked
    for and supported, else a no-op context."""
    dev = torch.device(device)
    if dev.type == "cuda" or (dev.type == "cpu" and cpu_bf16 and cpu_has_bf16()):
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
    from contextlib import nullcontext

    return nullcontext()


def cpu_bf16(model: Any) -> Any:
    """Run the model's forward passes under bf16 autocast on a bf16-capable CPU (activations come
    back as float32). Until the loop takes an autocast flag for the CPU, this wraps the model's
    `activations` on the instance; the parametrization and crops stay float32."""
    if model.device.type != "cpu" or not cpu_has_bf16():
        return model
    plain = model.activations

    def activations(x: torch.Tensor, layer: Any) -> torch.Tensor:
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            return plain(x, layer).float()

    model.activations = activations
    return model


def apply(model: Any, names: Iterable[str]) -> Any:
    """Apply the model-side speed-ups named in `names` (see `SPEEDUPS`)."""
    for name in names:
        if name not in SPEEDUPS:
            raise ValueError(f"unknown speed-up {name!r}: choose from {', '.join(SPEEDUPS)}")
        if name == "channels_last":
            channels_last(model)
        elif name == "cpu_bf16":
            cpu_bf16(model)
    return model


__all__ = ["SPEEDUPS", "apply", "autocast_for", "channels_last", "cpu_bf16", "cpu_has_bf16"]
