"""hf_fviz: feature visualization for any Hugging Face hub vision model, by its ID.

    >>> import hf_fviz
    >>> model = hf_fviz.load_model("builtin:mobilenetv2")
    >>> vis = hf_fviz.visualize(model, classes=["goldfish"], steps=128)

Public names are imported lazily so that `import hf_fviz` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "hf_fviz.hub",
    "VisionModel": "hf_fviz.hub.vision_model",
    "Layer": "hf_fviz.hub.vision_model",
    "as_vision_model": "hf_fviz.hub",
    "visualize": "hf_fviz.api",
    "Visualization": "hf_fviz.results",
    "dual_objective": "hf_fviz.api",
    "multifaceted": "hf_fviz.api",
    "Settings": "hf_fviz.settings",
    "settings": "hf_fviz.settings",
    "objectives": "hf_fviz.engine.objectives",
    "publish": "hf_fviz.output.card",
    "render": "hf_fviz.output.render",
    "atlas": "hf_fviz.atlas",
    "errors": "hf_fviz.errors",
    "FvizError": "hf_fviz.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hf_fviz' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    return module if module.__name__.endswith("." + name) else getattr(module, name)


if TYPE_CHECKING:  # pragma: no cover
    from . import atlas
    from . import settings
    from .api import dual_objective, multifaceted, visualize
    from .output import render
    from .output.card import publish
    from .engine import objectives
    from .errors import FvizError
    from .hub import as_vision_model, load_model
    from .results import Visualization
    from .settings import Settings
    from .hub.vision_model import Layer, VisionModel
