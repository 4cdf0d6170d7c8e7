"""`hf-fviz visualize` (units, classes or texts of a layer -> output folder) and `hf-fviz spectrum`."""

from __future__ import annotations

import argparse
import sys

from ..settings import SPECTRUM_CROPS, SPECTRUM_SIZE
from .common import (
    BATCH_HELP, Handler, add_out_option, add_run_options, add_source_options, add_target_options, load, objective_postfix,
    out_dir, progress_bar, settings,
)


def visualize_parser(sub: argparse._SubParsersAction) -> Handler:
    from .exemplars import add_exemplar_options

    p = sub.add_parser("visualize", help="visualize units or classes of a layer (MACO by default); writes DIR/manifest.json and PNGs")
    which = add_target_options(p, units_help="unit indices and ranges, e.g. 3,7,9 or 0-3 (default: the first 4)", required=False,
                               layer_help="layer name (`hf-fviz layers MODEL`; default: logits where the model has a head)")
    which.add_argument("--text", action="append", default=None, metavar="TEXT",
                       help='image-text models (OpenCLIP, CLIP, SigLIP): maximize the similarity to this text, e.g. "a red apple" '
                            "(repeat for one image per text)")
    add_run_options(p)
    p.add_argument("--spectrum", default=None, metavar="FILE", help="magnitude spectrum .npy from `hf-fviz spectrum` (default: the shipped one)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help=BATCH_HELP)
    p.add_argument("--max-seconds", type=float, default=None, metavar="S",
                   help="stop after S seconds at a step boundary and keep the images as they are (manifest: stopped_early)")
    p.add_argument("--exemplars", default=None, metavar="SOURCE",
                   help="also find each unit's top natural images in SOURCE (folder, 'samples', hub dataset org/name) "
                        "and run the sanity check")
    add_source_options(p)
    add_exemplar_options(p)
    add_out_option(p)
    return visualize


def visualize(args: argparse.Namespace) -> int:
    import time

    from ..api import run
    from ..errors import InvalidSettings
    from ..hub import targets
    from ..output.render import save
    from ..output.writer import check_out_dir

    checked = settings(args, spectrum=args.spectrum, batch_size=args.batch_size, max_seconds=args.max_seconds)
    if args.out:
        check_out_dir(args.out)
    texts = None
    if args.text is not None:
        from ..engine import objectives

        if args.layer is not None:
            raise InvalidSettings(f"--text compares the image embedding with the text's; drop --layer {args.layer}")
        texts = [objectives.text(t) for t in args.text]
    if args.exemplars is not None:
        from .exemplars import check_exemplar_options

        check_exemplar_options(args)  # fail fast, before any compute
    model = load(args)
    layer, units = args.layer, None
    if args.units is not None or args.classes is not None:  # fail fast, before any compute
        layer, units = targets.resolve(model, layer=args.layer, units=args.units, classes=args.classes)
    start = time.perf_counter()
    with progress_bar("visualize", "step", objective_postfix) as progress:
        vis = run(model, checked, layer=layer, units=units, objectives=texts, progress=progress)
    if args.exemplars is not None:
        from .exemplars import add_exemplars

        add_exemplars(args, model, vis)
    path = save(vis, out_dir(args, model), model=model, seconds=time.perf_counter() - start, device=model.device.type)
    if args.exemplars is not None:
        from .exemplars import print_sanity

        print_sanity(vis)
    if vis and vis[0].extra.get("stopped_early"):
        skipped = vis[0].extra.get("units_skipped", 0)
        done = min(v.extra.get("steps_done", checked.steps) for v in vis)
        print(f"hf-fviz: stopped at --max-seconds {checked.max_seconds:g}: {done} of {checked.steps} steps done"
              + (f", {skipped} unit(s) not started" if skipped else "") + "; images kept as they are", file=sys.stderr)
    print(f"wrote {len(vis)} visualizations and {path}")
    return 0


# ---------------------------------------------------------------------------- spectrum
def spectrum_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("spectrum", help="build a magnitude spectrum (.npy for --spectrum) from a folder of your own images")
    p.add_argument("image_dir", metavar="IMAGE_DIR")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--crops", type=int, default=SPECTRUM_CROPS, help=f"random crops (default {SPECTRUM_CROPS})")
    p.add_argument("--size", type=int, default=SPECTRUM_SIZE, help=f"spectrum side (default {SPECTRUM_SIZE}; resized to the canvas at run time)")
    p.add_argument("--seed", type=int, default=0)
    return spectrum


def spectrum(args: argparse.Namespace) -> int:
    from ..api import build_spectrum
    from ..engine.spectrum import save_spectrum
    spec, prov = build_spectrum(args.image_dir, crops=args.crops, size=args.size, seed=args.seed)
    path = save_spectrum(spec, args.out)
    print(f"wrote {path}: {prov.describe()}")
    return 0
