"""`hf-fviz`: the command line face. It parses input, calls the public API and prints results;
no logic of its own. Every `FvizError` becomes one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from .errors import FvizError

Handler = Callable[[argparse.Namespace], int | None]


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


# ---------------------------------------------------------------------------- registry
# Each entry adds one sub-command parser and returns its handler. Add new commands here.
PARSERS: list[Callable[[argparse._SubParsersAction], Handler]] = [_layers_parser, _publish_parser]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = argparse.ArgumentParser(prog="hf-fviz", description="Feature visualization for Hugging Face hub vision models.")
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
