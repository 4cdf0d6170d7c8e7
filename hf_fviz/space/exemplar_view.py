"""Natural exemplars and the sanity check in the Space. When a visitor names an image source, each
visualized unit is shown beside the images of that source that excite it most, with its sanity
score (`hf_fviz.exemplars.with_exemplars`, `hf_fviz.engine.sanity`): synthetic images alone can mislead,
the pairing with real images and the check are what make them trustworthy."""

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from hf_fviz.exemplars import with_exemplars
from hf_fviz.hub.sources import is_hub_dataset
from hf_fviz.output.manifest import Item, Manifest
from hf_fviz.settings import CPU_SPACE

SAMPLES = "samples"
SOURCE_HINT = "`samples` (hf_fviz's bundled photos) or a hub dataset ID `org/name`; empty: off"
MIN_TOP, MAX_TOP, DEFAULT_TOP = CPU_SPACE.min_top, CPU_SPACE.max_top, CPU_SPACE.default_top
MAX_IMAGES = CPU_SPACE.max_source_images


@dataclass(frozen=True)
class ExemplarRequest:
    """Where to look for each unit's exemplars, and how many to keep."""

    source: str
    top: int = DEFAULT_TOP


def exemplar_request(source: str | None, top: Any = DEFAULT_TOP) -> ExemplarRequest | None:
    """None when no source is named; a local path is refused (visitors read no server files)."""
    text = (source or "").strip()
    if not text:
        return None
    if text != SAMPLES and not is_hub_dataset(text):
        raise gr.Error(f"image source '{text}': use samples or a hub dataset ID org/name", title="Bad image source")
    try:
        number = float(top)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number == int(number) and MIN_TOP <= number <= MAX_TOP):
        raise gr.Error(f"exemplars per unit must be a whole number in {MIN_TOP}..{MAX_TOP}, got {top!r}", title="Bad setting")
    return ExemplarRequest(text, int(number))


def add_exemplars(model: Any, visualizations: Sequence[Any], ask: ExemplarRequest,
                  progress: Callable[..., Any] | None = None) -> None:
    """Stream the source through the model once and attach each unit's exemplars and sanity check
    to its visualization (the manifest written afterwards lists both)."""

    def tick(done: int, expected: int | None, _info: Any) -> None:
        if progress is not None:
            progress((done, expected or MAX_IMAGES), desc="natural exemplars", unit="images")

    with_exemplars(model, visualizations, ask.source, top=ask.top, max_images=MAX_IMAGES, progress=tick)


def _sanity_caption(sanity: dict[str, Any] | None) -> str:
    if not sanity:
        return "no sanity check"
    return f"sanity {sanity['score']:.2f}" + (" ⚠ flagged" if sanity.get("flag") else "")


def sanity_table(items: Sequence[Item]) -> str:
    """Markdown: one row per unit with its sanity score, flag and closeness figures."""
    source = next((e["source"] for it in items for e in it.exemplars or []), "")
    lines = [f"**Natural exemplars** from {html.escape(source)} beside each visualization (crops around the most active "
             "position), and the **sanity check**: the share of random images of the source that the network processes "
             "less like the unit's exemplars than the visualization (about 0.5 for a typical image; flagged below 0.5: "
             "the visualization reaches the unit along a path of its own).", "",
             "| unit | sanity score | flagged | closeness: visualization / random / exemplars |", "|---|---|---|---|"]
    for it in items:
        s = it.sanity
        figures = f"{s['visualization']:.3f} / {s['random']:.3f} / {s['exemplars']:.3f}" if s else "-"
        score = f"{s['score']:.2f}" if s else "-"
        flag = ("yes ⚠" if s["flag"] else "no") if s else "-"
        lines.append(f"| {html.escape(str(it.label or it.unit))} | {score} | {flag} | {figures} |")
    return "\n".join(lines)


def exemplar_view(last: dict[str, Any] | None) -> tuple[Any, Any]:
    """The exemplar gallery (one row per unit: its visualization, then its exemplars) and the
    sanity table of the last run, from its output folder; hidden when the run had no exemplars."""
    folder = Path(last["folder"]) if last and last.get("folder") else None
    items = Manifest.read(folder).items if folder and (folder / "manifest.json").is_file() else []
    shown = [it for it in items if it.exemplars and it.image]
    if not shown:
        return hide_exemplars()
    entries: list[tuple[str, str]] = []
    for it in shown:
        entries.append((str(folder / it.image), f"{it.label or it.unit} · {_sanity_caption(it.sanity)}"))
        entries += [(str(folder / (ex.get("crop") or ex["image"])), f"{ex['name']} · {ex['activation']:.3g}") for ex in it.exemplars]
    columns = 1 + max(len(it.exemplars) for it in shown)
    return gr.update(value=entries, columns=columns, visible=True), gr.update(value=sanity_table(shown), visible=True)


def hide_exemplars() -> tuple[Any, Any]:
    return gr.update(value=None, visible=False), gr.update(value="", visible=False)


__all__ = ["DEFAULT_TOP", "MAX_IMAGES", "MAX_TOP", "MIN_TOP", "SOURCE_HINT", "ExemplarRequest", "add_exemplars",
           "exemplar_request", "exemplar_view", "hide_exemplars", "sanity_table"]
