"""manifest.json, the contract of every output folder (DESIGN.md "Output folder"): read and
written here only.

`Manifest` / `Item` are the records; `Manifest.save(folder)` writes them (atomically, keys in
the documented order), `Manifest.read(folder)` reads and checks a folder that any hf_fviz
command (or another tool) wrote: every user mistake is one `PublishError` line, and every file
the manifest names is checked to lie inside the folder and exist.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PublishError
from .grid import card_caption
from .writer import MANIFEST, atomic_write

SHOWN_EXEMPLARS = 4  # exemplars per item that readers (card, Space) show


@dataclass
class Item:
    """One image of an output folder: a unit, a facet or a cluster. `extra` holds the keys of
    one method (dual/facets: cluster, facet, members, nearest, ...), written after the others."""

    image: str | None = None  # None: an item of exemplars only (`hf-fviz exemplars`)
    rgba: str | None = None
    unit: Any = None
    label: str | None = None
    objective: float | None = None
    layer: str | None = None  # set when one folder holds several layers
    exemplars: list[dict[str, Any]] | None = None  # natural exemplars, best first (`hf_fviz.exemplars`)
    sanity: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    index: int = 0  # position in the folder (not written)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.unit, "label": self.label}
        if self.image is not None:
            out["image"] = self.image
            if self.rgba is not None:
                out["rgba"] = self.rgba
            out["objective"] = self.objective
        for key in ("layer", "exemplars", "sanity"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        out.update(self.extra)
        return out

    @property
    def members(self) -> int | None:
        """How many natural images the item stands for (dual clusters, facets)."""
        members = self.extra.get("members")
        return len(members) if isinstance(members, list) else (members if isinstance(members, int) else None)

    @property
    def caption(self) -> str:
        return card_caption(self.unit, self.label, self.layer, self.members, self.index)

    @property
    def exemplar_files(self) -> tuple[str, ...]:
        """The first exemplars' files (crops where there are), best first."""
        return tuple(ex.get("crop") or ex.get("image") for ex in (self.exemplars or [])[:SHOWN_EXEMPLARS])

    @property
    def exemplar_source(self) -> str | None:
        return str(self.exemplars[0].get("source") or "") if self.exemplars else None


_KNOWN = ("hf_fviz_version", "model", "revision", "library", "method", "layer", "settings", "items", "seconds", "device")


@dataclass
class Manifest:
    """An output folder's manifest. `extra` keeps every other top-level key (stopped_early,
    grid, grid_units, shards, images, ...), written after the documented ones; `path` is the
    folder a manifest was read from (not written)."""

    model: str
    method: str | None  # None: a folder of exemplars only (its `kind` says so)
    layer: str | list[str]
    items: list[Item]
    settings: dict[str, Any] = field(default_factory=dict)
    revision: str | None = None
    library: str | None = None
    hf_fviz_version: str | None = None
    seconds: float | None = None
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.hf_fviz_version is None and self.path is None:
            from .. import __version__

            self.hf_fviz_version = __version__

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.layer) if isinstance(self.layer, list) else (self.layer,)

    @property
    def version(self) -> str | None:
        return self.hf_fviz_version

    @property
    def grid(self) -> Path | None:
        """The folder's grid image (the `grid` key, else grid.png), when there is one."""
        if self.path is None:
            return None
        name = self.extra.get("grid") if isinstance(self.extra.get("grid"), str) else "grid.png"
        root = self.path.resolve()
        return _inside(root, name, what="grid") if (root / name).is_file() else None

    def file(self, relative: str) -> Path:
        """A file the manifest names, resolved inside the folder it was read from."""
        assert self.path is not None, "only a manifest read from a folder has files"
        return _inside(self.path.resolve(), relative, what="file")

    def to_json(self) -> dict[str, Any]:
        out = {key: getattr(self, key) for key in _KNOWN if key != "method" or self.method is not None}
        out["items"] = [item.to_json() for item in self.items]
        out.update(self.extra)
        return out

    def save(self, folder: str | os.PathLike[str]) -> Path:
        path = Path(folder) / MANIFEST
        atomic_write(path, (json.dumps(self.to_json(), indent=1) + "\n").encode("utf-8"))
        return path

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> Manifest:
        """Read and check FOLDER/manifest.json; every user mistake is a one-line `PublishError`."""
        root = Path(folder)
        if not root.is_dir():
            raise PublishError(f"{root}: no such folder (give the --out folder of hf-fviz visualize, dual, facets or atlas)")
        path = root / MANIFEST
        if not path.is_file():
            raise PublishError(f"{root}: no manifest.json, not an hf-fviz output folder")
        data = _json(path)
        if not isinstance(data, dict):
            raise PublishError(f"{path}: not an hf-fviz manifest (expected a JSON object)")
        missing = [k for k in ("model", "method", "layer", "items") if k not in data]
        if missing:
            raise PublishError(f"{path}: not an hf-fviz manifest (missing {', '.join(missing)})")
        for key in ("model", "method"):
            if not isinstance(data[key], str) or not data[key]:
                raise PublishError(f"{path}: not an hf-fviz manifest ({key!r} must be a non-empty string)")
        layers = data["layer"] if isinstance(data["layer"], list) else [data["layer"]]
        if not layers or not all(isinstance(x, str) and x for x in layers):
            raise PublishError(f"{path}: not an hf-fviz manifest ('layer' must be a layer name or a list of them)")
        raw_items = data["items"]
        if not isinstance(raw_items, list) or not raw_items:
            raise PublishError(f"{path}: the manifest lists no images ('items' is empty)")
        resolved = root.resolve()
        items = [_read_item(resolved, raw, i, several_layers=len(layers) > 1) for i, raw in enumerate(raw_items)]
        manifest = cls(
            model=data["model"],
            method=data["method"],
            layer=data["layer"],
            items=items,
            settings=dict(data["settings"]) if isinstance(data.get("settings"), dict) else {},
            revision=_text(data.get("revision")),
            library=_text(data.get("library")),
            hf_fviz_version=_text(data.get("hf_fviz_version")),
            seconds=_number(data.get("seconds")),
            device=_text(data.get("device")),
            extra={k: v for k, v in data.items() if k not in _KNOWN},
            path=root,
        )
        manifest.grid  # noqa: B018 - a grid that leaves the folder is refused at read time
        return manifest


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PublishError(f"{path}: not valid JSON ({err})") from None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _read_item(root: Path, raw: Any, i: int, *, several_layers: bool) -> Item:
    if not isinstance(raw, dict) or not isinstance(raw.get("image"), str):
        raise PublishError(f"{root / MANIFEST}: item {i} has no 'image' path; not an hf-fviz manifest")
    _inside(root, raw["image"], what=f"item {i} image")
    exemplars = raw.get("exemplars")
    if isinstance(exemplars, list) and exemplars:
        for j, ex in enumerate(exemplars[:SHOWN_EXEMPLARS]):
            rel = ex.get("crop") or ex.get("image") if isinstance(ex, dict) else None
            if not isinstance(rel, str):
                raise PublishError(f"item {i} exemplar {j} has no image path; not an hf-fviz manifest")
            _inside(root, rel, what=f"item {i} exemplar {j}")
    else:
        exemplars = None
    sanity = raw.get("sanity")
    known = ("unit", "label", "image", "rgba", "objective", "layer", "exemplars", "sanity")
    return Item(
        image=raw["image"],
        rgba=raw["rgba"] if isinstance(raw.get("rgba"), str) else None,
        unit=raw.get("unit"),
        label=_text(raw.get("label")),
        objective=_number(raw.get("objective")),
        layer=raw["layer"] if several_layers and isinstance(raw.get("layer"), str) else None,
        exemplars=exemplars,
        sanity=sanity if exemplars and isinstance(sanity, dict) and _number(sanity.get("score")) is not None else None,
        extra={k: v for k, v in raw.items() if k not in known},
        index=i,
    )


def _inside(root: Path, relative: str, *, what: str) -> Path:
    """Resolve `relative` under `root`, refusing paths (or symlinks) that lead outside it."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise PublishError(f"{root}/{MANIFEST}: {what} {relative!r} points outside the output folder")
    if not path.is_file():
        raise PublishError(f"{root}: {what} {relative!r} is listed in manifest.json but missing")
    return path
