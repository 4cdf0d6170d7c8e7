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
    "visualize": "hf_fviz.engine.methods",
    "Visualization": "hf_fviz.engine.methods",
    "dual_objective": "hf_fviz.engine.imagesets",
    "multifaceted": "hf_fviz.engine.imagesets",
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
    from .output import render
    from .output.card import publish
    from .engine import objectives
    from .engine.imagesets import dual_objective, multifaceted
    from .engine.methods import Visualization, visualize
    from .errors import FvizError
    from .hub import load_model
    from .hub.vision_model import Layer, VisionModel
