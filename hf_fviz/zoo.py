"""The zoo sweep: does every architecture work end to end? (`make zoo`, a benchmark, not a test.)

For one random-weight model per timm family and one tiny model per transformers
image-classification model type (`zoo_models`), saved as a hub-layout folder and loaded by that
path through the normal loading code, it runs `layers`, then a 4-step `visualize` of `logits`
(where the model has a head) and of one channel of the middle layer, saves the images and checks
that every objective is finite. A failure is one line: the error the user would see.

    python -m hf_fviz.zoo [--only resnet,vit] [--library timm] [--extra module:function] [--json FILE]

`--extra module:function` adds the builders (`zoo_models.Builder`) a function returns, e.g. for
OpenCLIP models.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .zoo_models import MAX_PARAMS, Builder, hf_builders, openclip_builders, timm_builders

MODEL_SECONDS = 240


@dataclass
class Row:
    library: str
    family: str
    model: str
    ok: bool
    layers: int = 0
    layers_seconds: float = 0.0
    middle: str = ""
    params: int = 0
    reason: str = ""


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    def stop(_sig: int, _frame: object) -> None:
        raise TimeoutError(f"over the zoo's {seconds} s budget per model")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def one_line(err: BaseException) -> str:
    from .errors import FvizError

    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text.split(". You can install")[0]  # transformers' missing-package notes run on
    return text[:220] if isinstance(err, FvizError) else f"{type(err).__name__}: {text[:200]}"


def check(builder: Builder, work: Path, *, steps: int = 4, size: int = 64, seconds: int | None = None) -> Row:
    """Build, load, list layers and visualize one model; any failure becomes the row's reason."""
    import hf_fviz
    from hf_fviz import render
    from hf_fviz.output.manifest import Manifest

    row = Row(builder.library, builder.family, builder.name, ok=False)
    folder = work / f"{builder.library}--{builder.family}"
    try:
        with _deadline(seconds or MODEL_SECONDS), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folder.mkdir(parents=True, exist_ok=True)
            builder.build(folder)
            t0 = time.perf_counter()
            model = hf_fviz.load_model(str(folder), device="cpu")
            layers = model.layers()
            row.layers_seconds = round(time.perf_counter() - t0, 2)
            row.layers = len(layers)
            row.params = sum(p.numel() for p in model.module.parameters())
            inner = [layer for layer in layers if layer.kind != "logits"]
            middle = inner[len(inner) // 2]
            row.middle = f"{middle.name} ({middle.kind} {tuple(middle.shape)})"
            runs = [dict(layer=middle.name, units=[min(1, middle.units - 1)])]
            if model.has_head:
                runs.insert(0, dict(layer="logits", units=[0]))
            for i, run in enumerate(runs):
                vis = hf_fviz.visualize(model, steps=steps, size=size, crops=2, batch_size=1, **run)
                if not all(math.isfinite(v.objective) for v in vis):
                    raise FloatingPointError(f"objective of {run['layer']} is not finite")
                render.save(vis, folder / f"out{i}", model=model, tile=64)
                Manifest.read(folder / f"out{i}")  # raises when an image it lists is missing
        row.ok = True
    except Exception as err:  # noqa: BLE001 - every failure is reported as one line
        row.reason = one_line(err).replace(str(folder), builder.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        gc.collect()
    return row


def _skip_big(builders: Sequence[Builder]) -> tuple[list[Builder], list[Row]]:
    keep, skipped = [], []
    for b in builders:
        n = b.params
        if n is not None and n > MAX_PARAMS:
            skipped.append(Row(b.library, b.family, b.name, ok=False, params=n,
                               reason=f"skipped: smallest variant has {n / 1e6:.0f} M parameters (zoo budget {MAX_PARAMS / 1e6:.0f} M)"))
        else:
            keep.append(b)
    return keep, skipped


def summary(rows: Sequence[Row]) -> str:
    """A markdown table of counts per library, then every failure with its one-line reason."""
    lines = ["| library | work end to end | of | share |", "|---|---|---|---|"]
    for lib in sorted({r.library for r in rows}):
        mine = [r for r in rows if r.library == lib]
        ok = sum(r.ok for r in mine)
        lines.append(f"| {lib} | {ok} | {len(mine)} | {100 * ok / len(mine):.1f} % |")
    failures = [r for r in rows if not r.ok]
    if failures:
        lines += ["", "| library | family | model | reason |", "|---|---|---|---|"]
        lines += [f"| {r.library} | {r.family} | `{r.model}` | {r.reason.replace('|', '/')} |" for r in failures]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hf_fviz.zoo", description=__doc__.splitlines()[0])
    p.add_argument("--library", choices=["timm", "transformers", "open_clip", "all"], default="all")
    p.add_argument("--only", default=None, help="comma-separated families / model types")
    p.add_argument("--extra", action="append", default=[], help="module:function returning more zoo Builders")
    p.add_argument("--json", default=None, help="also write every row to this JSON file")
    p.add_argument("--jobs", type=int, default=1, help="models checked in parallel processes (each single-threaded)")
    p.add_argument("--resume", default=None, help="a --json file of an earlier run: keep its working rows, redo the rest")
    p.add_argument("--seconds", type=int, default=MODEL_SECONDS, help="time budget per model")
    args = p.parse_args(argv)
    only = args.only.split(",") if args.only else None
    builders: list[Builder] = []
    if args.library in ("timm", "all"):
        builders += timm_builders(only, jobs=args.jobs)
    if args.library in ("transformers", "all"):
        builders += hf_builders(only)
    if args.library in ("open_clip", "all"):
        builders += openclip_builders()
    for spec in args.extra:
        module, _, fn = spec.partition(":")
        builders += list(getattr(importlib.import_module(module), fn)())
    builders, rows = _skip_big(builders)
    if args.resume:
        done = [Row(**r) for r in json.loads(Path(args.resume).read_text()) if r["ok"]]
        kept = {(r.library, r.family) for r in done}
        builders = [b for b in builders if (b.library, b.family) not in kept]
        rows = [r for r in rows if (r.library, r.family) not in kept] + done
    work = Path(tempfile.mkdtemp(prefix="hf_fviz_zoo_"))
    try:
        for row in _run(builders, work, jobs=args.jobs, seconds=args.seconds):
            rows.append(row)
            status = "ok  " if row.ok else "FAIL"
            print(f"{status} {row.library:<12} {row.family:<28} {row.model:<40} layers={row.layers:<4} "
                  f"layers_s={row.layers_seconds:<5} {row.reason}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(summary(rows))
    return 0


_QUEUE: list[Builder] = []


def _check_index(args: tuple[int, str, int]) -> Row:
    return check(_QUEUE[args[0]], Path(args[1]), seconds=args[2])


def _run(builders: Sequence[Builder], work: Path, *, jobs: int, seconds: int) -> Iterator[Row]:
    """Check every builder, in `jobs` forked processes (a crash or a leak stays in its process)."""
    if jobs <= 1:
        for b in builders:
            yield check(b, work, seconds=seconds)
        return
    import multiprocessing

    _QUEUE[:] = builders
    with multiprocessing.get_context("fork").Pool(jobs, maxtasksperchild=8) as pool:
        yield from pool.imap_unordered(_check_index, [(i, str(work), seconds) for i in range(len(builders))])


if __name__ == "__main__":
    sys.exit(main())
