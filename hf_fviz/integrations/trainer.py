"""The transformers `Trainer` callback: visualize the model being trained and put the section on
its card. The only module of hf_fviz.integrations that imports `transformers`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from ..errors import InvalidSettings, PublishError
from ..settings import Settings
from .to_card import COMMIT_MARKER, job_settings, visualize_and_publish

logger = logging.getLogger("hf_fviz.watch")


class FeatureVisualizationCallback(TrainerCallback):
    """transformers `Trainer` callback: visualize the model and publish to its card.

    Runs at the end of training and (with `args.push_to_hub`) after every save, which is when
    Trainer pushes `output_dir`. The section and images are written into `local_dir` (default:
    the Trainer's `output_dir`, so its next upload carries them); `create_pr=True` opens a pull
    request on `repo_id` instead. The model is visualized from a saved copy, never the live one.

    Note: `trainer.push_to_hub()` rewrites `output_dir/README.md` from its training summary
    (the images stay); publish after it with `visualize_and_publish(output_dir, repo_id=...)`
    when you push that way.

    `settings` (default: the CPU_JOB profile's: 64 steps at 224 px, 4 crops) with `options`
    (`steps=`, `size=`, `crops=`, `method=`, `seed=`, ...) on top, checked here, before training.
    """

    def __init__(
        self,
        *,
        layer: str | None = None,
        units: Sequence[int] | None = None,
        classes: Sequence[str | int] | None = None,
        settings: Settings | None = None,
        repo_id: str | None = None,
        local_dir: str | os.PathLike[str] | None = None,
        create_pr: bool = False,
        token: str | None = None,
        on_save: bool = True,
        on_train_end: bool = True,
        **options: Any,
    ) -> None:
        if units is not None and classes is not None:
            raise InvalidSettings("give units or classes, not both")
        if create_pr and local_dir is not None:
            raise InvalidSettings("give local_dir (write into a folder) or create_pr=True (open a pull request), not both")
        self.settings = job_settings(settings, options)
        self.targets = {"layer": layer, "units": units, "classes": classes}
        self.repo_id, self.local_dir, self.create_pr, self.token = repo_id, local_dir, create_pr, token
        self.on_save_enabled, self.on_train_end_enabled = on_save, on_train_end
        self.results: list[Any] = []

    def _repo_id(self, args: Any) -> str:
        repo = self.repo_id or getattr(args, "hub_model_id", None)
        if not repo or "/" not in repo:
            raise PublishError(
                "FeatureVisualizationCallback needs the card's repo id: pass repo_id='org/name' "
                "(or TrainingArguments(hub_model_id='org/name'))"
            )
        return repo

    def _local_dir(self, args: Any) -> str | os.PathLike[str] | None:
        if self.create_pr:
            return None
        return self.local_dir if self.local_dir is not None else args.output_dir

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._repo_id(args)  # a missing repo id fails before training, not after it

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.on_save_enabled and getattr(args, "push_to_hub", False) and state.is_world_process_zero:
            self._run(args, kwargs)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.on_train_end_enabled and state.is_world_process_zero:
            self._run(args, kwargs)

    def _run(self, args: Any, kwargs: dict[str, Any]) -> None:
        model = kwargs.get("model")
        if model is None:
            raise PublishError("the Trainer passed no model to FeatureVisualizationCallback")
        device = "cpu" if getattr(args, "use_cpu", False) else "auto"
        start = time.perf_counter()
        result = visualize_and_publish(
            model,
            repo_id=self._repo_id(args),
            **self.targets,
            settings=self.settings,
            local_dir=self._local_dir(args),
            create_pr=self.create_pr,
            token=self.token,
            commit_message=f"{COMMIT_MARKER} Feature visualizations after training",
            processor=kwargs.get("processing_class"),
            device=device,
        )
        self.results.append(result)
        logger.info("hf-fviz: feature visualizations published in %.1f s: %s", time.perf_counter() - start, result.url or result.local_dir)


__all__ = ["FeatureVisualizationCallback"]
