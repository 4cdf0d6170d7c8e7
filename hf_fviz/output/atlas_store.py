"""An atlas folder on disk (format `hf_fviz-atlas/1`): its run file, one record per finished
unit, the checks that decide which units are done, and the merge into the output folder contract.

    atlas.json                  what is being made (model, revision, layer, units, settings);
                                a resumed run with other settings is refused
    LAYER/UNIT.png, UNIT_rgba.png   the images (the manifest contract of DESIGN.md)
    records/UNIT.json           one record per finished unit (label, objective, file sizes, sha256)
    shards/shard-I-of-N.json    a shard's summary once it has finished (informative only)
    manifest.json, grid.png     written by the merge once every unit has a record

Every file goes through `writer.atomic_write`; a unit's record is written only after both of its
images, and counts only while its files have the recorded sizes. The merge checks every file
against its record's sha256 and decodes it before writing the manifest (last), and drops the
record of a damaged unit so that the next run redoes it. The run loop is `hf_fviz.atlas`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import AtlasError
from ..results import Visualization
from .exemplars import exemplar_entries, exemplar_files, exemplar_folder
from .grid import caption, columns, tile_grid
from .manifest import SHOWN_EXEMPLARS, Item, Manifest
from .render import item_paths, rgb_image, rgba_image
from .writer import MANIFEST, atomic_write, jpeg_bytes, png_bytes

FORMAT = "hf_fviz-atlas/1"
RUN_FILE = "atlas.json"
RECORDS = "records"
SHARDS = "shards"
DEFAULT_GRID_MAX = 100
CAPTION_PX = 14  # the atlas grid's caption strip (its tests measure the layout)


# ---------------------------------------------------------------------------- files and records
def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=1) + "\n").encode("utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_path(out: Path, unit: int) -> Path:
    return out / RECORDS / f"{unit}.json"


def record_ok(out: Path, unit: int) -> dict[str, Any] | None:
    """The unit's record if it is readable and its two files exist with the recorded sizes
    (a cheap check for resuming; the merge also checks hashes and decodes the images)."""
    rec = _read_json(record_path(out, unit))
    if not isinstance(rec, dict) or rec.get("unit") != unit:
        return None
    try:
        for key in ("image", "rgba"):
            if (out / rec[key]).stat().st_size != rec["bytes"][key]:
                return None
    except (OSError, KeyError, TypeError):
        return None
    return rec


def done_units(out: Path) -> set[int]:
    """Units that have a record file (existence only: fast enough to poll)."""
    folder = out / RECORDS
    if not folder.is_dir():
        return set()
    return {int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()}


def remove_stale_tmp(out: Path, folders: Sequence[Path], units: set[int]) -> None:
    """Delete temporary files a killed run left for `units` (this shard's own units only, so a
    concurrent rank's files in flight are never touched)."""
    pattern = re.compile(r"^\.(\d+)(?:_rgba)?\.(?:png|json)\.tmp-\d+$")
    for folder in folders:
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            m = pattern.match(p.name)
            if m and int(m.group(1)) in units:
                with contextlib.suppress(OSError):
                    p.unlink()


# ---------------------------------------------------------------------------- the run file
@dataclass(frozen=True)
class AtlasSpec:
    """What an atlas folder holds; fixed by the first run, checked by every later one."""

    model: str
    revision: str | None
    library: str | None
    layer: str
    units: tuple[int, ...]
    method: str
    request: dict[str, Any]  # steps, size, crops, seed, lr as asked (lr None = method default)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model,
            "revision": self.revision,
            "library": self.library,
            "layer": self.layer,
            "method": self.method,
            "request": self.request,
            "units": list(self.units),
        }

    @classmethod
    def from_json(cls, data: Any, where: Path) -> AtlasSpec:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise AtlasError(f"{where}: not an hf-fviz atlas folder ({RUN_FILE} missing or unreadable)")
        try:
            return cls(
                model=data["model"],
                revision=data["revision"],
                library=data["library"],
                layer=data["layer"],
                units=tuple(int(u) for u in data["units"]),
                method=data["method"],
                request=dict(data["request"]),
            )
        except (KeyError, TypeError, ValueError):
            raise AtlasError(f"{where / RUN_FILE}: damaged atlas description") from None


def read_spec(out_dir: str | os.PathLike[str]) -> AtlasSpec:
    out = Path(out_dir)
    return AtlasSpec.from_json(_read_json(out / RUN_FILE), out)


def claim_folder(out: Path, spec: AtlasSpec) -> None:
    """Write atlas.json, or check that the one there describes the same atlas."""
    path = out / RUN_FILE
    if not path.exists():
        # Ranks start together: another one may be writing atlas.json right now (its hidden
        # temporary file, the lock folder). Anything else means a folder we must not fill.
        foreign = [p.name for p in out.iterdir() if p.name not in (SHARDS, RECORDS, RUN_FILE) and not p.name.startswith(".")]
        if foreign and not path.exists():
            raise AtlasError(f"{out} exists and is not an atlas folder (it holds {foreign[0]}): give an empty or new --out")
        atomic_write(path, json_bytes(spec.to_json()))
    old = read_spec(out)  # also catches two ranks started with different settings
    for key in ("model", "revision", "layer", "method", "request", "units"):
        a, b = getattr(old, key), getattr(spec, key)
        if a != b:
            shown = (lambda v: f"{len(v)} units") if key == "units" else repr
            raise AtlasError(
                f"{out} holds an atlas with {key}={shown(a)}, this run asks {key}={shown(b)}: "
                "resume with the same settings or use another --out"
            )


# ---------------------------------------------------------------------------- units
def write_unit(out: Path, vis: Visualization, index: int, *, shard: tuple[int, int], device: str, share: int) -> None:
    """Both PNGs atomically, then the record (which is what makes the unit count as done);
    `share`: units in the batch, to split its seconds."""
    image_rel, rgba_rel = item_paths(vis, index)
    data = {"image": png_bytes(rgb_image(vis)), "rgba": png_bytes(rgba_image(vis))}
    atomic_write(out / image_rel, data["image"])
    atomic_write(out / rgba_rel, data["rgba"])
    objective = float(vis.objective)
    record = {
        "unit": int(vis.unit),
        "label": vis.label,
        "image": image_rel,
        "rgba": rgba_rel,
        "objective": round(objective, 6) if math.isfinite(objective) else None,
        "bytes": {k: len(d) for k, d in data.items()},
        "sha256": {k: _sha256(d) for k, d in data.items()},
        "settings": vis.settings.to_manifest(),
        "method": vis.method,
        "seconds": round(float(vis.extra.get("seconds", 0.0)) / share, 4),
        "shard": list(shard),
        "device": device,
    }
    exemplars = vis.extra.get("exemplars")
    if exemplars:  # natural exemplars (`atlas --exemplars`): their JPEGs, then the record lists them
        folder = exemplar_folder(image_rel)
        for path, img in exemplar_files(exemplars, folder):
            atomic_write(out / path, jpeg_bytes(img))
        record["exemplars"] = exemplar_entries(exemplars, folder, source=vis.extra.get("exemplar_source", ""))
        if vis.extra.get("sanity"):
            record["sanity"] = vis.extra["sanity"]
    atomic_write(record_path(out, int(vis.unit)), json_bytes(record))


# ---------------------------------------------------------------------------- status and merge
@dataclass(frozen=True)
class AtlasStatus:
    spec: AtlasSpec
    done: tuple[int, ...]
    missing: tuple[int, ...]
    merged: bool


def status(out_dir: str | os.PathLike[str]) -> AtlasStatus:
    """How far an atlas folder is (record files only; `merge` does the full check)."""
    out = Path(out_dir)
    spec = read_spec(out)
    have = done_units(out)
    done = tuple(u for u in spec.units if u in have)
    missing = tuple(u for u in spec.units if u not in have)
    return AtlasStatus(spec, done, missing, (out / MANIFEST).is_file())


def _verify(out: Path, unit: int) -> tuple[dict[str, Any] | None, str]:
    """(record, '') when the unit's record and both files are intact, else (None, why)."""
    rec = _read_json(record_path(out, unit))
    if not isinstance(rec, dict) or rec.get("unit") != unit:
        return None, "record unreadable"
    for key in ("image", "rgba"):
        try:
            rel = rec[key]
            path = (out / rel).resolve()
            if not path.is_relative_to(out.resolve()):
                return None, f"{key} path leaves the folder"
            data = path.read_bytes()
            if len(data) != rec["bytes"][key] or _sha256(data) != rec["sha256"][key]:
                return None, f"{rel} differs from its record"
            with Image.open(io.BytesIO(data)) as img:
                img.load()
        except (OSError, KeyError, TypeError, ValueError, Image.DecompressionBombError) as err:
            return None, f"{key}: {type(err).__name__}"
    for ex in rec.get("exemplars") or []:
        for rel in (ex.get("image"), ex.get("crop")) if isinstance(ex, dict) else (None,):
            if rel is not None and not (isinstance(rel, str) and _inside(out, rel).is_file()):
                return None, f"exemplar {rel} missing"
    return rec, ""


def _inside(out: Path, relative: str) -> Path:
    """`out/relative` resolved, or `out` itself (not a file) when it leads outside the folder."""
    path = (out / relative).resolve()
    return path if path.is_relative_to(out.resolve()) else out


def merge(
    out_dir: str | os.PathLike[str], *, model: str | None = None, grid_max: int = DEFAULT_GRID_MAX, tile: int = 128
) -> Path:
    """Check every unit (record present, files match their sha256 and decode) and write grid.png
    and manifest.json (last, atomically). A damaged unit's record is removed so that resuming the
    atlas redoes it; then `AtlasError` says what to do. Returns the manifest path."""
    out = Path(out_dir)
    spec = read_spec(out)
    if model is not None and model.split("@")[0] != spec.model:
        raise AtlasError(f"{out} holds an atlas of {spec.model}, not {model}")
    have = done_units(out)
    stray = sorted(have - set(spec.units))
    if stray:
        raise AtlasError(f"{out / RECORDS} has records of units outside the atlas: {_short(stray)}")
    missing = [u for u in spec.units if u not in have]
    if missing:
        raise AtlasError(
            f"{out}: {len(spec.units) - len(missing)} of {len(spec.units)} units done; missing {_short(missing)}. "
            "Run (or resume) the missing shards, then merge again"
        )
    records: list[dict[str, Any]] = []
    damaged: list[str] = []
    for u in spec.units:
        rec, why = _verify(out, u)
        if rec is None:
            damaged.append(f"{u} ({why})")
            with contextlib.suppress(FileNotFoundError):
                record_path(out, u).unlink()
        else:
            records.append(rec)
    if damaged:
        raise AtlasError(
            f"{out}: {len(damaged)} unit(s) had damaged files and will be redone when you resume the atlas: {_short(damaged)}"
        )
    settings = records[0]["settings"]
    if any(r["settings"] != settings or r["method"] != spec.method for r in records):
        raise AtlasError(f"{out}: units were made with different settings; start the atlas again in a new folder")
    shown = _spread(spec.units, grid_max)
    by_unit = {r["unit"]: r for r in records}
    grid = _grid(out, [by_unit[u] for u in shown], tile=min(tile, int(settings.get("size", tile))), layer=spec.layer)
    atomic_write(out / "grid.png", png_bytes(grid))
    devices = sorted({str(r.get("device")) for r in records})
    manifest = Manifest(
        model=spec.model,
        revision=spec.revision,
        library=spec.library,
        method=spec.method,
        layer=spec.layer,
        settings=settings,
        items=[Item(unit=r["unit"], label=r["label"], image=r["image"], rgba=r["rgba"], objective=r["objective"],
                    exemplars=r.get("exemplars"), sanity=r.get("sanity")) for r in records],
        seconds=round(sum(float(r.get("seconds", 0.0)) for r in records), 2),
        device=devices[0] if len(devices) == 1 else ",".join(devices),
        extra={"grid": "grid.png", "grid_units": shown, "shards": max(int(r["shard"][1]) for r in records)},
    )
    return manifest.save(out)


def _short(values: Sequence[Any], n: int = 10) -> str:
    text = ", ".join(str(v) for v in values[:n])
    return text + (f" (+{len(values) - n} more)" if len(values) > n else "")


def _spread(units: Sequence[int], k: int) -> list[int]:
    """At most `k` units, evenly spread over the list (all of them when there are few)."""
    if k <= 0 or len(units) <= k:
        return list(units)
    step = (len(units) - 1) / (k - 1) if k > 1 else 0
    return list(dict.fromkeys(units[round(i * step)] for i in range(k)))


def _grid(out: Path, records: Sequence[dict[str, Any]], *, tile: int, layer: str) -> Image.Image:
    """A captioned grid of the units' RGB images, read back from the folder; with exemplars, one
    row per unit: its image (captioned with its sanity score), then up to `SHOWN_EXEMPLARS`
    exemplar crops with their activations."""
    if not any(r.get("exemplars") for r in records):
        return tile_grid([_tile(out, r["image"], tile) for r in records], cols=columns(len(records)), tile=tile,
                         captions=[caption(r["unit"], r.get("label"), layer) for r in records], caption_px=CAPTION_PX)
    cols = 1 + min(SHOWN_EXEMPLARS, max(len(r.get("exemplars") or []) for r in records))
    tiles: list[Image.Image | None] = []
    texts: list[str] = []
    for rec in records:
        sanity = rec.get("sanity")
        name = caption(rec["unit"], rec.get("label"), layer)
        row = [(rec["image"], name + (f" · sanity {sanity['score']:.2f}{' !' if sanity.get('flag') else ''}" if sanity else ""))]
        row += [(ex.get("crop") or ex["image"], f"{ex['activation']:.3g}") for ex in (rec.get("exemplars") or [])[:SHOWN_EXEMPLARS]]
        tiles += [_tile(out, rel, tile) for rel, _ in row] + [None] * (cols - len(row))
        texts += [text for _, text in row] + [""] * (cols - len(row))
    return tile_grid(tiles, cols=cols, tile=tile, captions=texts, lead_gap=4, caption_px=CAPTION_PX)


def _tile(out: Path, relative: str, tile: int) -> Image.Image:
    with Image.open(out / relative) as img:
        return img.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS)
