"""Fold eval-mode batch norm into the convolution that feeds it.

Feature visualization runs a frozen model forward and backward thousands of times; a batch norm
after every convolution is pure memory traffic there (in both passes). Folding it into the conv's
weight and bias gives the same function for less work. Pairs are found by watching one real
forward pass (a norm whose input is exactly a conv's output tensor), so no model code is read or
assumed; the result is checked against the original outputs and discarded if they differ.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

_FOLDABLE = ("BatchNorm2d", "BatchNormAct2d")


def _pairs(module: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    conv_out: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    handles = []
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(lambda _m, _i, o, name=name: conv_out.__setitem__(id(o), name)))
        elif type(m).__name__ in _FOLDABLE and getattr(m, "track_running_stats", False) and m.affine:
            handles.append(m.register_forward_pre_hook(
                lambda _m, i, name=name: pairs.append((conv_out[id(i[0])], name)) if id(i[0]) in conv_out else None))
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in handles:
            h.remove()
    seen_convs: set[str] = set()
    unique = []
    for conv, bn in pairs:  # a conv feeding two norms (or called twice) is left alone
        if conv in seen_convs:
            unique = [p for p in unique if p[0] != conv]
            continue
        seen_convs.add(conv)
        unique.append((conv, bn))
    return unique


def _fold(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight = nn.Parameter((conv.weight * scale.view(-1, 1, 1, 1)).detach(), requires_grad=False)
    conv.bias = nn.Parameter((bn.bias + (bias - bn.running_mean) * scale).detach(), requires_grad=False)


def _replacement(bn: nn.Module) -> nn.Module:
    if type(bn).__name__ == "BatchNormAct2d":  # norm, then dropout (identity in eval), then activation
        return bn.act
    return nn.Identity()


def fold_batchnorm(module: nn.Module, example: torch.Tensor, *, rtol: float = 1e-3) -> tuple[nn.Module, int]:
    """Return (module with conv+BN pairs folded, number folded); the original when nothing folds
    or when the folded model's output differs from the original's."""
    pairs = _pairs(module, example)
    if not pairs:
        return module, 0
    folded = copy.deepcopy(module)
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            bn = folded.get_submodule(bn_name)
            _fold(folded.get_submodule(conv_name), bn)
            parent_name, _, child = bn_name.rpartition(".")
            setattr(folded.get_submodule(parent_name) if parent_name else folded, child, _replacement(bn))
        ref = _first(module(example))
        out = _first(folded(example))
    scale = ref.abs().max().clamp_min(1e-6)
    if not torch.allclose(out, ref, rtol=rtol, atol=rtol * float(scale)):
        return module, 0
    return folded.eval(), len(pairs)


def _first(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    return out[0]
