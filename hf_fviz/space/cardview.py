"""Images an earlier `hf-fviz publish` put on a model's card, shown as soon as the model loads.
Reading the card is the output layer's (`hf_fviz.output.card_read`); this copies the images where
Gradio may serve them."""

import shutil
from pathlib import Path

from hf_fviz.output.card_read import asset_path as _asset_path  # noqa: F401  (tests reach it through the app)
from hf_fviz.output.card_read import read_card, read_section, section_images
from hf_fviz.output.writer import safe_name

from .settings import log, message, workdir


def card_images(model_id: str, *, revision: str | None = None, limit: int = 40) -> list[tuple[str, str]]:
    """Images an earlier `hf-fviz publish` put on the model's card, as (local path, caption).

    Copied under the work folder so that Gradio may serve them. Per-unit images first; the grid
    only when there are none. Never raises: no card, no images."""
    model_id = (model_id or "").strip()
    if not model_id or model_id.startswith("builtin:"):
        return []
    repo_id, _, at = model_id.partition("@")
    revision = revision or at or None
    try:
        text, fetch = read_card(model_id, revision)
    except Exception as err:  # no card, not cached, hub unreachable: nothing to show
        log.info("no card for %s: %s", model_id, message(err))
        return []
    links = section_images(read_section(text) or "", repo_id)
    items = [p for p in links if not p.endswith("/grid.png")] or list(links)
    dest = workdir() / "cards" / safe_name(f"{model_id}@{revision or 'main'}")
    out = []
    for path in items[:limit]:
        try:
            src = fetch(path)
        except Exception as err:
            log.info("card image %s of %s unavailable: %s", path, model_id, message(err))
            continue
        copy = dest / path
        copy.parent.mkdir(parents=True, exist_ok=True)
        if not copy.exists():
            shutil.copyfile(src, copy)
        out.append((str(copy), links[path] or Path(path).stem))
    return out
