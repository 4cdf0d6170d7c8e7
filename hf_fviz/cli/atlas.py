"""`hf-fviz atlas`: every unit of a layer in batches; resumable; sharded with --shard I/N or under torchrun."""

from __future__ import annotations

import argparse
from typing import Any

from .common import BATCH_HELP, Handler, add_model_options, add_run_options, add_source_options, call_kwargs, load, progress_bar, settings
from .exemplars import add_exemplar_options, check_exemplar_options


def atlas_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "atlas",
        help="visualize every unit of a layer in batches; resumable; sharded with --shard I/N or under torchrun",
    )
    add_model_options(p)
    p.add_argument("--layer", default=None, help="layer name (default: logits where the model has a head)")
    p.add_argument("--units", default="all", help="'all' (default) or indices and ranges, e.g. 0-99,250")
    p.add_argument("--out", required=True, metavar="DIR", help="atlas folder; rerun the same command to resume")
    p.add_argument("--shard", default=None, metavar="I/N", help="do shard I of N (0-based); default: RANK/WORLD_SIZE under torchrun")
    p.add_argument("--batch", type=int, default=None, help=BATCH_HELP)
    add_run_options(p)
    p.add_argument("--grid-max", type=int, default=100, metavar="N", help="units shown in grid.png, evenly spread (default 100)")
    p.add_argument("--merge", action="store_true", help="do no work: check all shards' results and write manifest.json")
    p.add_argument(
        "--merge-wait", type=float, default=6 * 3600, metavar="SECONDS",
        help="under torchrun, how long rank 0 waits for the other ranks before giving up the merge",
    )
    p.add_argument("--exemplars", default=None, metavar="SOURCE",
                   help="also find each unit's top natural images in SOURCE (folder, 'samples', hub dataset org/name), "
                        "run the sanity check, and draw them beside each unit in grid.png")
    add_source_options(p)
    add_exemplar_options(p)
    return atlas


def _postfix(info: Any) -> str:
    phase = info.get("phase")
    if phase == "optimize" and "step" in info:
        return f"batch of {info['batch']}: step {info['step']}/{info['steps']}"
    if phase == "wait":
        return f"waiting for other ranks: {info['atlas_done']}/{info['atlas_total']} units"
    return str(phase)


def atlas(args: argparse.Namespace) -> int:
    from ..atlas import Shard, atlas, merge, shard_device

    if args.merge:
        path = merge(args.out, model=args.model, grid_max=args.grid_max)
        print(f"wrote {path}")
        return 0
    checked = settings(args)
    shard = Shard.parse(args.shard) if args.shard else Shard.from_environment()
    if args.exemplars is not None:
        check_exemplar_options(args)  # fail fast, before any compute
    args.device = shard_device(args.device) or "auto"
    model = load(args)
    show = shard.index == 0 or not shard.from_env  # one bar per torchrun job, not one per rank
    desc = f"atlas {args.layer or model.default_layer} shard {shard}"
    with progress_bar(desc, "unit", _postfix, show=show) as progress:
        result = atlas(model, out_dir=args.out, layer=args.layer, units=args.units, batch=args.batch, shard=shard,
                       merge_wait=args.merge_wait, grid_max=args.grid_max, progress=progress, **call_kwargs(checked),
                       exemplars=args.exemplars, top=args.top, max_images=args.max_images, split=args.split,
                       image_column=args.image_column)
    print(
        f"shard {result.shard}: {len(result.units)} units ({len(result.computed)} computed, "
        f"{len(result.skipped)} already done) in {result.seconds:.1f} s"
    )
    if result.chunks and result.chunks.get("learned"):
        tried = ", ".join(f"{c} ({min(t):.3f} s)" for c, t in result.chunks["seconds_per_unit_step"].items())
        print(f"chunk size {result.chunks['chosen']}, learned from the first chunks (units: s per unit-step): {tried}")
    if result.manifest is not None:
        print(f"wrote {result.manifest}")
    elif not (shard.from_env and shard.index != 0):
        print(f"{result.done} of {result.total} units done; when the other shards finish: hf-fviz atlas {args.model} --out {args.out} --merge")
    return 0
