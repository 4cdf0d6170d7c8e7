"""What the sub-commands share: the option blocks (model, targets, run settings, image sources),
loading the model, the one progress bar and the one output-folder name."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import Any, TypeVar

from ..engine.chunking import CPU_CROPS
from ..settings import DEFAULT_LR, LIMITS, ImageSetSettings, Settings

S = TypeVar("S", bound=Settings)
RUN_OPTIONS = ("method", "steps", "size", "crops", "seed", "lr")
BATCH_HELP = (f"units optimized together (default: on a CPU a power of two within {CPU_CROPS} crops per batch, and an "
              "atlas learns it from its first chunks; elsewhere the fastest per unit, measured)")

Handler = Callable[[argparse.Namespace], "int | None"]
Progress = Callable[[int, int, Any], None]


# ---------------------------------------------------------------------------- option blocks
def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="hub id (org/name[@revision]), local directory, or builtin:NAME")
    p.add_argument("--revision", default=None, help="branch, tag or commit (also MODEL@REV)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickle weights (.bin/.pth): runs code from the file")
    p.add_argument("--trust-remote-code", action="store_true", help="allow repos that ship their own model code")


def add_target_options(p: argparse.ArgumentParser, *, units_help: str, required: bool = True,
                       layer_help: str = "layer name (default: logits where the model has a head)"):
    """Model options, `--layer`, and one of `--units` / `--classes`; returns the group for more choices."""
    add_model_options(p)
    p.add_argument("--layer", default=None, help=layer_help)
    which = p.add_mutually_exclusive_group(required=required)
    which.add_argument("--units", default=None, help=units_help)
    which.add_argument("--classes", default=None, help='class names (case-insensitive) or indices, e.g. "tabby cat,espresso"')
    return which


def add_run_options(p: argparse.ArgumentParser, defaults: Settings = Settings(), *, method: bool = True) -> None:
    """The optimization settings every optimizing command takes; unset ones take `defaults`' values."""
    d, (s_lo, s_hi), (z_lo, z_hi), (c_lo, c_hi) = defaults, LIMITS["steps"], LIMITS["size"], LIMITS["crops"]
    if method:
        p.add_argument("--method", default=None, choices=list(type(d).methods), help=f"parametrization (default {d.method})")
    p.add_argument("--steps", type=int, default=None, help=f"optimization steps, {s_lo}..{s_hi} (default {d.steps})")
    p.add_argument("--size", type=int, default=None, help=f"canvas side in pixels, {z_lo}..{z_hi} (default {d.size})")
    p.add_argument("--crops", type=int, default=None, help="views per step: the whole canvas plus K-1 random crops "
                   f"(0 = whole canvas only), {c_lo}..{c_hi} (default {d.crops})")
    p.add_argument("--seed", type=int, default=None, help=f"random seed (default {d.seed})")
    lrs = "the method's own" if isinstance(d, ImageSetSettings) else ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LR.items())
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default {lrs})")


def settings(args: argparse.Namespace, cls: type[S] = Settings, *, check: bool = True, **more: Any) -> S:
    """The settings object of a run: what the command line gave, the rest from `cls`'s defaults.
    Checked here, before the model loads, so that a bad value costs nothing."""
    given = {n: getattr(args, n) for n in RUN_OPTIONS if getattr(args, n, None) is not None}
    out = cls(**given, **{k: v for k, v in more.items() if v is not None})
    return out.check() if check else out


def call_kwargs(settings: Settings) -> dict[str, Any]:
    """The settings as the library's keyword arguments: the fields that differ from the defaults."""
    base = type(settings)()
    return {f.name: getattr(settings, f.name) for f in fields(settings) if getattr(settings, f.name) != getattr(base, f.name)}


def add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default=None, help="split of a hub dataset source (default: train)")
    p.add_argument("--image-column", default=None, metavar="NAME", help="image column of a hub dataset source (default: the first)")


def add_out_option(p: argparse.ArgumentParser, suffix: str = "") -> None:
    default = "fviz-<model>" + (f"-{suffix}" if suffix else "")
    p.add_argument("--out", default=None, metavar="DIR", help=f"output folder (default: {default})")


# ---------------------------------------------------------------------------- doing
def load(args: argparse.Namespace) -> Any:
    from .. import load_model

    return load_model(args.model, revision=args.revision, device=args.device, allow_pickle=args.allow_pickle,
                      trust_remote_code=args.trust_remote_code)


def out_dir(args: argparse.Namespace, model: Any, suffix: str = "") -> str:
    """`--out`, else `fviz-<model id>[-suffix]` in the working folder."""
    if args.out:
        return args.out
    return f"fviz-{model.id.replace('/', '--').replace(':', '-')}" + (f"-{suffix}" if suffix else "")


def objective_postfix(info: Any) -> str:
    return f"objective {info.get('objective', float('nan')):.3f}"


@contextmanager
def progress_bar(desc: str | Callable[[], str], unit: str, postfix: Callable[[Any], str] | None = None, *,
                 show: bool = True) -> Iterator[Progress | None]:
    """A tqdm bar fed by the library's `progress(done, total, info)` callbacks. It opens on the
    first report, so that a bad setting prints one line only, and closes on the way out. `desc` may
    be a callable (read when the bar opens); `show=False` yields no callback at all."""
    bars: list = []

    def progress(done: int, total: int, info: Any) -> None:
        if not bars:
            from tqdm.auto import tqdm

            bars.append(tqdm(desc=desc() if callable(desc) else desc, unit=unit, total=total, dynamic_ncols=True))
        bar = bars[0]
        bar.total = total
        bar.update(done - bar.n)  # tqdm's own rate column then reads units per second
        if postfix is not None:
            bar.set_postfix_str(postfix(info), refresh=False)
        bar.refresh()

    try:
        yield progress if show else None
    finally:
        for bar in bars:
            bar.close()
