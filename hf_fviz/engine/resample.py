"""The antialiased resize of the whole view, with a faster backward on the CPU.

Why: the whole view (`transforms.resize_whole`) is resized from the render side (250-750 px) to
the model input with PyTorch's antialiased bilinear filter every step, and PyTorch's CPU backward
of that filter visits every input pixel's full 2-D neighbourhood: 1.4 ms at 384 px and 3.0 ms at
750 px on 2 cores, a fifth of our canvas work per step. The filter is separable and each axis is a
banded matrix A (out x in), so the backward is A_y^T G A_x. Cut A^T into blocks of 16 input rows;
each block reads only a narrow window of output rows, so one gather and one batched product per
axis do it: 0.3-0.6 ms at the same sides. The forward stays `F.interpolate` (same values); the
gradient equals PyTorch's to float rounding (1e-7, `tests/test_engine_parts.py`).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

BLOCK = 16
"""Input rows per block of A^T (16 measured fastest of 16/32/64 at 270-750 px)."""


def antialiased_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`F.interpolate(images, size, mode="bilinear", antialias=True)`; on a CPU, with a banded
    backward (see the module docstring)."""
    if images.device.type == "cpu" and images.requires_grad and images.dtype in (torch.float32, torch.float64):
        return _AntialiasedResize.apply(images, tuple(size))
    return _interpolate(images, tuple(size))


def _interpolate(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


class _AntialiasedResize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:  # type: ignore[override]
        ctx.in_size, ctx.out_size = tuple(images.shape[-2:]), size
        return _interpolate(images, size)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (h_in, w_in), (h_out, w_out) = ctx.in_size, ctx.out_size
        rows = _transposed_rows(grad.contiguous(), _band(h_in, h_out, grad.dtype))  # (..., h_in, w_out)
        cols = _transposed_rows(rows.transpose(-1, -2), _band(w_in, w_out, grad.dtype))  # (..., w_in, h_in)
        return cols.transpose(-1, -2).contiguous(), None


def _transposed_rows(grad: torch.Tensor, band: tuple[torch.Tensor, torch.Tensor, int]) -> torch.Tensor:
    """A^T grad along dim -2: grad (..., n_out, m) -> (..., n_in, m)."""
    index, blocks, n_in = band
    nb, block, width = blocks.shape
    *lead, _, m = grad.shape
    windows = grad.index_select(-2, index).view(*lead, nb, width, m)
    return torch.matmul(blocks, windows).reshape(*lead, nb * block, m)[..., :n_in, :]


@lru_cache(maxsize=64)
def _band(n_in: int, n_out: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A^T of the 1-D antialiased resize n_in -> n_out, in blocks of `BLOCK` input rows: the
    output rows each block reads (index, nb * width) and the block matrices (nb, BLOCK, width).
    A is read off the filter itself, in `dtype` (PyTorch's own rounding of the weights): the
    resize of an identity image along one axis."""
    eye = torch.eye(n_in, dtype=dtype).view(1, 1, n_in, n_in)
    a_t = _interpolate(eye, (n_out, n_in))[0, 0].t()  # (n_in, n_out)
    nonzero = a_t != 0
    cols = torch.arange(n_out)
    lo = torch.where(nonzero, cols, n_out).min(dim=1).values
    hi = torch.where(nonzero, cols, -1).max(dim=1).values
    nb = -(-n_in // BLOCK)
    spans = [(int(lo[b * BLOCK:(b + 1) * BLOCK].min()), int(hi[b * BLOCK:(b + 1) * BLOCK].max())) for b in range(nb)]
    width = min(n_out, max(end - start + 1 for start, end in spans))
    starts = [max(0, min(start, n_out - width)) for start, _ in spans]
    blocks = torch.zeros(nb, BLOCK, width, dtype=dtype)
    for b, start in enumerate(starts):
        part = a_t[b * BLOCK:(b + 1) * BLOCK, start:start + width]
        blocks[b, : part.shape[0]] = part
    index = (torch.tensor(starts)[:, None] + torch.arange(width)).flatten()
    return index, blocks, n_in


__all__ = ["BLOCK", "antialiased_resize"]
