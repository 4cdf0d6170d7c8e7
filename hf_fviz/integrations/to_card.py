"""Visualize a model and put the section on its card: the one job behind the webhook and the
Trainer callback, callable from any script. Takes a `VisionModel`, a model id or folder, a timm
model or a transformers model (duck-typed: transformers itself is not imported here).
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidSettings
from ..settings import CPU_JOB, Settings

COMMIT_MARKER = "[hf-fviz]"  # our own commits start with it, so people and bots can recognise them


def job_settings(settings: Settings | None, options: dict[str, Any]) -> Settings:
    """The checked settings of an automatic job: `settings` (default: the CPU_JOB profile's, which
    finish in minutes on a CPU) with `options` (steps=, size=, ...) on top."""
    return (settings or CPU_JOB.settings()).replace(**options).check()


def visualize_and_publish(
    model_or_dir: Any,
    *,
    repo_id: str | None = None,
    layer: str | None = None,
    units: Sequence[int] | int | None = None,
    classes: Sequence[str | int] | None = None,
    settings: Settings | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    create_pr: bool = True,
    token: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    commit_message: str | None = None,
    processor: Any = None,
    device: str = "auto",
    progress: Callable[[int, int, Any], None] | None = None,
    **options: Any,
) -> Any:
    """Visualize a model and put the section on its card; returns `card.PublishResult`.

    `model_or_dir`: a `VisionModel`, a model id or local folder (`load_model`), a timm model
    (`nn.Module`, wrapped from a copy: the live model is left trainable), or a transformers
    `PreTrainedModel` (saved with `processor` to a temp folder and loaded from there). `repo_id`
    (`org/name`) is the card's repo; it defaults to the model id. With `local_dir`, the card and
    images are written into that folder (a clone, or a Trainer's output_dir); otherwise one pull
    request is opened. `units` may be a number n: the first n units of `layer` (default the
    model's last layer: its first n classes where it has a head). `settings` (default: the
    CPU_JOB profile's: 64 steps at 224 px, 4 crops) with `options` (`steps=`, `size=`, `crops=`,
    `method=`, `seed=`, ...: `hf_fviz.settings.Settings` fields) on top. `out_dir` keeps the output
    folder (default: a temp folder, removed).
    """
    from .. import visualize
    from ..output import render
    from ..output.card import publish
    from ..hub.vision_model import VisionModel

    run = job_settings(settings, options)

    with tempfile.TemporaryDirectory(prefix="hf_fviz-") as tmp:
        model = _as_vision_model(model_or_dir, Path(tmp) / "model", repo_id=repo_id, processor=processor, device=device)
        if repo_id is None:
            repo_id = model.id.split("@", 1)[0]
        if isinstance(units, int) and not isinstance(units, bool):
            if units < 1:
                raise InvalidSettings(f"units must be a list of indices or a positive count, got {units}")
            units = list(range(min(units, model.layer(layer or model.default_layer).units)))
        copied = not isinstance(model_or_dir, (VisionModel, str, os.PathLike)) or Path(os.fspath(model_or_dir)).is_dir()
        if copied:
            model.id = repo_id  # an in-memory model or a local folder: the manifest names the card's repo
        vis = visualize(model, layer=layer, units=units, classes=classes, progress=progress,
                        **{name: getattr(run, name) for name in Settings.field_names()})
        folder = Path(out_dir) if out_dir is not None else Path(tmp) / "out"
        render.save(vis, folder, model=model)
        return publish(repo_id, folder, local_dir=local_dir, create_pr=create_pr, token=token, commit_message=commit_message)


def _as_vision_model(model: Any, scratch: Path, *, repo_id: str | None, processor: Any, device: str) -> Any:
    from ..hub import load_model, resolve_device
    from ..hub.vision_model import VisionModel

    if isinstance(model, VisionModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(os.fspath(model), device=device)
    save_pretrained = getattr(model, "save_pretrained", None)
    if callable(save_pretrained) and hasattr(model, "config") and hasattr(model.config, "to_dict"):
        # transformers: a saved copy loads through the same path as a hub repo (class from
        # config.architectures, preprocessing from preprocessor_config.json).
        scratch.mkdir(parents=True, exist_ok=True)
        save_pretrained(scratch, safe_serialization=True)
        if processor is not None and hasattr(processor, "save_pretrained"):
            processor.save_pretrained(scratch)
        return load_model(str(scratch), device=device)
    if hasattr(model, "pretrained_cfg") and hasattr(model, "forward_features"):
        from ..hub.timm_models import wrap_timm

        live = copy.deepcopy(model)  # the VisionModel freezes and folds its module
        name = repo_id or str(getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__)
        return wrap_timm(live, model_id=name, revision=None, device=resolve_device(device))
    raise InvalidSettings(f"cannot visualize a {type(model).__name__}: give a VisionModel, a model id or folder, a timm model or a transformers model")


__all__ = ["COMMIT_MARKER", "visualize_and_publish"]
