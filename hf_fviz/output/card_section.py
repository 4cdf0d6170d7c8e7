"""The text of the hf_fviz section of a model card: what was visualized, how, with which
settings and revision; every untrusted value (labels, settings) made inert markdown."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from .card_assets import Assets
from .manifest import Item, Manifest

SPACE_URL = "https://huggingface.co/spaces/hf-fviz/hf-fviz"
HUB_URL = "https://huggingface.co"

# What each method is, in words, for the one sentence of the section.
_METHOD_WORDS = {
    "maco": "MACO (phase-only optimization under a fixed natural-image magnitude spectrum; Fel et al., 2023)",
    "fourier": "Fourier-parametrized gradient ascent with decorrelated colours (Olah et al., 2017)",
    "pixel": "direct gradient ascent on the pixels",
    "dual": "a dual objective that also keeps the image close to a set of natural images (The Mind's Eye; Stergiou, 2021)",
    "dual_objective": "a dual objective that also keeps the image close to a set of natural images (The Mind's Eye; Stergiou, 2021)",
    "facets": "multifaceted feature visualization, one image per cluster of natural images (Nguyen et al., 2016)",
    "multifaceted": "multifaceted feature visualization, one image per cluster of natural images (Nguyen et al., 2016)",
}


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#!{}~])")
_CODE_OK = re.compile(r"^[A-Za-z0-9._:/\[\]()+-]+$")


def _md(text: object, *, max_len: int = 200) -> str:
    """Untrusted text (labels, setting values) as inert one-line markdown: no HTML, no markers."""
    s = _CONTROL.sub(" ", str(text)).strip()
    if len(s) > max_len:
        s = s[: max_len - 1] + "…"
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def _code(text: object) -> str:
    s = str(text)
    return f"`{s}`" if _CODE_OK.match(s) else _md(s)


def _units_summary(items: Sequence[Item]) -> str:
    units: list[str] = []
    for item in items:
        if item.unit is not None and str(item.unit) not in units:
            units.append(str(item.unit))
    if not units:
        return f"{len(items)} images"
    text = ", ".join(units[:16]) + (f", … ({len(units)} units)" if len(units) > 16 else "")
    if len(items) > len(units):
        text += f" ({len(items)} images)"
    return _md(text, max_len=400)


def _setting(value: Any) -> str:
    if isinstance(value, str):
        return _md(value, max_len=80)
    return _md(json.dumps(value, separators=(", ", ": "), sort_keys=True), max_len=80)


def render_section(
    output: Manifest,
    assets: Assets,
    *,
    repo_id: str,
    absolute_urls: bool = False,
    url_revision: str = "main",
) -> str:
    """The section body (LF line endings, markers excluded); same inputs, same text."""
    from .. import __version__

    def link(path: str) -> str:
        if absolute_urls:
            return f"{HUB_URL}/{repo_id}/resolve/{quote(url_revision, safe='')}/{path}"
        return path

    method_words = _METHOD_WORDS.get(output.method.lower(), f"the {_md(output.method)} method")
    where = ("layer " if len(output.layers) == 1 else "layers ") + ", ".join(_code(x) for x in output.layers)
    lines = [
        "## Feature visualizations",
        "",
        f"These images were synthesized from noise with {method_words}, each optimized to maximally activate "
        f"one unit of {where} of this model: they show what the unit responds to, not images from a dataset.",
        "",
        f"![Feature visualizations of layer {_md(', '.join(output.layers))}]({link(assets.grid.path_in_repo)})",
        "",
    ]
    for start in range(0, len(assets.items), 4):
        row = assets.items[start : start + 4]
        lines.append("| " + " | ".join(_md(a.caption) for a in row) + " |")
        lines.append("|" + ":---:|" * len(row))
        lines.append("| " + " | ".join(f"![{_md(a.caption)}]({link(a.path_in_repo)})" for a in row) + " |")
        lines.append("")
    if assets.omitted:
        lines += [f"{assets.omitted} more units are shown in the grid only.", ""]
    lines += _exemplar_lines(output, assets, link)
    settings = output.settings
    rows = [
        ("method", _code(output.method)),
        ("layer", ", ".join(_code(x) for x in output.layers)),
        ("units", _units_summary(output.items)),
        ("steps", _setting(settings.get("steps", "n/a"))),
        ("size", _setting(settings["size"]) + " px" if "size" in settings else "n/a"),
        ("seed", _setting(settings.get("seed", "n/a"))),
    ]
    rows += [
        (_code(k) if len(k) <= 40 else _md(k, max_len=40), _setting(v)) for k, v in sorted(settings.items()) if k not in ("steps", "size", "seed") and v is not None
    ]
    lines += ["| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    version = _md(output.version or __version__, max_len=40)
    if output.revision and re.fullmatch(r"[0-9a-f]{40}", output.revision):
        rev = f"[`{output.revision[:12]}`]({HUB_URL}/{repo_id}/commit/{output.revision})"
    elif output.revision:
        rev = _code(output.revision)
    else:
        rev = "an unknown revision (a local copy)"
    space = f"{SPACE_URL}?model={quote(repo_id, safe='/')}"
    lines += [
        f"Made with hf_fviz {version} from revision {rev} of the model.",
        "",
        f"[Try this model in the hf-fviz Space]({space}) to visualize other units and layers.",
    ]
    return "\n".join(lines)


def _exemplar_lines(output: Manifest, assets: Assets, link: Any) -> list[str]:
    """Natural exemplars beside each unit, with its sanity check (when the folder has them)."""
    if not assets.exemplars:
        return []
    shown = output.items[: len(assets.items)]
    source = next((item.exemplar_source for item in shown if item.exemplar_source), "")
    lines = [
        "### Natural exemplars and sanity check",
        "",
        f"The images of {_code(source)} that excite each unit most (cropped around the most active position where the "
        "layer has one). Sanity check (after Geirhos et al., 2024): the share of random images of the same source that "
        "the network processes less like the unit's exemplars than the visualization, along the layers before the "
        "unit; below 0.5 the visualization is flagged as reaching the unit in a way natural images do not.",
        "",
        "| unit | visualization | natural exemplars | sanity |",
        "|---|:---:|:---:|---|",
    ]
    for item, image, strip in zip(shown, assets.items, assets.exemplars):
        if strip is None:
            continue
        verdict = "n/a"
        if item.sanity is not None:
            score = float(item.sanity["score"])
            verdict = f"{score:.2f}" + (" (flagged)" if item.sanity.get("flag") else "")
        lines.append(f"| {_md(item.caption)} | ![{_md(image.caption)}]({link(image.path_in_repo)}) | "
                     f"![{_md(strip.caption)}]({link(strip.path_in_repo)}) | {verdict} |")
    return [*lines, ""]
