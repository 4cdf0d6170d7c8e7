"""Units and classes as people type them -> the layer and unit indices the engine takes.

The one parser of targets; the CLI, atlas and the Space call it. Accepted forms: `'all'`, indices
and inclusive ranges (`'3, 7'`, `'0-99,250'`), class names or indices (`'tabby cat,espresso'`),
or a list of picked values. Order is kept and each target counts once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidSettings, UnitOutOfRange
from .vision_model import LOGITS

_RANGE = re.compile(r"([0-9]+)\s*-\s*([0-9]+)")
_INDEX = re.compile(r"[0-9]+")
_NEGATIVE = re.compile(r"-[0-9]+")
MAX_RANGE = 1 << 17  # a range wider than this is refused before it is expanded (a typo, or abuse)


def expand(spec: str | Sequence[Any] | None, *, n_units: int | None = None, layer: str = "layer") -> list[str]:
    """`' 3, 7 ,, 10-12, 3'` or a list of picked values -> `['3', '7', '10', '11', '12']`: tokens
    stripped, ranges expanded, each once in the given order; anything else (class names) as given.
    With `n_units`, a range past the layer's end raises `UnitOutOfRange` before it is expanded."""
    if spec is None:
        return []
    tokens = spec.split(",") if isinstance(spec, str) else [str(t) for t in spec]
    out: list[str] = []
    for tok in filter(None, (t.strip() for t in tokens)):
        m = _RANGE.fullmatch(tok)
        if m is None:
            out.append(tok)
            continue
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi < lo:
            raise InvalidSettings(f"unit range '{tok}' is empty: write it low-high, e.g. 0-7")
        if n_units is not None and hi >= n_units:
            raise _out_of_range(hi, n_units, layer)
        if hi - lo >= MAX_RANGE:
            raise InvalidSettings(f"unit range '{tok}' is too wide: at most {MAX_RANGE} units per range")
        out.extend(str(i) for i in range(lo, hi + 1))
    return list(dict.fromkeys(out))


def parse_units(
    spec: str | Sequence[Any], n_units: int | None, *, layer: str = "layer", flag: str = "--units"
) -> list[int]:
    """`'all'`, indices and ranges (`'0-99,250'`) or a list of indices -> unit indices in the given
    order, each once. With `n_units` (the layer's unit count) every index is checked against it:
    `UnitOutOfRange` names the valid range. `flag` is how the caller's user names the field."""
    if isinstance(spec, str) and spec.strip().lower() == "all":
        if n_units is None:
            raise InvalidSettings(f"{flag} all needs the layer's unit count")
        return list(range(n_units))
    units: list[int] = []
    for tok in expand(spec, n_units=n_units, layer=layer):
        if _NEGATIVE.fullmatch(tok):
            raise UnitOutOfRange(f"unit {tok} is out of range: units are indices from 0 (e.g. 0, 5, 12 or 0-7), not '{tok}'")
        if not _INDEX.fullmatch(tok):
            raise InvalidSettings(f"{flag} takes indices, got '{tok}': units are indices and ranges such as 0, 5, 12 or 0-7 "
                                  "(class names are units of the logits layer)")
        unit = int(tok)
        if n_units is not None and unit >= n_units:
            raise _out_of_range(unit, n_units, layer)
        units.append(unit)
    if not units:
        raise InvalidSettings(f"{flag} is empty")
    return list(dict.fromkeys(units))


def parse_classes(spec: str | Sequence[Any], *, flag: str = "--classes") -> list[str]:
    """`'tabby cat,espresso'` or picked values -> class names or indices as typed (ranges of
    indices expanded); `model.class_index` maps them once the model is loaded."""
    names = expand(spec)
    if not names:
        raise InvalidSettings(f"{flag} is empty")
    return names


def resolve(
    model: Any, *, layer: str | None = None, units: str | Sequence[Any] | None = None,
    classes: str | Sequence[Any] | None = None,
) -> tuple[str, list[int]]:
    """The layer and unit indices that `units` (of `layer`, default the model's default layer) or
    `classes` (names or indices: units of the logits) name on `model`. Neither: the first 4 units."""
    if units is not None and classes is not None:
        raise InvalidSettings("give units or classes, not both")
    if classes is not None:
        if layer not in (None, LOGITS):
            raise InvalidSettings(f"classes are logits; drop --layer {layer} or pass --units instead")
        names = parse_classes(classes)
        if not model.has_head:
            model.layer(LOGITS)  # UnknownLayer with a hint
        return LOGITS, [model.class_index(c) for c in names]
    name = layer or model.default_layer
    n_units = model.layer(name).units
    if units is None:
        return name, list(range(min(4, n_units)))
    return name, parse_units(units, n_units, layer=name)


def _out_of_range(unit: int, n_units: int, layer: str) -> UnitOutOfRange:
    return UnitOutOfRange(f"unit {unit} is out of range for layer '{layer}': valid units are 0..{n_units - 1}")
