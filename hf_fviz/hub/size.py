"""How large a model is: parameters counted from the hub's safetensors headers before anything is
downloaded, or from a loaded model. What a server checks against its budget."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("hf_fviz.hub")


def is_hub_id(model_id: str) -> bool:
    """A hub repo id (`org/name[@rev]`), not a `builtin:` model nor a local folder."""
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
        log.info("no safetensors metadata for %s: %s", model_id, " ".join(str(err).split())[:300])
        return None
    counts = getattr(meta, "parameter_count", None) or {}
    return int(sum(counts.values())) if counts else None


def parameter_count(model: Any) -> int:
    """Parameters of a loaded `VisionModel`."""
    return sum(p.numel() for p in model.module.parameters())
