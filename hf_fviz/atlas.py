"""Atlas: every unit of a layer (say all 1000 classes), in batches, resumable, sharded over ranks.

    >>> from hf_fviz.atlas import atlas, merge
    >>> atlas("timm/resnet50.a1_in1k", layer="logits", units="all", out_dir="atlas")   # one process
    $ torchrun --nproc-per-node 8 -m hf_fviz.cli atlas timm/resnet50.a1_in1k --out atlas  # 8 ranks

The folder (run file, per-unit records, merge, checks) is `hf_fviz.output.atlas_store`; this
module runs the optimization and decides what to do. Why it cannot lose or half-write anything:
every file is written atomically, a unit's record only after both of its images, and a unit counts
as done only when its record exists and its files have the recorded sizes; anything else is redone.

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
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AtlasError, InvalidSettings
from .hub.targets import parse_units
from .output.atlas_store import (
    DEFAULT_GRID_MAX,
    RECORDS,
    SHARDS,
    AtlasSpec,
    AtlasStatus,
    claim_folder,
    done_units,
    json_bytes,
    merge,
    read_spec,
    record_ok,
    record_path,
    remove_stale_tmp,
    status,
    write_unit,
)
from .output.writer import atomic_write, safe_name
from .settings import DEFAULT_SOURCE_IMAGES, DEFAULT_TOP

if TYPE_CHECKING:  # pragma: no cover
    from .hub.vision_model import VisionModel

__all__ = ["AtlasResult", "AtlasSpec", "AtlasStatus", "Shard", "atlas", "merge", "parse_units", "read_spec", "shard_device", "status"]

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


# ---------------------------------------------------------------------------- the run
@dataclass
class AtlasResult:
    """What one call did. `units`: this shard's units; `computed`: the ones optimized now;
    `skipped`: already done by an earlier run; `manifest`: set when this call merged;
    `done`/`total`: units with a record over the whole atlas when the call ended; `chunks`: the
    chunk sizes tried and chosen when the call chose them (`engine.chunking.ChunkPlan.summary`)."""

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
    chunks: dict[str, Any] | None = None

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
    top: int = DEFAULT_TOP,
    max_images: int | None = DEFAULT_SOURCE_IMAGES,
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
        batch: units optimized together (one forward pass per step); None: on a CPU learned from
            the first chunks of 14 units or more (else 4 units), elsewhere the fastest per unit,
            measured (`engine.chunking`).
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
    from .hub import as_vision_model
    from .settings import Settings

    start = time.perf_counter()
    shard = Shard.of(shard)
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise InvalidSettings(f"batch must be a positive integer, got {batch!r}")
    given = {name: value for name, value in (("steps", steps), ("size", size), ("crops", crops)) if value is not None}
    settings = Settings(method=method, seed=seed, lr=lr, **given).check()
    request = {"steps": settings.steps, "size": settings.size, "crops": settings.crops, "seed": seed, "lr": lr}
    if exemplars is not None:
        from . import atlas_exemplars

        request["exemplars"] = atlas_exemplars.exemplar_request(exemplars, top=top, max_images=max_images, split=split,
                                                                image_column=image_column)
    keep = device is None and not isinstance(model, str)  # a VisionModel stays where it is unless a device is given
    model = as_vision_model(model, device=None if keep else shard_device(device))
    name = layer or model.default_layer
    info = model.layer(name)
    all_units = parse_units(units, info.units, layer=name)
    spec = AtlasSpec(model.id, model.revision, model.library, name, tuple(all_units), method, request)
    from .engine import budget

    # a run that cannot fit is refused before the folder is claimed (no partial output)
    budget.check(model, units=len(all_units), crops=request["crops"], size=request["size"], layers=[name], batch_size=batch or 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    claim_folder(out, spec)

    mine = shard.pick(all_units)
    result = AtlasResult(out_dir=out, layer=name, shard=shard, units=mine, total=len(all_units))
    with _shard_lock(out, shard):
        pending = [u for u in mine if record_ok(out, u) is None]
        todo = set(pending)
        result.skipped = [u for u in mine if u not in todo]
        remove_stale_tmp(out, [out / RECORDS, out / safe_name(name)], todo)
        for u in pending:  # a stale record must not vouch for files about to be rewritten
            with contextlib.suppress(FileNotFoundError):
                record_path(out, u).unlink()
        done = len(result.skipped)
        if progress is not None:
            progress(done, len(mine), {"phase": "optimize"})
        plan = None
        if batch is None and pending:
            plan = methods.chunk_plan(model, layer=name, units=pending, method=method, size=request["size"],
                                      crops=request["crops"], seed=seed)
        found = None
        if exemplars is not None and pending:
            found = atlas_exemplars.find_for_units(model, name, pending, request["exemplars"], progress and (
                lambda n, _total, i: progress(done, len(mine), {"phase": "exemplars", "images": n, **i})))
        b = 0
        while b < len(pending):
            chunk = pending[b : b + (plan.take(len(pending) - b) if plan is not None else batch or 1)]
            stamps: list[float] = []  # after each step; the first step (set-up, warm-up) is left out of the timing

            def step_progress(step: int, total_steps: int, i: Mapping[str, Any], done: int = done, n: int = len(chunk),
                              stamps: list[float] = stamps) -> None:
                stamps.append(time.perf_counter())
                if progress is not None:
                    progress(done, len(mine), {"phase": "optimize", "step": step, "steps": total_steps, "batch": n, **i})

            targets = methods.unit_targets(model, name, chunk, None)
            vis = methods.visualize(model, targets, settings.replace(batch_size=len(chunk)), progress=step_progress)
            if plan is not None:
                step_s = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else vis[0].extra["seconds"]
                plan.timed(len(chunk), step_s / len(chunk))
            if found is not None:
                atlas_exemplars.check_batch(model, vis, found)
            if progress is not None:
                progress(done, len(mine), {"phase": "write", "batch": len(chunk)})
            for k, v in enumerate(vis):
                write_unit(out, v, k, shard=(shard.index, shard.count), device=str(model.device), share=len(chunk))
                result.computed.append(int(v.unit))
            done += len(chunk)
            b += len(chunk)
            if progress is not None:
                progress(done, len(mine), {"phase": "optimize"})
        if plan is not None:
            result.chunks = plan.summary()
    result.seconds = time.perf_counter() - start
    summary = {"shard": [shard.index, shard.count], "units": len(mine), "computed": len(result.computed),
               "seconds": round(result.seconds, 2), "device": str(model.device), "finished": time.time(),
               **({"chunks": result.chunks} if result.chunks else {})}
    atomic_write(out / SHARDS / f"{shard.name}.json", json_bytes(summary))

    expected = set(all_units)
    result.done = len(done_units(out) & expected)
    if merge_when_done and not (shard.from_env and shard.index != 0):
        if shard.from_env and result.done < result.total:
            result.done = _wait_for(out, expected, merge_wait, progress, len(mine))
        if result.done == result.total:
            if progress is not None:
                progress(len(mine), len(mine), {"phase": "merge"})
            result.manifest = merge(out, grid_max=grid_max)
    return result


def _wait_for(out: Path, expected: set[int], timeout: float, progress: AtlasProgress | None, mine: int) -> int:
    """Poll the records until every expected unit has one or `timeout` seconds pass."""
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        done = len(done_units(out) & expected)
        if done == len(expected) or time.monotonic() >= deadline:
            return done
        if progress is not None:
            progress(mine, mine, {"phase": "wait", "atlas_done": done, "atlas_total": len(expected)})
        time.sleep(1.0)
