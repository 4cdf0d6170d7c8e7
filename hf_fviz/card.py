"""Model-card publishing: one hf_fviz section and a few small images on a model's card.

Any output folder of `visualize`, `dual`, `facets` or `atlas` (they share the manifest contract,
see DESIGN.md) becomes:

- assets under `feature_visualizations/<method>-<layer>/` (a grid of at most 1 MB and per-unit
  images of at most 512 px), and
- one section of README.md between `<!-- hf-fviz:start -->` and `<!-- hf-fviz:end -->`, plus the
  `feature-visualization` tag in the YAML metadata.

Everything else in the card stays byte for byte as it was: the front matter is edited as text
(a YAML parse/dump round trip would reorder keys, drop comments and change quoting), line endings
are kept, and a second run gives the same file as the first. The hub path is one
`create_commit(create_pr=True, parent_commit=<sha the card was read at>)`: never a push to main.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

from .errors import PublishError

SPACE_URL = "https://huggingface.co/spaces/hf-fviz/hf-fviz"
START = "<!-- hf-fviz:start -->"
END = "<!-- hf-fviz:end -->"
TAG = "feature-visualization"
ASSET_DIR = "feature_visualizations"
HUB_URL = "https://huggingface.co"

MAX_GRID_BYTES = 1_000_000
MAX_IMAGE_PX = 512
MAX_UNITS = 32
MAX_CARD_BYTES = 10_000_000  # a README.md above this is refused, not read into memory and rewritten

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


# ---------------------------------------------------------------------------- output folder
@dataclass(frozen=True)
class Item:
    """One visualized unit (or facet) of an output folder."""

    index: int
    image: Path
    unit: Any = None
    label: str | None = None
    objective: float | None = None
    members: int | None = None
    layer: str | None = None  # set when one folder holds several layers
    exemplars: tuple[Path, ...] = ()  # natural exemplars (crops where there are), best first
    exemplar_source: str | None = None
    sanity: dict[str, Any] | None = None

    @property
    def caption(self) -> str:
        parts = []
        if self.layer:
            parts.append(self.layer)
        if self.unit is not None:
            parts.append(f"unit {self.unit}")
        if self.label:
            parts.append(str(self.label))
        if self.members is not None:
            parts.append(f"{self.members} images")
        return " · ".join(parts) if parts else f"item {self.index}"


@dataclass(frozen=True)
class OutputFolder:
    """The parts of an output folder's manifest that the card shows."""

    path: Path
    model: str
    revision: str | None
    library: str | None
    method: str
    layers: tuple[str, ...]
    settings: dict[str, Any]
    items: tuple[Item, ...]
    grid: Path | None
    version: str | None

    @property
    def layer(self) -> str:
        return ", ".join(self.layers)


def read_output(from_dir: str | os.PathLike[str]) -> OutputFolder:
    """Read and check DIR/manifest.json; every user mistake is a one-line `PublishError`."""
    root = Path(from_dir)
    if not root.is_dir():
        raise PublishError(f"{root}: no such folder (give the --out folder of hf-fviz visualize, dual, facets or atlas)")
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise PublishError(f"{root}: no manifest.json, not an hf-fviz output folder")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PublishError(f"{manifest_path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise PublishError(f"{manifest_path}: not an hf-fviz manifest (expected a JSON object)")
    missing = [k for k in ("model", "method", "layer", "items") if k not in manifest]
    if missing:
        raise PublishError(f"{manifest_path}: not an hf-fviz manifest (missing {', '.join(missing)})")
    for key in ("model", "method"):
        if not isinstance(manifest[key], str) or not manifest[key]:
            raise PublishError(f"{manifest_path}: not an hf-fviz manifest ({key!r} must be a non-empty string)")
    layers = manifest["layer"] if isinstance(manifest["layer"], list) else [manifest["layer"]]
    if not layers or not all(isinstance(x, str) and x for x in layers):
        raise PublishError(f"{manifest_path}: not an hf-fviz manifest ('layer' must be a layer name or a list of them)")
    raw_items = manifest["items"]
    if not isinstance(raw_items, list) or not raw_items:
        raise PublishError(f"{manifest_path}: the manifest lists no images ('items' is empty)")
    resolved_root = root.resolve()
    items = []
    for i, raw in enumerate(raw_items):
        if not isinstance(raw, dict) or not isinstance(raw.get("image"), str):
            raise PublishError(f"{manifest_path}: item {i} has no 'image' path; not an hf-fviz manifest")
        image = _inside(resolved_root, raw["image"], what=f"item {i} image")
        objective = raw.get("objective")
        members = raw.get("members")
        items.append(
            Item(
                index=i,
                image=image,
                unit=raw.get("unit"),
                label=raw.get("label") if isinstance(raw.get("label"), str) else None,
                objective=float(objective) if isinstance(objective, int | float) and not isinstance(objective, bool) else None,
                members=len(members) if isinstance(members, list) else (members if isinstance(members, int) else None),
                layer=raw["layer"] if len(layers) > 1 and isinstance(raw.get("layer"), str) else None,
                **_exemplar_fields(resolved_root, raw, i),
            )
        )
    grid_name = manifest.get("grid") if isinstance(manifest.get("grid"), str) else "grid.png"
    grid = resolved_root / grid_name
    grid = _inside(resolved_root, grid_name, what="grid") if grid.is_file() else None
    settings = manifest.get("settings")
    revision = manifest.get("revision")
    library = manifest.get("library")
    version = manifest.get("hf_fviz_version")
    return OutputFolder(
        path=root,
        model=manifest["model"],
        revision=revision if isinstance(revision, str) and revision else None,
        library=library if isinstance(library, str) and library else None,
        method=manifest["method"],
        layers=tuple(layers),
        settings=dict(settings) if isinstance(settings, dict) else {},
        items=tuple(items),
        grid=grid,
        version=version if isinstance(version, str) and version else None,
    )


def _exemplar_fields(root: Path, raw: dict[str, Any], i: int) -> dict[str, Any]:
    """An item's exemplars (`hf_fviz.exemplars`, up to 4 crops or images) and sanity check, if any."""
    rows = raw.get("exemplars")
    if not isinstance(rows, list) or not rows:
        return {}
    paths = []
    for j, ex in enumerate(rows[:4]):
        rel = ex.get("crop") or ex.get("image") if isinstance(ex, dict) else None
        if not isinstance(rel, str):
            raise PublishError(f"item {i} exemplar {j} has no image path; not an hf-fviz manifest")
        paths.append(_inside(root, rel, what=f"item {i} exemplar {j}"))
    sanity = raw.get("sanity")
    return {"exemplars": tuple(paths), "exemplar_source": str(rows[0].get("source") or ""),
            "sanity": sanity if isinstance(sanity, dict) and isinstance(sanity.get("score"), int | float) else None}


def _inside(root: Path, relative: str, *, what: str) -> Path:
    """Resolve `relative` under `root`, refusing paths (or symlinks) that lead outside it."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise PublishError(f"{root}/manifest.json: {what} {relative!r} points outside the output folder")
    if not path.is_file():
        raise PublishError(f"{root}: {what} {relative!r} is listed in manifest.json but missing")
    return path


# ---------------------------------------------------------------------------- assets
@dataclass(frozen=True)
class AssetLimits:
    """How big the published images may get (the card's repo keeps every version forever)."""

    max_grid_bytes: int = MAX_GRID_BYTES
    max_image_px: int = MAX_IMAGE_PX
    max_units: int = MAX_UNITS


@dataclass(frozen=True)
class Asset:
    """One file to add to the model repo."""

    path_in_repo: str
    data: bytes = field(repr=False)
    caption: str = ""


@dataclass(frozen=True)
class Assets:
    grid: Asset
    items: tuple[Asset, ...]
    omitted: int  # items shown in the grid only (beyond `max_units`)
    exemplars: tuple[Asset | None, ...] = ()  # per shown item: its natural exemplars in one strip

    @property
    def all(self) -> tuple[Asset, ...]:
        return (self.grid, *self.items, *(a for a in self.exemplars if a is not None))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, *, max_len: int = 80) -> str:
    """A file-name part made of [A-Za-z0-9._-] only: no slashes, no `..`, no leading dot."""
    name = _UNSAFE.sub("_", unicodedata.normalize("NFKD", str(text)))
    name = re.sub(r"\.{2,}", "_", name).lstrip(".")[:max_len].rstrip(".")
    return name or "_"


def asset_folder(output: OutputFolder) -> str:
    return f"{ASSET_DIR}/{safe_name(output.method + '-' + '+'.join(output.layers))}"


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGBA" if img.mode in ("RGBA", "LA", "PA") else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise PublishError(f"{path}: not a readable image ({err})") from None


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _fit_px(img: Image.Image, max_px: int) -> Image.Image:
    if max(img.size) <= max_px:
        return img
    scale = max_px / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def _fit_bytes(img: Image.Image, max_bytes: int) -> bytes:
    """PNG-encode, downscaling by steps of 0.8 until the file fits in `max_bytes`."""
    data = _png(img)
    while len(data) > max_bytes and max(img.size) > 16:
        # PNG size grows about with the pixel count: jump close to the target, then step down.
        scale = min(0.8, math.sqrt(max_bytes / len(data)) * 0.95)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)
        data = _png(img)
    if len(data) > max_bytes:
        raise PublishError(f"cannot fit the grid image into {max_bytes} bytes")
    return data


def build_grid(images: Sequence[Image.Image], *, cell: int | None = None, gap: int = 4, max_side: int = 2048) -> Image.Image:
    """Tile item images (resized to one square cell) into a near-square grid on white."""
    if not images:
        raise PublishError("no images to build a grid from")
    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    if cell is None:
        cell = min(min(min(img.size) for img in images), max(16, max_side // cols - gap))
    tiles = np.full((rows * cols, cell + gap, cell + gap, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):  # one resize per image; the tiling itself is array reshapes
        tiles[i, gap // 2 : gap // 2 + cell, gap // 2 : gap // 2 + cell] = np.asarray(
            img.convert("RGB").resize((cell, cell), Image.Resampling.LANCZOS)
        )
    side = cell + gap
    grid = tiles.reshape(rows, cols, side, side, 3).transpose(0, 2, 1, 3, 4).reshape(rows * side, cols * side, 3)
    return Image.fromarray(grid)


def prepare_assets(output: OutputFolder, *, limits: AssetLimits = AssetLimits()) -> Assets:
    """Grid (the folder's grid.png, or built from the item images) and per-unit images, small."""
    folder = asset_folder(output)
    shown = output.items[: max(0, limits.max_units)]
    item_assets = []
    for item in shown:
        stem = f"{item.index:03d}" + (f"_u{safe_name(str(item.unit), max_len=40)}" if item.unit is not None else "")
        img = _fit_px(_open_image(item.image), limits.max_image_px)
        item_assets.append(Asset(f"{folder}/{stem}.png", _png(img), item.caption))
    if output.grid is not None:
        grid_img = _open_image(output.grid)
    else:
        cols = math.ceil(math.sqrt(len(output.items)))
        cell = max(16, min(256, 2048 // cols - 4))  # an atlas of 1000 units stays a 2k-px grid
        grid_img = build_grid([_fit_px(_open_image(item.image), cell) for item in output.items])
    grid = Asset(f"{folder}/grid.png", _fit_bytes(grid_img, limits.max_grid_bytes), "grid")
    strips = tuple(_exemplar_strip(item, asset, limits) for item, asset in zip(shown, item_assets))
    return Assets(grid=grid, items=tuple(item_assets), omitted=len(output.items) - len(shown),
                  exemplars=strips if any(strips) else ())


def _exemplar_strip(item: Item, asset: Asset, limits: AssetLimits) -> Asset | None:
    """The item's exemplars side by side, one PNG (small: cells of at most 128 px)."""
    if not item.exemplars:
        return None
    cell = min(128, limits.max_image_px)
    tiles = [_fit_px(_open_image(p), cell).convert("RGB").resize((cell, cell), Image.Resampling.LANCZOS) for p in item.exemplars]
    strip = Image.new("RGB", (len(tiles) * (cell + 4) - 4, cell), "white")
    for j, tile in enumerate(tiles):
        strip.paste(tile, (j * (cell + 4), 0))
    return Asset(asset.path_in_repo.rsplit(".", 1)[0] + "_exemplars.png", _png(strip), f"{item.caption} · natural exemplars")


# ---------------------------------------------------------------------------- section text
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
    output: OutputFolder,
    assets: Assets,
    *,
    repo_id: str,
    absolute_urls: bool = False,
    url_revision: str = "main",
) -> str:
    """The section body (LF line endings, markers excluded); same inputs, same text."""
    from . import __version__

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
        f"![Feature visualizations of layer {_md(output.layer)}]({link(assets.grid.path_in_repo)})",
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


def _exemplar_lines(output: OutputFolder, assets: Assets, link: Any) -> list[str]:
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


# ---------------------------------------------------------------------------- card text
_FRONT_MATTER = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")
"""The hub's own front-matter regex (huggingface_hub.repocard.REGEX_YAML_BLOCK, "exact same regex
as in the Hub server"); copied so that a change there cannot silently move our edits."""

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")
_TAGS_KEY = re.compile(r"""^(?:tags|"tags"|'tags')[ \t]*:(?=[ \t]|$)""")
_LIST_ITEM = re.compile(r"^([ \t]*)-(?=[ \t]|$)[ \t]*(.*)$")
_BLANK_OR_COMMENT = re.compile(r"^[ \t]*(#.*)?$")


def _eol(text: str) -> str:
    """The line ending most used in `text` (LF when there is none)."""
    crlf = text.count("\r\n")
    lf = text.count("\n") - crlf
    cr = text.count("\r") - crlf
    if crlf >= max(lf, cr) and crlf:
        return "\r\n"
    return "\r" if cr > lf else "\n"


def _strip_comment(value: str) -> str:
    m = re.search(r"(^|[ \t])#", value)
    return (value[: m.start()] if m else value).strip()


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def add_tag(text: str, tag: str = TAG) -> str:
    """Insert `tag` into the card's YAML `tags` as text; the rest of the card is left untouched."""
    m = _FRONT_MATTER.search(text)
    if m is None:  # no front matter: a minimal one in front of the untouched text
        eol = "\r\n" if _eol(text) == "\r\n" else "\n"  # the hub regex wants LF or CRLF after '---'
        return f"---{eol}tags:{eol}- {tag}{eol}---{eol}" + text
    eol = _eol(m.group(0))
    y0, y1 = m.start(2), m.end(2)
    lines = [(y0 + lm.start(), y0 + lm.end()) for lm in _LINE.finditer(text[y0:y1]) if lm.end() > lm.start()]

    def content(span: tuple[int, int]) -> str:
        return text[span[0] : span[1]].rstrip("\r\n")

    key = next((i for i, span in enumerate(lines) if _TAGS_KEY.match(content(span))), None)
    if key is None:  # no tags key: a block list at the end of the YAML
        addition = f"tags:{eol}- {tag}"
        return text[:y1] + (eol + addition if y1 > y0 else addition) + text[y1:]
    line = content(lines[key])
    value_start = lines[key][0] + _TAGS_KEY.match(line).end()
    raw_value = line[_TAGS_KEY.match(line).end() :]
    value = _strip_comment(raw_value)
    if value in ("", "null", "~", "Null", "NULL"):
        items: list[tuple[int, str, str]] = []  # (end of line content, indent, value)
        for span in lines[key + 1 :]:
            body = content(span)
            item = _LIST_ITEM.match(body)
            if item:
                items.append((span[0] + len(body), item.group(1), _unquote(_strip_comment(item.group(2)))))
            elif _BLANK_OR_COMMENT.match(body) or (items and body[:1] in (" ", "\t")):
                continue
            else:
                break
        if any(v == tag for _, _, v in items):
            return text
        if items:
            pos, indent, _ = items[-1]
            return text[:pos] + f"{eol}{indent}- {tag}" + text[pos:]
        if value == "":
            pos = lines[key][0] + len(line)
            return text[:pos] + f"{eol}- {tag}" + text[pos:]
        at = value_start + raw_value.index(value)
        return text[:at] + f"[{tag}]" + text[at + len(value) :]
    if value.startswith("["):
        open_at = value_start + raw_value.index("[")
        close_at = text.find("]", open_at, y1)
        if close_at < 0:
            raise PublishError("README.md: the YAML 'tags' list is not closed with ']'; fix the card's metadata first")
        inner = text[open_at + 1 : close_at]
        if any(_unquote(v) == tag for v in inner.split(",")):
            return text
        stripped = inner.rstrip()
        if not stripped.strip():
            return text[: open_at + 1] + tag + text[open_at + 1 :]
        pos = open_at + 1 + len(stripped)
        return text[:pos] + (f" {tag}" if stripped.endswith(",") else f", {tag}") + text[pos:]
    if value.startswith(("{", "|", ">", "&", "*", "!")):
        raise PublishError("README.md: the YAML 'tags' value is not a list; fix the card's metadata first")
    if _unquote(value) == tag:
        return text
    at = value_start + raw_value.index(value)  # a single tag as a scalar: make it a flow list
    return text[:at] + f"[{value}, {tag}]" + text[at + len(value) :]


def _body_start(text: str) -> int:
    m = _FRONT_MATTER.search(text)
    return m.end() if m else 0


def upsert_section(text: str, section: str) -> str:
    """Put `section` between the markers: replace the existing section, or append one.

    The new section takes the line ending that follows the old section's start marker (or the
    card's)."""
    body = _body_start(text)
    start = text.find(START, body)
    if start >= 0:
        end = text.find(END, start + len(START))
        if end < 0:
            raise PublishError(f"README.md has {START} but no {END}; remove the broken section first")
        end += len(END)
        after_start = start + len(START)  # the line ending right after the start marker sets the section's
        eol = "\r\n" if text.startswith("\r\n", after_start) else "\n"
        return text[:start] + _block(section, eol) + text[end:]
    eol = _eol(text[body:]) if text[body:] else _eol(text)
    if eol == "\r":
        eol = "\n"
    if not text:
        sep = ""
    elif text.endswith(("\n", "\r")):
        sep = eol
    else:
        sep = eol * 2
    return text + sep + _block(section, eol) + eol


def _block(section: str, eol: str) -> str:
    lines = section.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return eol.join([START, *lines, END])


def update_card(text: str | None, section: str, *, library: str | None = None) -> str:
    """The whole new README.md text; `text=None` (no README) gives a minimal valid card."""
    if text is None:
        meta = f"library_name: {library}\n" if library and re.fullmatch(r"[A-Za-z0-9_.-]+", library) else ""
        text = f"---\n{meta}tags:\n- {TAG}\n---\n"
    tagged = add_tag(text)
    _check_metadata(tagged)
    return upsert_section(tagged, section)


def _check_metadata(text: str) -> None:
    """Parse the edited front matter (read only, never dumped): the card must stay valid metadata
    with the tag, or nothing is written. Catches cards whose YAML was already broken."""
    import yaml

    m = _FRONT_MATTER.search(text)
    try:
        data = yaml.safe_load(m.group(2)) if m else None
    except yaml.YAMLError as err:
        raise PublishError(f"README.md metadata (the YAML between '---' lines) is not valid YAML; fix it first ({_one_line(err)})") from None
    data = {} if data is None else data
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise PublishError("README.md metadata (the YAML between '---' lines) is not a mapping of names to values; fix it first")
    tags = data.get("tags")
    if not (tags == TAG or (isinstance(tags, list) and TAG in tags)):
        raise PublishError(f"could not add the {TAG!r} tag to README.md metadata; add it by hand")


# ---------------------------------------------------------------------------- publish
@dataclass(frozen=True)
class PublishResult:
    """What `publish` did: the pull-request URL (hub) or the files written (local clone)."""

    url: str | None
    files: tuple[str, ...]
    readme: str
    base_revision: str | None = None
    local_dir: Path | None = None


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def _check_repo_id(model_id: str) -> str:
    if "@" in model_id:
        raise PublishError(f"{model_id}: publish takes the repo id without @revision (the card is updated on main)")
    if not _REPO_ID.match(model_id) or ".." in model_id or model_id.endswith((".", "-")):
        raise PublishError(f"{model_id!r} is not a hub model id (expected org/name)")
    return model_id


def _check_model(output: OutputFolder, repo_id: str) -> None:
    """Refuse to put one model's images on another model's card (local paths and builtins pass)."""
    made_from = output.model.split("@", 1)[0]
    if _REPO_ID.match(made_from) and not Path(output.model).exists() and made_from != repo_id:
        raise PublishError(f"{output.path} holds visualizations of {made_from}, not of {repo_id}")


def _read_card(path: Path, where: str) -> str:
    """A card's text, refusing a huge or non-UTF-8 file with one line."""
    size = path.stat().st_size
    if size > MAX_CARD_BYTES:
        raise PublishError(f"{where} is {size:,} bytes, over the {MAX_CARD_BYTES:,}-byte limit for a model card; "
                           "shrink it first")
    return _decode(path.read_bytes(), where)


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PublishError(f"{where} is not UTF-8 text; cannot edit it safely") from None


def publish(
    model_id: str,
    from_dir: str | os.PathLike[str],
    *,
    local_dir: str | os.PathLike[str] | None = None,
    create_pr: bool = True,
    token: str | None = None,
    absolute_urls: bool = False,
    url_revision: str = "main",
    limits: AssetLimits = AssetLimits(),
    commit_message: str | None = None,
) -> PublishResult:
    """Add the visualizations in `from_dir` to the card of `model_id`.

    With `local_dir`, write into that local clone (assets + README.md, atomically); otherwise open
    one pull request on the hub with the assets and the new README.md. `create_pr` must stay True:
    hf_fviz never pushes to main (use `local_dir` and push yourself if you own the repo).
    """
    repo_id = _check_repo_id(model_id)
    output = read_output(from_dir)
    _check_model(output, repo_id)
    if local_dir is not None:
        return _publish_local(repo_id, output, Path(local_dir), absolute_urls=absolute_urls, url_revision=url_revision, limits=limits)
    if not create_pr:
        raise PublishError("hf_fviz publishes to the hub only as a pull request; to commit directly, use --local-dir on a clone and push it")
    return _publish_hub(
        repo_id, output, token=token, absolute_urls=absolute_urls, url_revision=url_revision, limits=limits, commit_message=commit_message
    )


def _publish_local(
    repo_id: str, output: OutputFolder, local_dir: Path, *, absolute_urls: bool, url_revision: str, limits: AssetLimits
) -> PublishResult:
    if not local_dir.is_dir():
        raise PublishError(f"{local_dir}: no such folder (give a local clone of {repo_id})")
    root = local_dir.resolve()
    readme_path = _target(root, "README.md")
    text = _read_card(readme_path, str(readme_path)) if readme_path.is_file() else None
    assets = prepare_assets(output, limits=limits)
    section = render_section(output, assets, repo_id=repo_id, absolute_urls=absolute_urls, url_revision=url_revision)
    new_text = update_card(text, section, library=output.library)
    targets = [(_target(root, a.path_in_repo), a.data) for a in assets.all]  # check every path before writing any
    for path, data in targets:
        _atomic_write(path, data, root=root)
    _atomic_write(readme_path, new_text.encode("utf-8"), root=root)
    return PublishResult(
        url=None,
        files=tuple(a.path_in_repo for a in assets.all) + ("README.md",),
        readme=new_text,
        base_revision=None,
        local_dir=root,
    )


def _target(root: Path, path_in_repo: str) -> Path:
    """`root/path_in_repo` with symlinks resolved; refuses anything that lands outside the clone."""
    if path_in_repo.startswith("/") or ".." in Path(path_in_repo).parts:
        raise PublishError(f"refusing to write {path_in_repo!r}: not a path inside the clone")
    path = (root / path_in_repo).resolve()
    if not path.is_relative_to(root) or path == root:
        raise PublishError(f"refusing to write {path_in_repo}: it resolves outside {root} (symlink?)")
    return path


def _atomic_write(path: Path, data: bytes, *, root: Path) -> None:
    """Write via a temp file in the same folder and os.replace, so a crash leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.parent.resolve().is_relative_to(root):
        raise PublishError(f"refusing to write {path}: its folder resolves outside {root}")
    mode = path.stat().st_mode & 0o777 if path.exists() else None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hf_fviz-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _resolve_token(token: str | None) -> str:
    if token:
        return token
    import huggingface_hub

    found = huggingface_hub.get_token()  # HF_TOKEN, then the token saved by `hf auth login`
    if not found:
        raise PublishError("publishing to the hub needs a token: run `hf auth login` or set HF_TOKEN (or pass --token)")
    return found


def _read_hub_card(api: Any, repo_id: str, token: str) -> tuple[str, str | None]:
    """(commit sha of main, README.md text at that commit or None when the repo has none)."""
    import huggingface_hub
    from huggingface_hub import errors

    try:
        sha = api.model_info(repo_id).sha
        if not sha:
            raise PublishError(f"{repo_id}: the hub returned no commit sha for main")
        try:
            path = huggingface_hub.hf_hub_download(repo_id, "README.md", revision=sha, token=token)
        except errors.LocalEntryNotFoundError:
            # Also an EntryNotFoundError, but it means "could not fetch", not "no card": treating
            # it as a missing card would replace the whole card with a minimal one.
            raise PublishError(f"{repo_id}: could not download README.md (offline or no connection to the hub)") from None
        except errors.EntryNotFoundError:
            return sha, None
    except errors.OfflineModeIsEnabled:
        raise PublishError("HF_HUB_OFFLINE=1 is set: opening a pull request needs the network (or use --local-dir)") from None
    except errors.GatedRepoError:
        raise PublishError(f"{repo_id}: gated repo; accept its conditions on the hub with the account of your token") from None
    except errors.RepositoryNotFoundError:
        raise PublishError(f"{repo_id}: no such model repo on the hub, or your token cannot see it") from None
    except errors.HfHubHTTPError as err:
        raise PublishError(f"{repo_id}: the hub refused the request ({_one_line(err)})") from None
    except _TRANSPORT_ERRORS as err:
        raise PublishError(f"{repo_id}: could not reach the hub ({_one_line(err)})") from None
    return sha, _read_card(Path(path), f"{repo_id}/README.md")


def _transport_errors() -> tuple[type[BaseException], ...]:
    try:
        from huggingface_hub.utils import httpx  # httpx2 in huggingface_hub 2.x, httpx in 1.x
    except ImportError:  # pragma: no cover - older huggingface_hub
        return (ConnectionError,)
    return (httpx.TransportError, ConnectionError)


_TRANSPORT_ERRORS = _transport_errors()


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def _publish_hub(
    repo_id: str,
    output: OutputFolder,
    *,
    token: str | None,
    absolute_urls: bool,
    url_revision: str,
    limits: AssetLimits,
    commit_message: str | None,
) -> PublishResult:
    from huggingface_hub import CommitOperationAdd, HfApi, errors

    from . import __version__

    token = _resolve_token(token)
    api = HfApi(token=token, library_name="hf_fviz", library_version=__version__)
    sha, text = _read_hub_card(api, repo_id, token)
    assets = prepare_assets(output, limits=limits)
    section = render_section(output, assets, repo_id=repo_id, absolute_urls=absolute_urls, url_revision=url_revision)
    new_text = update_card(text, section, library=output.library)
    operations = [CommitOperationAdd(path_in_repo=a.path_in_repo, path_or_fileobj=a.data) for a in assets.all]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=new_text.encode("utf-8")))
    layer = _CONTROL.sub(" ", output.layer)[:80]
    try:
        info = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or f"Add feature visualizations of {layer} (hf_fviz)",
            commit_description=(
                f"Feature visualizations ({output.method}, layer {layer}, {len(output.items)} images) made with "
                f"hf_fviz {output.version or __version__}. Images under `{asset_folder(output)}/`; the card section "
                f"sits between `{START}` and `{END}` and can be regenerated with `hf-fviz publish`."
            ),
            create_pr=True,
            parent_commit=sha,
        )
    except errors.HfHubHTTPError as err:
        raise PublishError(f"{repo_id}: the hub refused the pull request ({_one_line(err)})") from None
    except _TRANSPORT_ERRORS as err:
        raise PublishError(f"{repo_id}: could not reach the hub ({_one_line(err)})") from None
    return PublishResult(
        url=info.pr_url or info.commit_url,
        files=tuple(op.path_in_repo for op in operations),
        readme=new_text,
        base_revision=sha,
    )
