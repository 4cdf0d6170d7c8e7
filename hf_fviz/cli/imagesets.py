"""`hf-fviz dual` and `hf-fviz facets`: the image-set methods (one image per cluster of a set of
natural images) -> an output folder."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..settings import DualSettings, FacetSettings, ImageSetSettings
from .common import (
    Handler, add_model_options, add_out_option, add_run_options, add_source_options, add_target_options, load,
    objective_postfix, out_dir, progress_bar, settings,
)

Run = Callable[[Any, Any], list]  # (images, progress) -> visualizations


def _add_imageset_options(p: argparse.ArgumentParser, defaults: ImageSetSettings, *, k_required: bool) -> None:
    p.add_argument("--images", nargs="+", required=True, metavar="SOURCE",
                   help="a folder, image files, 'samples' (free photos bundled with scikit-image, scikit-learn, matplotlib), "
                        "or a hub dataset org/name")
    add_source_options(p)
    p.add_argument("--k", type=int, required=k_required, default=None,
                   help="clusters, one image each" + ("" if k_required else f" (default {defaults.k})"))
    add_run_options(p, defaults, method=False)
    p.add_argument("--nearest", type=int, default=None, metavar="M",
                   help=f"images nearest each centroid used for its start image (default {defaults.nearest})")


def _imageset_run(args: argparse.Namespace, command: str, plan: Callable[[Any], Run]) -> int:
    """Load the model, let `plan(model)` check its targets, load the images, run with a progress
    bar, write the output folder."""
    from ..hub.images import load_images
    from ..output import imagesets
    from ..output.writer import check_out_dir

    if args.out:
        check_out_dir(args.out)
    model = load(args)
    run = plan(model)
    images = load_images(args.images[0] if len(args.images) == 1 else args.images, model=model, split=args.split,
                         image_column=args.image_column)
    with progress_bar(command, "step", objective_postfix) as progress:
        vis = run(images, progress)
    out = out_dir(args, model, command)
    check_out_dir(out)
    path = imagesets.save(vis, out, model=model, images=images)
    print(f"wrote {len(vis)} images and {path}")
    return 0


# ---------------------------------------------------------------------------- dual
def dual_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("dual", help="dual-objective (The Mind's Eye): one image per cluster of an image set, for a layer")
    add_model_options(p)
    p.add_argument("--layer", required=True, help="layer name (`hf-fviz layers MODEL`)")
    d = DualSettings()
    _add_imageset_options(p, d, k_required=False)
    p.add_argument("--recipe", default=None, choices=["maco", "paper"], help="maco (default) or the paper's pixel recipe")
    p.add_argument("--channels", type=int, default=None, help=f"top channels per cluster (default {d.channels})")
    add_out_option(p, "dual")
    return dual


def dual(args: argparse.Namespace) -> int:
    from ..api import run

    checked = settings(args, DualSettings, k=args.k, nearest=args.nearest, recipe=args.recipe, channels=args.channels)

    def plan(model: Any) -> Run:
        return lambda images, progress: run(model, checked, layer=args.layer, images=images, progress=progress)

    return _imageset_run(args, "dual", plan)


# ---------------------------------------------------------------------------- facets
def facets_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("facets", help="multifaceted visualization: k images per unit, one per cluster of the images it likes")
    add_target_options(p, units_help="unit indices and ranges, e.g. 3,7 or 0-3")
    f = FacetSettings()
    _add_imageset_options(p, f, k_required=True)
    p.add_argument("--param", default=None, choices=["maco", "pixel"], help="maco from the mean image's phase (default) or pixels")
    p.add_argument("--top", type=float, default=None,
                   help=f"images kept after ranking: a fraction <= 1 or a count (default {f.top:g})")
    p.add_argument("--no-center-bias", action="store_true", help="plain crops and gradient instead of the centre bias")
    add_out_option(p, "facets")
    return facets


def facets(args: argparse.Namespace) -> int:
    from ..api import run
    from ..hub import targets

    checked = settings(args, FacetSettings, k=args.k, nearest=args.nearest, param=args.param, top=args.top,
                   center_bias=False if args.no_center_bias else None)

    def plan(model: Any) -> Run:
        layer, units = targets.resolve(model, layer=args.layer, units=args.units, classes=args.classes)

        def go(images: Any, progress: Any) -> list:
            return [v for unit in units for v in run(model, checked, unit=unit, layer=layer, images=images, progress=progress)]

        return go

    return _imageset_run(args, "facets", plan)
