"""The `exemplars` sub-command and the `--exemplars SOURCE` option of `visualize` (CLI face only:
parse, call `hf_fviz.exemplars` / `hf_fviz.engine.sanity`, print)."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import InvalidSettings
from .exemplars import MAX_TOP


def check_exemplar_options(args: argparse.Namespace, *, source: str | None = None) -> None:
    """Refuse bad --top / --max-images and an unreadable source before any compute."""
    from .hub.sources import check_source

    if not 1 <= args.top <= MAX_TOP:
        raise InvalidSettings(f"--top must be in 1..{MAX_TOP}, got {args.top}")
    if args.max_images < 1:
        raise InvalidSettings(f"--max-images must be positive, got {args.max_images}")
    check_source(source if source is not None else args.exemplars, split=args.split, image_column=args.image_column)


def add_exemplars(args: argparse.Namespace, model: Any, vis: list) -> None:
    """Find, attach and sanity-check the exemplars of `vis` with a progress bar."""
    from .exemplars import with_exemplars

    progress, bars = exemplar_bar()
    try:
        with_exemplars(model, vis, args.exemplars, top=args.top, max_images=args.max_images, split=args.split,
                       image_column=args.image_column, progress=progress)
    finally:
        for bar in bars:
            bar.close()


def add_exemplar_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top", type=int, default=8, metavar="K", help="exemplars kept per unit (default 8)")
    p.add_argument("--max-images", type=int, default=2000, metavar="N", help="images read from the source at most (default 2000)")


def exemplar_bar():
    """A tqdm progress callback for `find_exemplars` (images done, images/s) and the bars to close."""
    from tqdm.auto import tqdm

    bars: list = []

    def progress(done: int, total, info) -> None:
        if not bars:
            bars.append(tqdm(desc="exemplars", unit="img", total=total, dynamic_ncols=True))
        bars[0].update(done - bars[0].n)  # tqdm's own rate column then reads images/s

    return progress, bars


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
    from .cli import _add_source_options, _add_unit_command_options

    _add_unit_command_options(p, units_help="unit indices and ranges, e.g. 0-15,40, or all")
    p.add_argument("--images", required=True, metavar="SOURCE", help="a folder, 'samples', or a hub dataset org/name")
    _add_source_options(p)
    add_exemplar_options(p)
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per forward pass (default 64)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: fviz-<model>-exemplars)")
    return _exemplars


def _exemplars(args: argparse.Namespace) -> int:
    from .cli import _load, _split_targets
    from .exemplars import find_exemplars, save_exemplars
    from .render import check_out_dir

    if args.out:
        check_out_dir(args.out)
    check_exemplar_options(args, source=args.images)
    model = _load(args)
    if args.classes is not None:
        if args.layer not in (None, "logits"):
            raise InvalidSettings(f"classes are logits; drop --layer {args.layer} or pass --units instead")
        layer, units = "logits", [model.class_index(c) for c in _split_targets(args.classes, "--classes")]
    else:
        from .atlas import parse_units

        layer = args.layer or model.default_layer
        units = parse_units(args.units, model.layer(layer).units, layer=layer)
    progress, bars = exemplar_bar()
    try:
        found = find_exemplars(model, layer=layer, units=units, source=args.images, top=args.top, max_images=args.max_images,
                               split=args.split, image_column=args.image_column, batch_size=args.batch_size, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    out = args.out or f"fviz-{model.id.replace('/', '--').replace(':', '-')}-exemplars"
    path = save_exemplars(found, out, model=model)
    print(f"{found.images_seen} images of {found.source} in {found.seconds:.1f} s "
          f"({found.images_seen / max(found.seconds, 1e-9):.0f} images/s); wrote {path}")
    return 0
