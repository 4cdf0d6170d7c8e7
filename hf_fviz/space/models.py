"""The models a Space keeps loaded, within a parameter budget checked before any download."""

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr

import hf_fviz

from .settings import Caps, log, message

# ---------------------------------------------------------------------------- models
def is_hub_id(model_id: str) -> bool:
    return not model_id.startswith("builtin:") and not Path(model_id).expanduser().is_dir()


def hub_parameter_count(model_id: str) -> int | None:
    """Parameters of a hub repo from its safetensors headers (no weights downloaded), or None
    when unknown (offline, local folder, builtin, no safetensors metadata, hub unreachable)."""
    if not model_id or not is_hub_id(model_id):
        return None
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return None
    repo, _, revision = model_id.partition("@")
    try:
        meta = HfApi().get_safetensors_metadata(repo, revision=revision or None)
    except Exception as err:  # any hub problem is reported by load_model with a proper message
        log.info("no safetensors metadata for %s: %s", model_id, message(err))
        return None
    counts = getattr(meta, "parameter_count", None) or {}
    return int(sum(counts.values())) if counts else None


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
            params = sum(p.numel() for p in model.module.parameters())
            if params > self.caps.max_params:
                raise _too_large(model_id, params, self.caps)
            self._models[model_id] = model
            while len(self._models) > max(1, self.caps.models_in_memory):
                self._models.popitem(last=False)
            return model

