"""Images an earlier `hf-fviz publish` put on a model's card, shown as soon as the model loads."""

import html
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from hf_fviz import render
from hf_fviz.output.card import MAX_CARD_BYTES

from .settings import ASSET_DIR, CARD_END, CARD_START, log, message, workdir

# ---------------------------------------------------------------------------- card assets
_IMAGE_LINK = re.compile(r"!\[((?:\\.|[^\]\\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def card_section(text: str) -> str | None:
    """The hf-fviz section of a model card (between the markers), or None."""
    start = text.find(CARD_START)
    if start < 0:
        return None
    end = text.find(CARD_END, start + len(CARD_START))
    return text[start + len(CARD_START) : end] if end >= 0 else None


def _asset_path(target: str, repo_id: str) -> str | None:
    """A link of the section -> its path in the repo, only for images under feature_visualizations/."""
    from urllib.parse import unquote, urlparse

    path = target
    if "://" in target:
        url = urlparse(target)
        prefix = f"/{repo_id}/resolve/"
        if url.netloc not in ("huggingface.co", "hf.co") or not url.path.startswith(prefix):
            return None
        path = url.path[len(prefix) :].split("/", 1)[-1]  # drop the revision
    path = unquote(path).lstrip("./") if path.startswith("./") else unquote(path)
    parts = path.split("/")
    if parts[0] != ASSET_DIR or ".." in parts or not path.lower().endswith(_IMAGE_EXT):
        return None
    return path


def read_card(model_id: str, revision: str | None = None) -> tuple[str, Callable[[str], Path]]:
    """A model's card text and a function fetching a file of its repo, from the hub (through
    huggingface_hub, so HF_HUB_OFFLINE=1 works from the cache) or a local folder. Raises when absent."""
    local = Path(model_id).expanduser()
    repo_id = model_id.partition("@")[0]
    if local.is_dir():
        root = local.resolve()
        readme = root / "README.md"
        text = readme.read_text(encoding="utf-8") if readme.is_file() else ""

        def fetch_local(path: str) -> Path:
            found = (root / path).resolve()
            if not found.is_relative_to(root) or not found.is_file():
                raise FileNotFoundError(path)
            return found

        return text, fetch_local
    from huggingface_hub import hf_hub_download

    card_path = Path(hf_hub_download(repo_id, "README.md", revision=revision))
    if card_path.stat().st_size > MAX_CARD_BYTES:
        raise ValueError(f"README.md is {card_path.stat().st_size:,} bytes: too large to show")

    def fetch(path: str) -> Path:
        return Path(hf_hub_download(repo_id, path, revision=revision))

    return card_path.read_text(encoding="utf-8"), fetch


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
    section = card_section(text)
    if not section:
        return []
    links: dict[str, str] = {}
    for alt, target in _IMAGE_LINK.findall(section):
        path = _asset_path(target, repo_id)
        if path and path not in links:
            links[path] = html.unescape(re.sub(r"\\(.)", r"\1", alt)).strip()
    items = [p for p in links if not p.endswith("/grid.png")] or list(links)
    dest = workdir() / "cards" / render.safe_name(f"{model_id}@{revision or 'main'}")
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

