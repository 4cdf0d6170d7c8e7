"""The models a Space keeps loaded, within a parameter budget checked before any download."""

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr

import hf_fviz
from hf_fviz.hub.size import hub_parameter_count, parameter_count

from .settings import Caps


def _too_large(model_id: str, params: int, caps: Caps) -> gr.Error:
    return gr.Error(
        f"{model_id} has {params / 1e6:.0f} M parameters; this Space visualizes models up to "
        f"{caps.max_params / 1e6:.0f} M. Run it on your own machine: pip install hf-fviz; "
        f"hf-fviz visualize {model_id}",
        title="Model too large",
    )


class ModelStore:
    """The few most recently used models, loaded once. The parameter budget is checked before
    any download (hub safetensors metadata) and again after loading (local, builtin, offline)."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        # Optimizations running at once, whatever started them: the queue limits the page's runs,
        # these slots also cover MCP calls, which Gradio runs outside the queue (mcp_tools).
        self.run_slots = threading.BoundedSemaphore(max(1, caps.concurrency))

    def get(self, model_id: str) -> Any:
        model_id = (model_id or "").strip()
        if not model_id:
            raise gr.Error("Enter a model ID first, e.g. builtin:mobilenetv2 or timm/resnet50.a1_in1k.", title="No model")
        if not self.caps.allow_local and not model_id.startswith("builtin:") and Path(model_id).expanduser().exists():
            raise gr.Error(f"'{model_id[:100]}' is a path on this server: the Space loads hub models (org/name) and "
                           "builtin: models only.", title="Not a hub model")
        with self._lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
            params = hub_parameter_count(model_id)
            if params is not None and params > self.caps.max_params:
                raise _too_large(model_id, params, self.caps)
            model = hf_fviz.load_model(model_id, device="auto")
            params = parameter_count(model)
            if params > self.caps.max_params:
                raise _too_large(model_id, params, self.caps)
            self._models[model_id] = model
            while len(self._models) > max(1, self.caps.models_in_memory):
                self._models.popitem(last=False)
            return model

