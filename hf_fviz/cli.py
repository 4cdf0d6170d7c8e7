"""`hf-fviz`: the command line face. It parses input, calls the public API and prints results;
no logic of its own. Every `FvizError` becomes one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from .errors import FvizError

Handler = Callable[[argparse.Namespace], int | None]


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line and exit code 2, like every other error (sub-commands inherit it)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"hf-fviz: error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="hub id (org/name[@revision]), local directory, or builtin:NAME")
    p.add_argument("--revision", default=None, help="branch, tag or commit (also MODEL@REV)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickle weights (.bin/.pth): runs code from the file")
    p.add_argument("--trust-remote-code", action="store_true", help="allow repos that ship their own model code")


def _load(args: argparse.Namespace):
    from . import load_model

    return load_model(
        args.model,
        revision=args.revision,
        device=args.device,
        allow_pickle=args.allow_pickle,
        trust_remote_code=args.trust_remote_code,
    )


# ---------------------------------------------------------------------------- layers
def _layers_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("layers", help="list a model's layers with their kind, unit count and shape")
    _add_model_options(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of {name, kind, units, shape}")
    return _layers


def _layers(args: argparse.Namespace) -> int:
    model = _load(args)
    layers = model.layers()
    if args.json:
        print(json.dumps([layer.to_dict() for layer in layers], indent=1))
        return 0
    print(f"{model.id}  ({model.library}, {model.family}, input {model.input_size[0]}x{model.input_size[1]})")
    width = max(len(layer.name) for layer in layers)
    for layer in layers:
        extra = ""
        if layer.kind == "tokens":
            extra = f"  prefix={layer.prefix_tokens} grid={layer.grid}"
        print(f"  {layer.name:<{width}}  {layer.kind:<6}  units={layer.units:<5}  shape={tuple(layer.shape)}{extra}")
    return 0


# ---------------------------------------------------------------------------- publish
def _publish_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "publish",
        help="put an output folder's images on the model card (local clone, or a pull request on the hub)",
    )
    p.add_argument("model", help="hub repo id of the model whose card gets the section (org/name)")
    p.add_argument("--from", dest="from_dir", required=True, metavar="DIR", help="output folder of visualize, dual, facets or atlas")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--local-dir", metavar="REPO_DIR", help="write into this local clone of the model repo")
    where.add_argument("--pr", action="store_true", help="open one pull request on the hub (never a push to main)")
    p.add_argument("--token", default=None, help="hub token (default: HF_TOKEN or the one saved by `hf auth login`)")
    p.add_argument("--absolute-urls", action="store_true", help="link images by absolute resolve/<REV> URLs instead of relative paths")
    p.add_argument("--url-revision", default="main", metavar="REV", help="revision used in absolute image URLs (default: main)")
    p.add_argument("--max-units", type=int, default=32, metavar="N", help="per-unit images on the card (the grid shows all; default 32)")
    return _publish


def _publish(args: argparse.Namespace) -> int:
    from .card import AssetLimits, publish

    result = publish(
        args.model,
        args.from_dir,
        local_dir=args.local_dir,
        create_pr=True,
        token=args.token,
        absolute_urls=args.absolute_urls,
        url_revision=args.url_revision,
        limits=AssetLimits(max_units=args.max_units),
    )
    if result.url:
        print(result.url)
    else:
        print(f"wrote {len(result.files) - 1} images and README.md under {result.local_dir}")
    return 0


# ---------------------------------------------------------------------------- atlas
def _atlas_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "atlas",
        help="visualize every unit of a layer in batches; resumable; sharded with --shard I/N or under torchrun",
    )
    _add_model_options(p)
    p.add_argument("--layer", default=None, help="layer name (default: logits where the model has a head)")
    p.add_argument("--units", default="all", help="'all' (default) or indices and ranges, e.g. 0-99,250")
    p.add_argument("--out", required=True, metavar="DIR", help="atlas folder; rerun the same command to resume")
    p.add_argument("--shard", default=None, metavar="I/N", help="do shard I of N (0-based); default: RANK/WORLD_SIZE under torchrun")
    p.add_argument("--batch", type=int, default=None, help="units optimized together (default: the fastest per unit on this machine, measured)")
    p.add_argument("--method", default="maco", help="maco (default), fourier or pixel")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="canvas side in pixels")
    p.add_argument("--crops", type=int, default=None, help="crops per step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--grid-max", type=int, default=100, metavar="N", help="units shown in grid.png, evenly spread (default 100)")
    p.add_argument("--merge", action="store_true", help="do no work: check all shards' results and write manifest.json")
    p.add_argument("--exemplars", default=None, metavar="SOURCE",
                   help="also find each unit's top natural images in SOURCE (folder, 'samples', hub dataset org/name), "
                        "run the sanity check, and draw them beside each unit in grid.png")
    _add_source_options(p)
    from .cli_exemplars import add_exemplar_options

    add_exemplar_options(p)
    p.add_argument(
        "--merge-wait", type=float, default=6 * 3600, metavar="SECONDS",
        help="under torchrun, how long rank 0 waits for the other ranks before giving up the merge",
    )
    return _atlas


def _atlas(args: argparse.Namespace) -> int:
    from .atlas import Shard, atlas, merge, shard_device

    if args.merge:
        path = merge(args.out, model=args.model, grid_max=args.grid_max)
        print(f"wrote {path}")
        return 0
    shard = Shard.parse(args.shard) if args.shard else Shard.from_environment()
    if args.exemplars is not None:
        from .cli_exemplars import check_exemplar_options

        check_exemplar_options(args)  # fail fast, before any compute
    args.device = shard_device(args.device) or "auto"
    model = _load(args)
    bars: list = []  # opened on the first report, so that a bad setting prints one line only
    show = shard.index == 0 or not shard.from_env  # one bar per torchrun job, not one per rank

    def progress(done: int, total: int, info) -> None:
        if not bars:
            from tqdm.auto import tqdm

            bars.append(tqdm(unit="unit", desc=f"atlas {args.layer or model.default_layer} shard {shard}", dynamic_ncols=True))
        bar = bars[0]
        bar.total = total
        bar.n = done
        phase = info.get("phase")
        if phase == "optimize" and "step" in info:
            bar.set_postfix_str(f"batch of {info['batch']}: step {info['step']}/{info['steps']}", refresh=False)
        elif phase == "wait":
            bar.set_postfix_str(f"waiting for other ranks: {info['atlas_done']}/{info['atlas_total']} units", refresh=False)
        else:
            bar.set_postfix_str(str(phase), refresh=False)
        bar.refresh()

    try:
        result = atlas(
            model, out_dir=args.out, layer=args.layer, units=args.units, batch=args.batch, shard=shard, method=args.method,
            steps=args.steps, size=args.size, crops=args.crops, seed=args.seed, lr=args.lr,
            merge_wait=args.merge_wait, grid_max=args.grid_max, progress=progress if show else None,
            exemplars=args.exemplars, top=args.top, max_images=args.max_images, split=args.split, image_column=args.image_column,
        )
    finally:
        for bar in bars:
            bar.close()
    print(
        f"shard {result.shard}: {len(result.units)} units ({len(result.computed)} computed, "
        f"{len(result.skipped)} already done) in {result.seconds:.1f} s"
    )
    if result.manifest is not None:
        print(f"wrote {result.manifest}")
    elif not (shard.from_env and shard.index != 0):
        print(f"{result.done} of {result.total} units done; when the other shards finish: hf-fviz atlas {args.model} --out {args.out} --merge")
    return 0


# ---------------------------------------------------------------------------- watch
def _watch_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "watch",
        help="serve a hub webhook: new commits of watched model repos get a pull request with feature visualizations",
    )
    p.add_argument("--secret", default=None, help="webhook secret, as set on huggingface.co/settings/webhooks (default: WEBHOOK_SECRET)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 to accept outside requests)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--repos", default=None, metavar="ORG/A,ORG/B", help="watch these model repos (comma-separated)")
    p.add_argument("--tag", action="append", default=None, metavar="TAG", help="watch repos carrying this hub tag (repeatable; default: hf-fviz)")
    p.add_argument("--state-dir", default=None, metavar="DIR", help="where handled commits are remembered (default: HF_FVIZ_STATE_DIR or ~/.cache/hf_fviz/watch)")
    p.add_argument("--token", default=None, help="hub token that opens the pull requests (default: HF_TOKEN or `hf auth login`)")
    p.add_argument("--layer", default=None, help="layer to visualize (default: logits, or the last layer of a backbone)")
    p.add_argument("--units", type=int, default=4, metavar="N", help="visualize the first N units (classes) of the layer (default 4)")
    p.add_argument("--method", default="maco", choices=["maco", "fourier", "pixel"])
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--crops", type=int, default=4)
    p.add_argument("--no-caps", action="store_true", help="lift the CPU limits on units/steps/size/crops (for a GPU host)")
    return _watch


def _watch(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from .integrations import CPU_CAPS, AutoSettings, WatchConfig, make_webhooks_server

    settings = AutoSettings(layer=args.layer, units=args.units, method=args.method, steps=args.steps, size=args.size, crops=args.crops)
    config = WatchConfig.from_env(
        secret=args.secret or os.environ.get("WEBHOOK_SECRET") or None,
        **({"repos": tuple(args.repos.split(","))} if args.repos is not None else {}),
        **({"tags": tuple(args.tag)} if args.tag else {}),
        **({"state_dir": Path(args.state_dir)} if args.state_dir else {}),
        **({"token": args.token} if args.token else {}),
        settings=settings,
        caps=None if args.no_caps else dict(CPU_CAPS),
    )
    app = make_webhooks_server(config=config)
    print(f"hf-fviz watch: POST hub webhooks to http://{args.host}:{args.port}{app.path}; handled commits in {config.state_dir}")
    app.launch(server_name=args.host, server_port=args.port, quiet=True, ssr_mode=False)
    return 0


# ---------------------------------------------------------------------------- bench
def _bench_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("bench", help="speed and quality benchmarks, side by side with horama (the authors' MACO)")
    what = p.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    s = what.add_parser("speed", help="seconds per step, ratio and peak memory of hf_fviz vs horama")
    s.add_argument("--json", action="store_true", help="print a JSON list, one object per case")
    s.add_argument("--steps", type=int, default=8, metavar="N", help="measured steps per library and case (default 8)")
    s.add_argument("--cases", default="a,b,c,d,e", help="cases to run: a,b,c,d,e (default all)")
    s.add_argument("--rounds", type=int, default=2, help="interleaved rounds per case (default 2)")
    s.add_argument("--model", default="builtin:mobilenetv2", help="model of cases a, b, e (default builtin:mobilenetv2)")
    s.add_argument("--size", type=int, default=None, metavar="PX", help="override every case's canvas (default: horama's 1280)")
    s.add_argument("--crops", type=int, default=None, metavar="K", help="override every case's crops per step (default 6)")
    s.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    s.add_argument("--speedups", default="", help="opt-in speed-ups for hf_fviz: channels_last,cpu_bf16 (default none)")
    c = what.add_parser("chunks", help="seconds per unit-step for 1, 2, 4, 8, 16 units per chunk, and the automatic choice")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--model", default="builtin:mobilenetv2", help="model (default builtin:mobilenetv2)")
    c.add_argument("--steps", type=int, default=4, metavar="N", help="steps per timed run, the first left out (default 4)")
    c.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    q = what.add_parser("quality", help="transferability: a different network classifies the visualizations")
    q.add_argument("--json", action="store_true", help="print the report as JSON")
    q.add_argument("--classes", type=int, default=20, metavar="N", help="ImageNet classes, spread over the label range (default 20)")
    q.add_argument("--steps", type=int, default=None, metavar="N", help="steps for every method (default: hf_fviz's default)")
    q.add_argument("--methods", default="maco,fourier,pixel,horama", help="methods to compare (default maco,fourier,pixel,horama)")
    q.add_argument("--size", type=int, default=None, metavar="PX", help="hf_fviz canvas (default: hf_fviz's default)")
    q.add_argument("--crops", type=int, default=None, metavar="K", help="hf_fviz crops per step (default: hf_fviz's default)")
    q.add_argument("--out", default=None, metavar="DIR", help="also save every visualization as DIR/METHOD/CLASS.png")
    q.add_argument("--horama-size", type=int, default=1280, metavar="PX", help="horama's canvas (default: its own 1280)")
    q.add_argument("--horama-crops", type=int, default=6, metavar="K", help="horama's crops per step (default: its own 6)")
    q.add_argument("--no-imagesets", action="store_true", help="skip the image-set (dual/facets) quality table")
    q.add_argument("--insertion-slices", type=int, default=32, metavar="N",
                   help="insertion test of the transparency maps in N slices (default 32; 0 skips it)")
    q.add_argument("--sanity", default=None, metavar="SOURCE",
                   help="sanity check of each class against its top-4 exemplars in SOURCE (e.g. samples; default skipped)")
    return _bench


def _bench(args: argparse.Namespace) -> int:
    from . import bench

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.bench_command == "speed":
        cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
        settings = bench.SpeedSettings(steps=args.steps, rounds=args.rounds, cases=cases, model=args.model,
                                       size=args.size, crops=args.crops, memory=not args.no_memory,
                                       speedups=tuple(x.strip() for x in args.speedups.split(",") if x.strip()))
        results = bench.run_speed(settings, log=log)
        if args.json:
            print(json.dumps([r.to_dict() for r in results], indent=1))
        else:
            print(bench.speed_table(results))
        return 0
    if args.bench_command == "chunks":
        from .bench.chunks import chunks_table, run_chunks

        report = run_chunks(model=args.model, steps=args.steps, rounds=args.rounds, log=log)
        print(json.dumps(report.to_dict(), indent=1) if args.json else chunks_table(report))
        return 0
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    qsettings = bench.QualitySettings(classes=args.classes, steps=args.steps, methods=methods, size=args.size,
                                      crops=args.crops, out=args.out,
                                      horama=bench.HoramaSettings(size=args.horama_size, crops=args.horama_crops),
                                      imagesets=not args.no_imagesets, insertion_slices=args.insertion_slices,
                                      sanity=args.sanity)
    report = bench.run_quality(qsettings, log=log)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        print(bench.quality_table(report))
    return 0


# ---------------------------------------------------------------------------- image sources, exemplars
def _add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default=None, help="split of a hub dataset source (default: train)")
    p.add_argument("--image-column", default=None, metavar="NAME", help="image column of a hub dataset source (default: the first)")


# ---------------------------------------------------------------------------- dual / facets
def _add_imageset_options(p: argparse.ArgumentParser, *, k_required: bool) -> None:
    p.add_argument("--images", nargs="+", required=True, metavar="SOURCE",
                   help="a folder, image files, 'samples' (free photos bundled with scikit-image, scikit-learn, matplotlib), "
                        "or a hub dataset org/name")
    _add_source_options(p)
    p.add_argument("--k", type=int, required=k_required, default=None if k_required else 4, help="clusters, one image each" + ("" if k_required else " (default 4)"))
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="canvas side in pixels")
    p.add_argument("--crops", type=int, default=None, help="crops per step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--nearest", type=int, default=None, metavar="M", help="images nearest each centroid used for its start image")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: fviz-<model>-<command>)")


def _imageset_kwargs(args: argparse.Namespace) -> dict:
    from .engine.methods import MAX_SEED
    from .errors import InvalidSettings

    if not 0 <= args.seed <= MAX_SEED:
        raise InvalidSettings(f"seed must be an integer in 0..{MAX_SEED}, got {args.seed}")
    out = {"k": args.k, "seed": args.seed, "lr": args.lr}
    for name in ("steps", "size", "crops", "nearest"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    return out


def _imageset_run(args: argparse.Namespace, command: str, run) -> int:
    from tqdm.auto import tqdm

    from .engine import imagesets
    from .images import load_images

    from .render import check_out_dir

    if args.out:
        check_out_dir(args.out)
    model = _load(args)
    images = load_images(args.images[0] if len(args.images) == 1 else args.images, model=model, split=args.split,
                         image_column=args.image_column)
    bars: list = []  # opened on the first step, so that a bad setting prints one line only

    def progress(step: int, total: int, info) -> None:
        if not bars:
            bars.append(tqdm(desc=command, unit="step", dynamic_ncols=True))
        bars[0].total = total
        bars[0].n = step
        bars[0].set_postfix_str(f"objective {info.get('objective', float('nan')):.3f}", refresh=False)
        bars[0].refresh()

    try:
        vis = run(model, images, progress)
    finally:
        for bar in bars:
            bar.close()
    out = args.out or f"fviz-{model.id.replace('/', '--').replace(':', '-')}-{command}"
    check_out_dir(out)
    path = imagesets.save(vis, out, model=model, images=images)
    print(f"wrote {len(vis)} images and {path}")
    return 0


def _dual_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("dual", help="dual-objective (The Mind's Eye): one image per cluster of an image set, for a layer")
    _add_model_options(p)
    p.add_argument("--layer", required=True, help="layer name (`hf-fviz layers MODEL`)")
    _add_imageset_options(p, k_required=False)
    p.add_argument("--recipe", default="maco", choices=["maco", "paper"], help="maco (default) or the paper's pixel recipe")
    p.add_argument("--channels", type=int, default=50, help="top channels per cluster (default 50)")
    return _dual


def _dual(args: argparse.Namespace) -> int:
    from .engine.imagesets import dual_objective

    kwargs = _imageset_kwargs(args)

    def run(model, images, progress):
        return dual_objective(model, layer=args.layer, images=images, recipe=args.recipe, channels=args.channels,
                              progress=progress, **kwargs)

    return _imageset_run(args, "dual", run)


def _add_unit_command_options(p: argparse.ArgumentParser, *, units_help: str) -> None:
    """Model options, `--layer`, and one of `--units` / `--classes` (required): what facets and
    exemplars take."""
    _add_model_options(p)
    p.add_argument("--layer", default=None, help="layer name (default: logits where the model has a head)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--units", default=None, help=units_help)
    which.add_argument("--classes", default=None, help='class names or indices, e.g. "tabby cat,espresso"')


def _facets_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("facets", help="multifaceted visualization: k images per unit, one per cluster of the images it likes")
    _add_unit_command_options(p, units_help="unit indices, e.g. 3,7")
    _add_imageset_options(p, k_required=True)
    p.add_argument("--param", default="maco", choices=["maco", "pixel"], help="maco from the mean image's phase (default) or pixels")
    p.add_argument("--top", type=float, default=0.5, help="images kept after ranking: a fraction <= 1 or a count (default 0.5)")
    p.add_argument("--no-center-bias", action="store_true", help="plain crops and gradient instead of the centre bias")
    return _facets


def _facets(args: argparse.Namespace) -> int:
    from .engine.imagesets import multifaceted
    from .errors import InvalidSettings

    raw = args.units if args.units is not None else args.classes
    targets = [t.strip() for t in raw.split(",") if t.strip()]
    if not targets:
        raise InvalidSettings("no units or classes given")
    if args.units is not None:
        bad = [t for t in targets if not t.lstrip("-").isdigit()]
        if bad:
            raise InvalidSettings(f"--units takes indices, got {bad[0]!r} (use --classes for class names)")
    elif args.layer not in (None, "logits"):
        raise InvalidSettings(f"classes are logits; drop --layer {args.layer} or pass --units instead")
    kwargs = _imageset_kwargs(args)

    def run(model, images, progress):
        vis = []
        for t in targets:
            unit = int(t) if args.units is not None or t.isdigit() else t
            vis.extend(multifaceted(model, unit=unit, layer=args.layer, images=images, param=args.param, top=args.top,
                                    center_bias=not args.no_center_bias, progress=progress, **kwargs))
        return vis

    return _imageset_run(args, "facets", run)


# ---------------------------------------------------------------------------- visualize
def _visualize_parser(sub: argparse._SubParsersAction) -> Handler:
    from .engine.methods import DEFAULT_CROPS, DEFAULT_SIZE, DEFAULT_STEPS, LIMITS, METHODS

    p = sub.add_parser("visualize", help="visualize units or classes of a layer (MACO by default); writes DIR/manifest.json and PNGs")
    _add_model_options(p)
    p.add_argument("--layer", default=None, help="layer name (`hf-fviz layers MODEL`; default: logits where the model has a head)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--units", default=None, help="unit indices, e.g. 3,7,9 (default: the first 4)")
    which.add_argument("--classes", default=None, help='class names (case-insensitive) or indices, e.g. "tabby cat,espresso"')
    which.add_argument("--text", action="append", default=None, metavar="TEXT",
                       help='image-text models (OpenCLIP, CLIP, SigLIP): maximize the similarity to this text, e.g. "a red apple" '
                            "(repeat for one image per text)")
    p.add_argument("--method", default="maco", choices=list(METHODS))
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"optimization steps, {LIMITS['steps'][0]}..{LIMITS['steps'][1]} (default {DEFAULT_STEPS})")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"canvas side in pixels, {LIMITS['size'][0]}..{LIMITS['size'][1]} (default {DEFAULT_SIZE})")
    p.add_argument("--crops", type=int, default=DEFAULT_CROPS, help=f"views per step: the whole canvas plus K-1 random crops (0 = whole canvas only), "
                   f"{LIMITS['crops'][0]}..{LIMITS['crops'][1]} (default {DEFAULT_CROPS})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 0.3 for maco, 1.0 for fourier, 0.05 for pixel)")
    p.add_argument("--spectrum", default=None, metavar="FILE", help="magnitude spectrum .npy from `hf-fviz spectrum` (default: the shipped one)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="units optimized together (default: the fastest per unit on this machine, measured at the first steps)")
    p.add_argument("--max-seconds", type=float, default=None, metavar="S",
                   help="stop after S seconds at a step boundary and keep the images as they are (manifest: stopped_early)")
    p.add_argument("--exemplars", default=None, metavar="SOURCE",
                   help="also find each unit's top natural images in SOURCE (folder, 'samples', hub dataset org/name) "
                        "and run the sanity check")
    _add_source_options(p)
    from .cli_exemplars import add_exemplar_options

    add_exemplar_options(p)
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: fviz-<model>)")
    return _visualize


def _split_targets(raw: str, flag: str) -> list[str]:
    from .errors import InvalidSettings

    items = [t.strip() for t in raw.split(",") if t.strip()]
    if not items:
        raise InvalidSettings(f"{flag} is empty")
    return items


def _visualize(args: argparse.Namespace) -> int:
    import time

    from tqdm.auto import tqdm

    from .engine.methods import validate, visualize
    from .errors import InvalidSettings
    from .render import check_out_dir, save

    validate(method=args.method, steps=args.steps, size=args.size, crops=args.crops, lr=args.lr, seed=args.seed,
             batch_size=args.batch_size, max_seconds=args.max_seconds)
    if args.out:
        check_out_dir(args.out)
    units = classes = None
    if args.units is not None:
        raw = _split_targets(args.units, "--units")
        bad = [t for t in raw if not t.lstrip("-").isdigit()]
        if bad:
            raise InvalidSettings(f"--units takes indices, got {bad[0]!r} (use --classes for class names)")
        units = [int(t) for t in raw]
    if args.classes is not None:
        classes = _split_targets(args.classes, "--classes")
    texts = None
    if args.text is not None:
        from .engine import objectives

        if args.layer is not None:
            raise InvalidSettings(f"--text compares the image embedding with the text's; drop --layer {args.layer}")
        texts = [objectives.text(t) for t in args.text]
    if args.exemplars is not None:
        from .cli_exemplars import check_exemplar_options

        check_exemplar_options(args)  # fail fast, before any compute
    model = _load(args)
    if classes is not None:
        classes = [model.class_index(c) for c in classes]  # fail fast, before any compute
    start = time.perf_counter()
    bars: list = []  # opened on the first step, so that a bad setting prints one line only

    def progress(step: int, total: int, info) -> None:
        if not bars:
            bars.append(tqdm(desc="visualize", unit="step", dynamic_ncols=True))
        bar = bars[0]
        bar.total = total
        bar.n = step
        bar.set_postfix_str(f"objective {info.get('objective', float('nan')):.3f}", refresh=False)
        bar.refresh()

    try:
        vis = visualize(
            model, layer=args.layer, units=units, classes=classes, objectives=texts, method=args.method, steps=args.steps, size=args.size,
            crops=args.crops, seed=args.seed, lr=args.lr, spectrum=args.spectrum, progress=progress,
            batch_size=args.batch_size, max_seconds=args.max_seconds,
        )
    finally:
        for bar in bars:
            bar.close()
    if args.exemplars is not None:
        from .cli_exemplars import add_exemplars

        add_exemplars(args, model, vis)
    out = args.out or f"fviz-{model.id.replace('/', '--').replace(':', '-')}"
    path = save(vis, out, model=model, seconds=time.perf_counter() - start, device=model.device.type)
    if args.exemplars is not None:
        from .cli_exemplars import print_sanity

        print_sanity(vis)
    if vis and vis[0].extra.get("stopped_early"):
        skipped = vis[0].extra.get("units_skipped", 0)
        done = min(v.extra.get("steps_done", args.steps) for v in vis)
        print(f"hf-fviz: stopped at --max-seconds {args.max_seconds:g}: {done} of {args.steps} steps done"
              + (f", {skipped} unit(s) not started" if skipped else "") + "; images kept as they are", file=sys.stderr)
    print(f"wrote {len(vis)} visualizations and {path}")
    return 0


# ---------------------------------------------------------------------------- spectrum
def _spectrum_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("spectrum", help="build a magnitude spectrum (.npy for --spectrum) from a folder of your own images")
    p.add_argument("image_dir", metavar="IMAGE_DIR")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--crops", type=int, default=2000, help="random crops (default 2000)")
    p.add_argument("--size", type=int, default=512, help="spectrum side (default 512; resized to the canvas at run time)")
    p.add_argument("--seed", type=int, default=0)
    return _spectrum


def _spectrum(args: argparse.Namespace) -> int:
    from .engine.spectrum import build_spectrum, save_spectrum
    from .errors import InvalidSettings

    if not 1 <= args.crops <= 100000 or not 16 <= args.size <= 2048:
        raise InvalidSettings("--crops must be in 1..100000 and --size in 16..2048")
    spec, prov = build_spectrum(args.image_dir, crops=args.crops, size=args.size, seed=args.seed)
    path = save_spectrum(spec, args.out)
    print(f"wrote {path}: {prov.describe()}")
    return 0


# ---------------------------------------------------------------------------- space
def _space_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("space", help="a deployable Gradio Space: export it to a folder, or push it to the hub")
    what = p.add_subparsers(dest="space_command", required=True, metavar="{export,push}")
    e = what.add_parser("export", help="write a self-contained Space folder (app.py, README.md, requirements.txt, wheels/)")
    e.add_argument("dir", metavar="DIR")
    e.add_argument("--source", default=None, metavar="REQ",
                   help="install hf_fviz from this requirement instead of a wheel of this checkout "
                        "(e.g. 'hf_fviz @ git+https://github.com/ORG/hf_fviz@v0.1.0')")
    e.add_argument("--force", action="store_true", help="overwrite an earlier export in DIR")
    u = what.add_parser("push", help="create or update the Space USER/SPACE on the hub in one commit")
    u.add_argument("space_id", metavar="USER/SPACE")
    u.add_argument("--from", dest="from_dir", default=None, metavar="DIR", help="an exported folder (default: export afresh)")
    u.add_argument("--private", action="store_true", help="create the Space private")
    u.add_argument("--token", default=None, help="hub token (default: HF_TOKEN or the one saved by `hf auth login`)")
    for q in (e, u):
        q.add_argument("--hardware", default="cpu-basic", help="suggested_hardware in the front matter (default cpu-basic)")
    return _space


def _space(args: argparse.Namespace) -> int:
    from .space import deploy

    if args.space_command == "export":
        path = deploy.export(args.dir, source=args.source, hardware=args.hardware, force=args.force)
        print(f"wrote the Space folder {path}: start it with `cd {path} && pip install -r requirements.txt && python app.py`")
        return 0
    url = deploy.push(args.space_id, folder=args.from_dir, token=args.token, private=args.private or None,
                      hardware=args.hardware)
    print(url)
    return 0


# ---------------------------------------------------------------------------- registry
# Each entry adds one sub-command parser and returns its handler. Add new commands here.
def _exemplars_parser(sub: argparse._SubParsersAction) -> Handler:
    from .cli_exemplars import exemplars_parser

    return exemplars_parser(sub)


PARSERS: list[Callable[[argparse._SubParsersAction], Handler]] = [_layers_parser, _publish_parser, _atlas_parser, _watch_parser, _bench_parser, _dual_parser, _facets_parser, _visualize_parser, _spectrum_parser, _exemplars_parser, _space_parser]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = _Parser(prog="hf-fviz", description="Feature visualization for Hugging Face hub vision models.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"hf-fviz {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Handler] = {}
    for add in PARSERS:
        before = set(sub.choices)
        handler = add(sub)
        for name in set(sub.choices) - before:
            handlers[name] = handler
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(handlers[args.command](args) or 0)
    except FvizError as err:
        print(f"hf-fviz: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("hf-fviz: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
