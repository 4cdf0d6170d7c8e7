"""`hf-fviz`: the command line face. It parses input, calls the public API and prints results;
no logic of its own. Every `FvizError` becomes one line on stderr and exit code 2.

One module per group of sub-commands; `common` holds the option blocks, the progress bar and the
output-folder name they share. Add a command by adding its parser to `PARSERS`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..errors import FvizError
from .atlas import atlas_parser
from .bench import _bench_parser
from .common import Handler
from .exemplars import exemplars_parser
from .imagesets import dual_parser, facets_parser
from .share import _layers_parser, _publish_parser, _space_parser, _watch_parser
from .visualize import spectrum_parser, visualize_parser


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line and exit code 2, like every other error (sub-commands inherit it)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"hf-fviz: error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


# Each entry adds one sub-command parser and returns its handler. Add new commands here.
PARSERS: list[Callable[[argparse._SubParsersAction], Handler]] = [
    _layers_parser, _publish_parser, atlas_parser, _watch_parser, _bench_parser, dual_parser, facets_parser,
    visualize_parser, spectrum_parser, exemplars_parser, _space_parser,
]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    from .. import __version__

    parser = _Parser(prog="hf-fviz", description="Feature visualization for Hugging Face hub vision models.")
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


__all__ = ["build_parser", "main"]
