"""Reading a model card back: its hf_fviz section and the images that section links. The inverse
of `card_meta.upsert_section` and `card_section.render_section`, for readers such as the Space."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from .card_assets import ASSET_DIR
from .card_meta import END, START
from .publish import MAX_CARD_BYTES

_IMAGE_LINK = re.compile(r"!\[((?:\\.|[^\]\\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".gif")
HUB_HOSTS = ("huggingface.co", "hf.co")


def read_section(text: str) -> str | None:
    """The hf-fviz section of a card's text (between the markers, markers left out), or None."""
    start = text.find(START)
    if start < 0:
        return None
    end = text.find(END, start + len(START))
    return text[start + len(START) : end] if end >= 0 else None


def asset_path(target: str, repo_id: str) -> str | None:
    """A link of the section -> its path in the repo, only for images under feature_visualizations/
    (relative links, or the repo's own absolute resolve/<rev>/ URLs); anything else is None."""
    path = target
    if "://" in target:
        url = urlparse(target)
        prefix = f"/{repo_id}/resolve/"
        if url.netloc not in HUB_HOSTS or not url.path.startswith(prefix):
            return None
        path = url.path[len(prefix) :].split("/", 1)[-1]  # drop the revision
    path = unquote(path).lstrip("./") if path.startswith("./") else unquote(path)
    parts = path.split("/")
    if parts[0] != ASSET_DIR or ".." in parts or not path.lower().endswith(_IMAGE_EXT):
        return None
    return path


def section_images(section: str, repo_id: str) -> dict[str, str]:
    """The images a section links, as {path in the repo: alt text}, in the order they appear."""
    links: dict[str, str] = {}
    for alt, target in _IMAGE_LINK.findall(section):
        path = asset_path(target, repo_id)
        if path and path not in links:
            links[path] = html.unescape(re.sub(r"\\(.)", r"\1", alt)).strip()
    return links


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
