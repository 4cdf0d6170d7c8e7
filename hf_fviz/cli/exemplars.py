"""The `exemplars` sub-command and the `--exemplars SOURCE` option of `visualize` (CLI face only:
parse, call `hf_fviz.exemplars` / `hf_fviz.engine.sanity`, print)."""

from __future__ import annotations

import argparse
from typing import Any

from ..settings import DEFAULT_SOURCE_IMAGES, DEFAULT_TOP
from .common import Handler, add_out_option, add_source_options, add_target_options, load, out_dir, progress_bar


def check_exemplar_options(args: argparse.Namespace, *, source: str | None = None, batch_size: int = 1) -> None:
    """Refuse bad --top / --max-images and an unreadable source before any compute."""
    from ..exemplars import check_options
    from ..hub.sources import check_source

    check_options(top=args.top, max_images=args.max_images, batch_size=batch_size)
    check_source(source if source is not None else args.exemplars, split=args.split, image_column=args.image_column)


def add_exemplars(args: argparse.Namespace, model: Any, vis: list) -> None:
    """Find, attach and sanity-check the exemplars of `vis` with a progress bar."""
    from ..exemplars import with_exemplars

    with progress_bar("exemplars", "img") as progress:
        with_exemplars(model, vis, args.exemplars, top=args.top, max_images=args.max_images, split=args.split,
                       image_column=args.image_column, progress=progress)


def add_exemplar_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="K", help=f"exemplars kept per unit (default {DEFAULT_TOP})")
    p.add_argument("--max-images", type=int, default=DEFAULT_SOURCE_IMAGES, metavar="N",
                   help=f"images read from the source at most (default {DEFAULT_SOURCE_IMAGES})")


def print_sanity(vis) -> None:
    rows = [v for v in vis if v.extra.get("sanity")]
    for v in rows:
        s = v.extra["sanity"]
        verdict = "FLAG: processed unlike its exemplars" if s["flag"] else "ok"
        name = f"{v.layer}:{v.unit}" + (f" {v.label}" if v.label != f"{v.layer}:{v.unit}" else "")
        print(f"sanity {name}: score {s['score']:.2f} (closer to its exemplars than "
              f"{s['score']:.0%} of random images of the source) {verdict}")
    if rows:
        print(f"sanity: {sum(v.extra['sanity']['flag'] for v in rows)} of {len(rows)} units flagged")


def exemplars_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("exemplars", help="the natural images of a source that excite each unit most (one streamed pass)")
    add_target_options(p, units_help="unit indices and ranges, e.g. 0-15,40, or all")
    p.add_argument("--images", required=True, metavar="SOURCE", help="a folder, 'samples', or a hub dataset org/name")
    add_source_options(p)
    add_exemplar_options(p)
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per forward pass (default 64)")
    add_out_option(p, "exemplars")
    return _exemplars


def _exemplars(args: argparse.Namespace) -> int:
    from ..exemplars import find_exemplars
    from ..hub import targets
    from ..output.exemplars import save_exemplars
    from ..output.writer import check_out_dir

    if args.out:
        check_out_dir(args.out)
    check_exemplar_options(args, source=args.images, batch_size=args.batch_size)
    model = load(args)
    layer, units = targets.resolve(model, layer=args.layer, units=args.units, classes=args.classes)
    with progress_bar("exemplars", "img") as progress:
        found = find_exemplars(model, layer=layer, units=units, source=args.images, top=args.top, max_images=args.max_images,
                               split=args.split, image_column=args.image_column, batch_size=args.batch_size, progress=progress)
    path = save_exemplars(found, out_dir(args, model, "exemplars"), model=model)
    print(f"{found.images_seen} images of {found.source} in {found.seconds:.1f} s "
          f"({found.images_seen / max(found.seconds, 1e-9):.0f} images/s); wrote {path}")
    return 0
