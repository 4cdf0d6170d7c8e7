"""Visualize a model and put the section on its card: the one job behind the webhook and the
Trainer callback, callable from any script. Takes a `VisionModel`, a model id or folder, a timm
model or a transformers model (duck-typed: transformers itself is not imported here).
"""

from __future__ import annotations

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
    from ..api import run
    from ..hub import as_vision_model
    from ..hub.vision_model import VisionModel
    from ..output import render
    from ..output.card import publish

    settings = job_settings(settings, options)

    with tempfile.TemporaryDirectory(prefix="hf_fviz-") as tmp:
        model = as_vision_model(model_or_dir, device=None if isinstance(model_or_dir, VisionModel) else device, name=repo_id,
                                processor=processor, scratch=Path(tmp) / "model")
        if repo_id is None:
            repo_id = model.id.split("@", 1)[0]
        if isinstance(units, int) and not isinstance(units, bool):
            if units < 1:
                raise InvalidSettings(f"units must be a list of indices or a positive count, got {units}")
            units = list(range(min(units, model.layer(layer or model.default_layer).units)))
        copied = not isinstance(model_or_dir, (VisionModel, str, os.PathLike)) or Path(os.fspath(model_or_dir)).is_dir()
        if copied:
            model.id = repo_id  # an in-memory model or a local folder: the manifest names the card's repo
        vis = run(model, settings, layer=layer, units=units, classes=classes, progress=progress)
        folder = Path(out_dir) if out_dir is not None else Path(tmp) / "out"
        render.save(vis, folder, model=model)
        return publish(repo_id, folder, local_dir=local_dir, create_pr=create_pr, token=token, commit_message=commit_message)


__all__ = ["COMMIT_MARKER", "visualize_and_publish"]
