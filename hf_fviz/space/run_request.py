"""One visitor's request, checked against the caps: every problem is a gr.Error naming what to fix."""

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

import hf_fviz

from .settings import LOGITS, Caps

# ---------------------------------------------------------------------------- methods
METHOD_LABELS = {"maco": "MACO", "fourier": "Fourier", "pixel": "Pixel"}
IMAGE_METHODS = {"facets": ("multifaceted", "Facets"), "dual": ("dual_objective", "Dual objective")}


def image_method(method: str) -> Callable | None:
    name = IMAGE_METHODS.get(method, (None,))[0]
    if name is None:
        return None
    try:
        return getattr(hf_fviz, name)
    except (AttributeError, ImportError):
        return None


def available_methods() -> list[tuple[str, str]]:
    """(label, value) of the methods this hf_fviz offers; facets and dual only when importable."""
    out = list((label, value) for value, label in METHOD_LABELS.items())
    out += [(label, key) for key, (_, label) in IMAGE_METHODS.items() if image_method(key) is not None]
    return out


# ---------------------------------------------------------------------------- requests
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def parse_units(units: str | Sequence[str] | None) -> list[str]:
    """'3, 7, 10-12' or a list of picked values -> ['3', '7', '10', '11', '12'], deduplicated."""
    if units is None:
        return []
    tokens = units.split(",") if isinstance(units, str) else [str(u) for u in units]
    out: list[str] = []
    for tok in (t.strip() for t in tokens):
        if not tok:
            continue
        m = _RANGE.match(tok)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo or hi - lo > 4096:
                raise gr.Error(f"bad unit range '{tok}': write it as low-high, e.g. 0-7", title="Bad units")
            out.extend(str(i) for i in range(lo, hi + 1))
        else:
            out.append(tok)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class RunRequest:
    """One checked visualization request (what the API and the UI both run)."""

    model_id: str
    layer: str
    units: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()
    method: str = "maco"
    steps: int = 64
    size: int = 224
    crops: int = 4
    seed: int = 0
    images: tuple[str, ...] = ()
    k: int = 3

    def call_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"layer": self.layer, "steps": self.steps, "size": self.size, "crops": self.crops, "seed": self.seed}
        if self.classes:
            kw["classes"] = list(self.classes)
        else:
            kw["units"] = list(self.units)
        return kw


def _int_setting(name: str, value: Any, lo: int, hi: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number, got {value!r}", title="Bad setting") from None
    if not math.isfinite(number) or number != int(number) or not lo <= number <= hi:
        raise gr.Error(f"{name} must be a whole number in {lo}..{hi} on this Space, got {value!r}", title="Bad setting")
    return int(number)


def make_request(
    caps: Caps,
    model_id: str,
    layer: str | None,
    units: str | Sequence[str] | None,
    method: str | None,
    steps: Any,
    size: Any,
    *,
    crops: Any = None,
    seed: Any = 0,
    images: Sequence[Any] | None = None,
    k: Any = 3,
) -> RunRequest:
    """Check a request against the caps; every problem is a gr.Error naming what to fix."""
    model_id = (model_id or "").strip()
    if not model_id:
        raise gr.Error("Enter a model ID and click Load first.", title="No model")
    layer = (layer or "").strip()
    if not layer:
        raise gr.Error("Choose a layer first (Load the model, then pick one in the Layer list).", title="No layer")
    method = (method or "maco").strip().lower()
    known = [value for _, value in available_methods()]
    if method not in known:
        raise gr.Error(f"unknown method '{method}': use one of {', '.join(known)}", title="Bad method")
    tokens = [] if method == "dual" else parse_units(units)  # dual: one image per cluster of the images
    if not tokens and method != "dual":
        what = "class" if layer == LOGITS else "unit index (e.g. 0, 5, 12)"
        raise gr.Error(f"Pick at least one {what} to visualize.", title="Nothing to visualize")
    if method == "facets" and len(tokens) != 1:
        raise gr.Error("Facets show one unit or class at a time (one image per facet): pick exactly one.", title="Bad units")
    if len(tokens) > caps.max_units:
        raise gr.Error(f"{len(tokens)} units asked for; this Space runs at most {caps.max_units} per run.", title="Too many units")
    unit_ids: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()
    if layer == LOGITS:
        classes = tuple(tokens)
    else:
        bad = [t for t in tokens if not t.isdigit()]
        if bad:
            raise gr.Error(f"units of layer '{layer}' are indices (e.g. 0, 5, 12 or 0-7), not '{bad[0]}'", title="Bad units")
        unit_ids = tuple(int(t) for t in tokens)
    paths: tuple[str, ...] = ()
    if method in IMAGE_METHODS:
        paths = tuple(str(getattr(f, "name", f)) for f in (images or []) if f)  # none: the bundled samples
        if len(paths) > caps.max_images:
            raise gr.Error(f"{len(paths)} images uploaded; this Space takes at most {caps.max_images}.", title="Too many images")
    return RunRequest(
        model_id=model_id,
        layer=layer,
        units=unit_ids,
        classes=classes,
        method=method,
        steps=_int_setting("steps", steps, 1, caps.max_steps),
        size=_int_setting("size", size, caps.min_size, caps.max_size),
        crops=_int_setting("crops", caps.crops if crops is None else crops, 1, caps.max_crops),
        seed=_int_setting("seed", seed if seed not in (None, "") else 0, 0, 2**31 - 1),
        images=paths,
        k=_int_setting("facets", k, 1, 8),
    )

