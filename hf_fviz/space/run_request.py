"""One visitor's request: the form's values parsed into targets and a `hf_fviz.settings` object,
checked against the Space's profile (`Caps.profile`). Every problem is one message naming what to fix."""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

import hf_fviz
from hf_fviz.errors import InvalidSettings
from hf_fviz.hub import targets
from hf_fviz.settings import METHODS, DualSettings, FacetSettings, Settings

from .settings import LOGITS, Caps, friendly

# ---------------------------------------------------------------------------- methods
IMAGE_SETTINGS = {"facets": FacetSettings, "dual": DualSettings}  # the image-set methods and their settings
IMAGE_METHODS = {"facets": "multifaceted", "dual": "dual_objective"}  # ... and their public hf_fviz functions
METHOD_LABELS = {"maco": "MACO", "fourier": "Fourier", "pixel": "Pixel", "facets": "Facets", "dual": "Dual objective"}


def image_method(method: str) -> Callable | None:
    """The hf_fviz function of an image-set method, or None when this hf_fviz has none."""
    name = IMAGE_METHODS.get(method)
    if name is None:
        return None
    try:
        return getattr(hf_fviz, name)
    except (AttributeError, ImportError):
        return None


def available_methods() -> list[tuple[str, str]]:
    """(label, value) of the methods this hf_fviz offers; facets and dual only when importable."""
    offered = [*METHODS, *(m for m in IMAGE_METHODS if image_method(m) is not None)]
    return [(METHOD_LABELS.get(m, m), m) for m in offered]


# ---------------------------------------------------------------------------- requests
parse_units = targets.expand  # '3, 7, 10-12' or picked values -> ['3', '7', '10', '11', '12']


@dataclass(frozen=True)
class RunRequest:
    """One checked visualization request (what the API and the UI both run): the model, its
    targets (unit indices, or class names for the logits) and the run settings."""

    model_id: str
    layer: str
    units: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()
    method: str = "maco"
    images: tuple[str, ...] = ()
    settings: Settings = field(default_factory=Settings)

    @property
    def steps(self) -> int:
        return self.settings.steps

    @property
    def size(self) -> int:
        return self.settings.size

    @property
    def crops(self) -> int:
        return self.settings.crops

    def call_kwargs(self) -> dict[str, Any]:
        """The targets and the visitor's settings as keyword arguments of `hf_fviz.visualize`."""
        s = self.settings
        kw: dict[str, Any] = {"layer": self.layer, "steps": s.steps, "size": s.size, "crops": s.crops, "seed": s.seed}
        if self.classes:
            kw["classes"] = list(self.classes)
        else:
            kw["units"] = list(self.units)
        return kw


def _whole(name: str, value: Any) -> int:
    """A form's number (sliders give floats) as an integer; its range is the profile's to check."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidSettings(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise InvalidSettings(f"{name} must be a whole number, got {value!r}")
    return int(number)


@friendly
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
    k: Any = None,
) -> RunRequest:
    """Parse a visitor's request and check it against `caps.profile`; every problem is a
    gr.Error naming what to fix."""
    model_id = (model_id or "").strip()
    if not model_id:
        raise gr.Error("Enter a model ID and click Load first.", title="No model")
    layer = (layer or "").strip()
    if not layer:
        raise gr.Error("Choose a layer first (Load the model, then pick one in the Layer list).", title="No layer")
    method = (method or "maco").strip().lower()
    tokens = [] if method == "dual" else targets.expand(units)  # dual: one image per cluster of the images
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
    elif tokens:
        unit_ids = tuple(targets.parse_units(tokens, None, layer=layer, flag=f"layer '{layer}'"))
    paths: tuple[str, ...] = ()
    values = {"steps": _whole("steps", steps), "size": _whole("size", size),
              "crops": _whole("crops", caps.profile.default_crops if crops is None else crops),
              "seed": _whole("seed", seed if seed not in (None, "") else 0)}
    if method in IMAGE_SETTINGS:
        paths = tuple(str(getattr(f, "name", f)) for f in (images or []) if f)  # none: the bundled samples
        if len(paths) > caps.max_images:
            raise gr.Error(f"{len(paths)} images uploaded; this Space takes at most {caps.max_images}.", title="Too many images")
        cls = IMAGE_SETTINGS[method]
        settings = cls(**values, **({} if k is None else {"k": _whole("facets", k)}))
    else:
        settings = caps.profile.settings(method=method, **values)
    return RunRequest(model_id=model_id, layer=layer, units=unit_ids, classes=classes, method=method, images=paths,
                      settings=caps.profile.check(settings))
