"""Atlas: every unit of a layer (say all 1000 classes), in batches, resumable, sharded over ranks.

    >>> from hf_fviz.atlas import atlas, merge
    >>> atlas("timm/resnet50.a1_in1k", layer="logits", units="all", out_dir="atlas")   # one process
    $ torchrun --nproc-per-node 8 -m hf_fviz.cli atlas timm/resnet50.a1_in1k --out atlas  # 8 ranks

Folder layout (`DIR`):

    atlas.json                  what is being made (model, revision, layer, units, settings);
                                a resumed run with other settings is refused
    LAYER/UNIT.png, UNIT_rgba.png   the images (the manifest contract of DESIGN.md)
    records/UNIT.json           one record per finished unit (label, objective, file sizes, sha256)
    shards/shard-I-of-N.json    a shard's summary once it has finished (informative only)
    manifest.json, grid.png     written by the merge once every unit has a record

Why it cannot lose or half-write anything: every file is written to a temporary name in its
folder and moved into place with `os.replace` (atomic on POSIX), and a unit's record is written
only after both of its images. A unit counts as done only when its record exists and its files
have the recorded sizes; anything else is redone (a killed run's stray files are overwritten).
The merge checks every file against its record's sha256 and decodes it before writing the
manifest (last), and drops the record of a damaged unit so that the next run redoes it.

Sharding needs no communication: the unit at position p of the unit list belongs to shard
p % N, each rank writes only its own units' files, and records are per unit, so a run may be
resumed with another shard count. Under torchrun the shard comes from RANK / WORLD_SIZE; rank 0
then waits for the other ranks' records and merges. With explicit `--shard I/N` runs (separate
jobs), the shard that finds every unit done merges; `merge()` / `--merge` does it by hand.

Results do not depend on batching or sharding: the engine starts every unit from the same seeded
image and draws crops and noise from (seed, step) only, so a unit's image is the same whether it
is optimized alone or in a batch of 64 (checked in the tests).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from .errors import AtlasError, InvalidSettings, UnitOutOfRange
from .render import item_paths, rgb_image, rgba_image, safe_name

if TYPE_CHECKING:  # pragma: no cover
    from .engine.methods import Visualization
    from .hub.vision_model import VisionModel

FORMAT = "hf_fviz-atlas/1"
RUN_FILE = "atlas.json"
RECORDS = "records"
SHARDS = "shards"
DEFAULT_GRID_MAX = 100
DEFAULT_MERGE_WAIT = 6 * 3600.0

AtlasProgress = Callable[[int, int, Mapping[str, Any]], None]
"""progress(done_units, shard_units, info); info has 'phase' ('optimize', 'write', 'wait', 'merge')
and, while optimizing, 'step', 'steps', 'batch' (units in the batch) and 'objective'."""


# ---------------------------------------------------------------------------- shards and units
@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based). `from_env`: taken from torchrun's RANK / WORLD_SIZE."""

    index: int = 0
    count: int = 1
    from_env: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.count, int) and isinstance(self.index, int) and self.count >= 1 and 0 <= self.index < self.count):
            raise InvalidSettings(f"shard must be I/N with 0 <= I < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'I/N' (0-based), e.g. '0/4' .. '3/4'."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m:
            raise InvalidSettings(f"--shard must look like I/N (e.g. 0/4, shards counted from 0), got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Shard:
        """The shard torchrun (or any launcher setting RANK and WORLD_SIZE) gives this process."""
        env = os.environ if environ is None else environ
        world = env.get("WORLD_SIZE")
        if world is None:
            return cls()
        try:
            count, index = int(world), int(env.get("RANK", "0"))
        except ValueError:
            raise InvalidSettings(f"RANK={env.get('RANK')!r} / WORLD_SIZE={world!r} are not integers") from None
        if count <= 1:
            return cls()
        if not 0 <= index < count:
            raise InvalidSettings(f"RANK={index} is outside 0..{count - 1} (WORLD_SIZE={count})")
        return cls(index, count, from_env=True)

    @classmethod
    def of(cls, value: Shard | tuple[int, int] | str | None) -> Shard:
        """A `Shard` from any accepted spelling; None means the launcher's environment."""
        if isinstance(value, Shard):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, tuple):
            return cls(*value)
        if value is None:
            return cls.from_environment()
        raise InvalidSettings(f"shard must be 'I/N', (I, N) or None, got {value!r}")

    def pick(self, units: Sequence[int]) -> list[int]:
        """This shard's units: every `count`-th, starting at `index` (balanced, deterministic)."""
        return list(units[self.index :: self.count])

    @property
    def name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_units(spec: str | Sequence[int], n_units: int, *, layer: str = "layer") -> list[int]:
    """'all', or a comma list of indices and inclusive ranges ('0-99,250'), or a list of ints ->
    unit indices in the given order, each once; `UnitOutOfRange` names the valid range."""
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "all":
            return list(range(n_units))
        units: list[int] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
            if not m:
                raise InvalidSettings(f"--units must be 'all' or indices and ranges like 0-99,250; cannot read {part!r}")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            if hi < lo:
                raise InvalidSettings(f"--units range {part!r} is empty (write it low-high)")
            if hi >= n_units:
                raise UnitOutOfRange(f"unit {hi} is out of range for layer '{layer}': valid units are 0..{n_units - 1}")
            units.extend(range(lo, hi + 1))
    else:
        units = list(spec)
        for u in units:
            if not isinstance(u, int) or isinstance(u, bool) or not 0 <= u < n_units:
                raise UnitOutOfRange(f"unit {u!r} is out of range for layer '{layer}': valid units are 0..{n_units - 1}")
    out = list(dict.fromkeys(units))
    if not out:
        raise InvalidSettings("no units given")
    return out


# ---------------------------------------------------------------------------- files
def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers (and a later run after a kill) see either the old
    file or the whole new one: temporary name in the same folder, fsync, os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=1) + "\n").encode("utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record_path(out: Path, unit: int) -> Path:
    return out / RECORDS / f"{unit}.json"


def _record_ok(out: Path, unit: int) -> dict[str, Any] | None:
    """The unit's record if it is readable and its two files exist with the recorded sizes
    (a cheap check for resuming; the merge also checks hashes and decodes the images)."""
    rec = _read_json(_record_path(out, unit))
    if not isinstance(rec, dict) or rec.get("unit") != unit:
        return None
    try:
        for key in ("image", "rgba"):
            if (out / rec[key]).stat().st_size != rec["bytes"][key]:
                return None
    except (OSError, KeyError, TypeError):
        return None
    return rec


def _done_units(out: Path) -> set[int]:
    """Units that have a record file (existence only: fast enough to poll)."""
    folder = out / RECORDS
    if not folder.is_dir():
        return set()
    return {int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()}


def _remove_stale_tmp(out: Path, folders: Sequence[Path], units: set[int]) -> None:
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


@contextlib.contextmanager
def _shard_lock(out: Path, shard: Shard) -> Iterator[None]:
    """One process per shard: a second run of the same shard on the same folder is refused
    (flock is released by the kernel when a process dies, even by SIGKILL)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = out / SHARDS / f"{shard.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AtlasError(f"{out}: shard {shard} is already being run by another process") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


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


def _claim_folder(out: Path, spec: AtlasSpec) -> None:
    """Write atlas.json, or check that the one there describes the same atlas."""
    path = out / RUN_FILE
    if not path.exists():
        # Ranks start together: another one may be writing atlas.json right now (its hidden
        # temporary file, the lock folder). Anything else means a folder we must not fill.
        foreign = [p.name for p in out.iterdir() if p.name not in (SHARDS, RECORDS, RUN_FILE) and not p.name.startswith(".")]
        if foreign and not path.exists():
            raise AtlasError(f"{out} exists and is not an atlas folder (it holds {foreign[0]}): give an empty or new --out")
        _atomic_write(path, _json_bytes(spec.to_json()))
    old = read_spec(out)  # also catches two ranks started with different settings
    for key in ("model", "revision", "layer", "method", "request", "units"):
        a, b = getattr(old, key), getattr(spec, key)
        if a != b:
            shown = (lambda v: f"{len(v)} units") if key == "units" else repr
            raise AtlasError(
                f"{out} holds an atlas with {key}={shown(a)}, this run asks {key}={shown(b)}: "
                "resume with the same settings or use another --out"
            )


# ---------------------------------------------------------------------------- the run
@dataclass
class AtlasResult:
    """What one call did. `units`: this shard's units; `computed`: the ones optimized now;
    `skipped`: already done by an earlier run; `manifest`: set when this call merged;
    `done`/`total`: units with a record over the whole atlas when the call ended."""

    out_dir: Path
    layer: str
    shard: Shard
    units: list[int]
    computed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    seconds: float = 0.0
    manifest: Path | None = None
    done: int = 0
    total: int = 0

    @property
    def complete(self) -> bool:
        return self.done == self.total


def shard_device(device: str | None) -> str | None:
    """Under torchrun on a GPU machine, `auto` means this rank's own GPU (LOCAL_RANK)."""
    if device not in (None, "auto"):
        return device
    local = os.environ.get("LOCAL_RANK")
    if local is not None and local.isdigit():
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(local) % torch.cuda.device_count()}"
    return device


def atlas(
    model: VisionModel | str,
    *,
    out_dir: str | os.PathLike[str],
    layer: str | None = None,
    units: str | Sequence[int] = "all",
    batch: int | None = None,
    shard: Shard | tuple[int, int] | str | None = None,
    method: str = "maco",
    steps: int | None = None,
    size: int | None = None,
    crops: int | None = None,
    seed: int = 0,
    lr: float | None = None,
    device: str | None = None,
    merge_when_done: bool = True,
    merge_wait: float = DEFAULT_MERGE_WAIT,
    grid_max: int = DEFAULT_GRID_MAX,
    progress: AtlasProgress | None = None,
    exemplars: str | None = None,
    top: int = 8,
    max_images: int | None = 2000,
    split: str | None = None,
    image_column: str | None = None,
) -> AtlasResult:
    """Visualize `units` of `layer` into `out_dir`, `batch` units per optimization, skipping
    units an earlier (killed) run finished. See the module docstring for the folder and the rules.

    Args:
        model: a `VisionModel` or a model id.
        out_dir: the atlas folder (new, or one made by an earlier run with the same settings).
        layer: default `logits` where the model has a head, else its last layer.
        units: 'all', '0-99,250', or a list of indices.
        batch: units optimized together (one forward pass per step); None: the fastest per unit
            on this machine, measured (`engine.chunking`).
        shard: `Shard`, (I, N), 'I/N', or None for torchrun's RANK / WORLD_SIZE (else 0/1).
        method, steps, size, crops, seed, lr: as in `hf_fviz.visualize` (None: its defaults).
        device: 'auto', 'cpu', 'cuda'; under torchrun 'auto' picks the rank's GPU.
        merge_when_done: merge into manifest.json when every unit is done (under torchrun only
            rank 0 merges, after waiting up to `merge_wait` seconds for the other ranks).
        grid_max: at most this many units (evenly spread) in grid.png.
        progress: `progress(done, total, info)` over this shard's units.
        exemplars: an image source (folder, 'samples', hub dataset org/name): each unit's record
            also gets its top natural images and sanity check (`atlas_exemplars`); top,
            max_images, split, image_column: as in `hf_fviz.exemplars.with_exemplars`.
    """
    from .engine import methods

    start = time.perf_counter()
    shard = Shard.of(shard)
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise InvalidSettings(f"batch must be a positive integer, got {batch!r}")
    request = {
        "steps": methods.DEFAULT_STEPS if steps is None else steps,
        "size": methods.DEFAULT_SIZE if size is None else size,
        "crops": methods.DEFAULT_CROPS if crops is None else crops,
        "seed": seed,
        "lr": lr,
    }
    if exemplars is not None:
        from . import atlas_exemplars

        request["exemplars"] = atlas_exemplars.exemplar_request(exemplars, top=top, max_images=max_images, split=split,
                                                                image_column=image_column)
    methods.validate(method=method, steps=request["steps"], size=request["size"], crops=request["crops"], lr=lr, seed=seed)
    if isinstance(model, str):
        from .hub import load_model

        model = load_model(model, device=shard_device(device) or "auto")
    elif device is not None:
        from .hub import resolve_device

        model.to(resolve_device(shard_device(device)))
    name = layer or model.default_layer
    info = model.layer(name)
    all_units = parse_units(units, info.units, layer=name)
    spec = AtlasSpec(model.id, model.revision, model.library, name, tuple(all_units), method, request)
    from .engine import budget

    # a run that cannot fit is refused before the folder is claimed (no partial output)
    budget.check(model, units=len(all_units), crops=request["crops"], size=request["size"], layers=[name], batch_size=batch or 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _claim_folder(out, spec)

    mine = shard.pick(all_units)
    result = AtlasResult(out_dir=out, layer=name, shard=shard, units=mine, total=len(all_units))
    with _shard_lock(out, shard):
        pending = [u for u in mine if _record_ok(out, u) is None]
        todo = set(pending)
        result.skipped = [u for u in mine if u not in todo]
        _remove_stale_tmp(out, [out / RECORDS, out / safe_name(name)], todo)
        for u in pending:  # a stale record must not vouch for files about to be rewritten
            with contextlib.suppress(FileNotFoundError):
                _record_path(out, u).unlink()
        done = len(result.skipped)
        if progress is not None:
            progress(done, len(mine), {"phase": "optimize"})
        if batch is None and pending:
            batch = methods.auto_batch_size(model, layer=name, units=pending, method=method, size=request["size"],
                                            crops=request["crops"], seed=seed)
        found = None
        if exemplars is not None and pending:
            found = atlas_exemplars.find_for_units(model, name, pending, request["exemplars"], progress and (
                lambda n, _total, i: progress(done, len(mine), {"phase": "exemplars", "images": n, **i})))
        for b in range(0, len(pending), batch or 1):
            chunk = pending[b : b + batch]

            def step_progress(step: int, total_steps: int, i: Mapping[str, Any], done: int = done, n: int = len(chunk)) -> None:
                if progress is not None:
                    progress(done, len(mine), {"phase": "optimize", "step": step, "steps": total_steps, "batch": n, **i})

            vis = methods.visualize(
                model, layer=name, units=chunk, method=method, steps=request["steps"], size=request["size"],
                crops=request["crops"], seed=seed, lr=lr, batch_size=len(chunk), progress=step_progress,
            )
            if found is not None:
                atlas_exemplars.check_batch(model, vis, found)
            if progress is not None:
                progress(done, len(mine), {"phase": "write", "batch": len(chunk)})
            for k, v in enumerate(vis):
                _write_unit(out, v, k, shard=shard, device=str(model.device), share=len(chunk))
                result.computed.append(int(v.unit))
            done += len(chunk)
            if progress is not None:
                progress(done, len(mine), {"phase": "optimize"})
    result.seconds = time.perf_counter() - start
    summary = {"shard": [shard.index, shard.count], "units": len(mine), "computed": len(result.computed),
               "seconds": round(result.seconds, 2), "device": str(model.device), "finished": time.time()}
    _atomic_write(out / SHARDS / f"{shard.name}.json", _json_bytes(summary))

    expected = set(all_units)
    result.done = len(_done_units(out) & expected)
    if merge_when_done and not (shard.from_env and shard.index != 0):
        if shard.from_env and result.done < result.total:
            result.done = _wait_for(out, expected, merge_wait, progress, len(mine))
        if result.done == result.total:
            if progress is not None:
                progress(len(mine), len(mine), {"phase": "merge"})
            result.manifest = merge(out, grid_max=grid_max)
    return result


def _write_unit(out: Path, vis: Visualization, index: int, *, shard: Shard, device: str, share: int) -> None:
    """Both PNGs atomically, then the record (which is what makes the unit count as done);
    `share`: units in the batch, to split its seconds."""
    image_rel, rgba_rel = item_paths(vis, index)
    data = {"image": _png_bytes(rgb_image(vis)), "rgba": _png_bytes(rgba_image(vis))}
    _atomic_write(out / image_rel, data["image"])
    _atomic_write(out / rgba_rel, data["rgba"])
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
        "shard": [shard.index, shard.count],
        "device": device,
    }
    if vis.extra.get("exemplars"):
        from .atlas_exemplars import record_entries

        record.update(record_entries(out, vis, image_rel, _atomic_write))
    _atomic_write(_record_path(out, int(vis.unit)), _json_bytes(record))


def _wait_for(out: Path, expected: set[int], timeout: float, progress: AtlasProgress | None, mine: int) -> int:
    """Poll the records until every expected unit has one or `timeout` seconds pass."""
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        done = len(_done_units(out) & expected)
        if done == len(expected) or time.monotonic() >= deadline:
            return done
        if progress is not None:
            progress(mine, mine, {"phase": "wait", "atlas_done": done, "atlas_total": len(expected)})
        time.sleep(1.0)


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
    have = _done_units(out)
    done = tuple(u for u in spec.units if u in have)
    missing = tuple(u for u in spec.units if u not in have)
    return AtlasStatus(spec, done, missing, (out / "manifest.json").is_file())


def _verify(out: Path, unit: int) -> tuple[dict[str, Any] | None, str]:
    """(record, '') when the unit's record and both files are intact, else (None, why)."""
    rec = _read_json(_record_path(out, unit))
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
    return rec, ""


def merge(
    out_dir: str | os.PathLike[str], *, model: str | None = None, grid_max: int = DEFAULT_GRID_MAX, tile: int = 128
) -> Path:
    """Check every unit (record present, files match their sha256 and decode) and write grid.png
    and manifest.json (last, atomically). A damaged unit's record is removed so that resuming the
    atlas redoes it; then `AtlasError` says what to do. Returns the manifest path."""
    from . import __version__

    out = Path(out_dir)
    spec = read_spec(out)
    if model is not None and model.split("@")[0] != spec.model:
        raise AtlasError(f"{out} holds an atlas of {spec.model}, not {model}")
    have = _done_units(out)
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
                _record_path(out, u).unlink()
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
    from .atlas_exemplars import exemplar_grid, has_exemplars, manifest_keys

    draw = exemplar_grid if has_exemplars(records) else _grid
    grid = draw(out, [by_unit[u] for u in shown], tile=min(tile, int(settings.get("size", tile))), layer=spec.layer)
    _atomic_write(out / "grid.png", _png_bytes(grid))
    devices = sorted({str(r.get("device")) for r in records})
    manifest = {
        "hf_fviz_version": __version__,
        "model": spec.model,
        "revision": spec.revision,
        "library": spec.library,
        "method": spec.method,
        "layer": spec.layer,
        "settings": settings,
        "items": [
            {**{k: r[k] for k in ("unit", "label", "image", "rgba", "objective")}, **manifest_keys(r)} for r in records
        ],
        "seconds": round(sum(float(r.get("seconds", 0.0)) for r in records), 2),
        "device": devices[0] if len(devices) == 1 else ",".join(devices),
        "grid": "grid.png",
        "grid_units": shown,
        "shards": max(int(r["shard"][1]) for r in records),
    }
    path = out / "manifest.json"
    _atomic_write(path, _json_bytes(manifest))
    return path


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
    """A captioned grid of the units' RGB images, read back from the folder."""
    n = len(records)
    cols = max(1, math.ceil(math.sqrt(n * 1.5)))
    rows = math.ceil(n / cols)
    pad, cap = 4, 14
    canvas = Image.new("RGB", (cols * (tile + pad) + pad, rows * (tile + cap + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, rec in enumerate(records):
        r, c = divmod(i, cols)
        x, y = pad + c * (tile + pad), pad + r * (tile + cap + pad)
        with Image.open(out / rec["image"]) as img:
            canvas.paste(img.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS), (x, y))
        label = rec.get("label") or ""
        text = f"{rec['unit']}" if not label or label == f"{layer}:{rec['unit']}" else f"{rec['unit']} {label}"
        while text and draw.textlength(text, font=font) > tile:
            text = text[:-1]
        draw.text((x + 2, y + tile + 1), text, fill="black", font=font)
    return canvas
