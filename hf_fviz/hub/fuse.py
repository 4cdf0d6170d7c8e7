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
# Convolutions whose forward is the plain conv (padding aside); weight-standardized ones
# (StdConv2d, ScaledStdConv2d) renormalize their weight in forward and cannot absorb a norm.
_PLAIN_CONVS = ("Conv2d", "Conv2dSame")


def _pairs(module: nn.Module, example: torch.Tensor) -> tuple[list[tuple[str, str]], object]:
    """((conv, norm) pairs where the norm's input is exactly the conv's output tensor, the output).

    The conv outputs are kept alive during the pass: matching by `id()` alone paired a norm with
    whatever tensor later reused a freed conv output's address (a split or a concatenation),
    which broke some models and made loading nondeterministic."""
    conv_out: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    calls: dict[str, int] = {}
    handles = []

    def count(name: str) -> None:
        calls[name] = calls.get(name, 0) + 1

    def on_conv(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            count(name)
            if isinstance(out, torch.Tensor):
                conv_out[id(out)] = (name, out)
        return hook

    def on_norm(name: str):
        def hook(m: nn.Module, inputs: tuple) -> None:
            count(name)
            x = inputs[0] if inputs else None
            hit = conv_out.get(id(x)) if isinstance(x, torch.Tensor) else None
            if hit is not None and hit[1] is x and x.ndim == 4 and x.shape[1] == m.num_features:
                pairs.append((hit[0], name))
        return hook

    for name, m in module.named_modules():
        if type(m).__name__ in _PLAIN_CONVS and isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(on_conv(name)))
        elif type(m).__name__ in _FOLDABLE and getattr(m, "track_running_stats", False) and m.affine:
            handles.append(m.register_forward_pre_hook(on_norm(name)))
    try:
        with torch.no_grad():
            out = module(example)
    finally:
        for h in handles:
            h.remove()
        conv_out.clear()
    # a conv or a norm called more than once (shared, or recurrent) is left alone
    return [(c, b) for c, b in pairs if calls.get(c) == 1 and calls.get(b) == 1], out


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
    pairs, reference = _pairs(module, example)
    if not pairs:
        return module, 0
    folded = copy.deepcopy(module)
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            bn = folded.get_submodule(bn_name)
            _fold(folded.get_submodule(conv_name), bn)
            parent_name, _, child = bn_name.rpartition(".")
            setattr(folded.get_submodule(parent_name) if parent_name else folded, child, _replacement(bn))
        ref = _first(reference)
        try:
            out = _first(folded(example))
        except RuntimeError:  # defensive: a fold the model's code did not expect
            return module, 0
    if out.shape != ref.shape:
        return module, 0
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
