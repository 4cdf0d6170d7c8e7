"""Auto-attach: feature visualizations land on model cards without anyone running a command.

Two ways in, one module each:

- **Hub webhook** (`webhook`: `make_webhooks_server`, `launch_with_webhooks`, `hf-fviz watch`):
  the hub reports a new commit on `main` of a watched model repo; the endpoint checks the
  secret, answers at once and queues a job. A background worker loads the model *at that
  commit*, visualizes a small default set (the first classes, or the first channels of the last
  layer of a backbone) and opens one pull request on the card. A commit is handled once (handled
  `(repo, sha)` pairs are kept in `STATE_DIR/handled.json`, so a restart does not redo them); a
  commit that touched no model file (a card edit, our own merged PR) makes no job; a failing job
  logs one line and commits nothing (`publish` is one atomic commit, made only after every image
  exists).
- **Training** (`trainer`: `FeatureVisualizationCallback` for transformers' `Trainer`): at the
  end of training, or on every save that pushes to the hub, visualize the model being trained
  and put the section on its card (a local folder that the next push uploads, or a pull request).

Both end in `visualize_and_publish` (`to_card`), which any script can call too. Our own commits
start with `COMMIT_MARKER`, so people and bots can recognise them.

Names are imported lazily from their module: the webhook server never imports `transformers`;
only the Trainer callback does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "COMMIT_MARKER": "to_card",
    "visualize_and_publish": "to_card",
    "FeatureVisualizationCallback": "trainer",
    **{name: "webhook" for name in (
        "AutoSettings", "Commit", "DEFAULT_TAGS", "Decision", "HandledStore", "JobResult", "MODEL_FILES",
        "STATE_FILE", "WEBHOOK_PATH", "WatchConfig", "WebhookApp", "Watcher", "changed_files", "default_state_dir",
        "is_model_file", "launch_with_webhooks", "make_webhooks_server", "read_commit",
    )},
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hf_fviz.integrations' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


if TYPE_CHECKING:  # pragma: no cover
    from .to_card import COMMIT_MARKER, visualize_and_publish
    from .trainer import FeatureVisualizationCallback
    from .webhook import (
        AutoSettings, WatchConfig, Watcher, WebhookApp, is_model_file, launch_with_webhooks, make_webhooks_server,
        read_commit,
    )

__all__ = [
    "AutoSettings",
    "COMMIT_MARKER",
    "FeatureVisualizationCallback",
    "WatchConfig",
    "WebhookApp",
    "Watcher",
    "launch_with_webhooks",
    "make_webhooks_server",
    "read_commit",
    "visualize_and_publish",
]
