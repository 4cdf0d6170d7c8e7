"""`hf-fviz bench`: speed, chunk and quality benchmarks, side by side with horama."""

from __future__ import annotations

import argparse
import json
import sys

from .common import Handler


def _bench_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("bench", help="speed and quality benchmarks, side by side with horama (the authors' MACO)")
    what = p.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    s = what.add_parser("speed", help="seconds per step, ratio and peak memory of hf_fviz vs horama")
    s.add_argument("--json", action="store_true", help="print a JSON list, one object per case")
    s.add_argument("--steps", type=int, default=8, metavar="N", help="measured steps per library and case (default 8)")
    s.add_argument("--cases", default=None, help="cases to run, e.g. a,e (default all: a-f)")
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
    q.add_argument("--seed", type=int, default=0, help="seed of every visualization (default 0): run a few to tell a change from chance")
    q.add_argument("--sanity", default=None, metavar="SOURCE",
                   help="sanity check of each class against its top-4 exemplars in SOURCE (e.g. samples; default skipped)")
    return _bench


def _bench(args: argparse.Namespace) -> int:
    from .. import bench

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.bench_command == "speed":
        cases = bench.CASES if args.cases is None else tuple(c.strip() for c in args.cases.split(",") if c.strip())
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
        from ..bench.chunks import chunks_table, run_chunks

        report = run_chunks(model=args.model, steps=args.steps, rounds=args.rounds, log=log)
        print(json.dumps(report.to_dict(), indent=1) if args.json else chunks_table(report))
        return 0
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    qsettings = bench.QualitySettings(classes=args.classes, steps=args.steps, methods=methods, size=args.size,
                                      crops=args.crops, out=args.out,
                                      horama=bench.HoramaSettings(size=args.horama_size, crops=args.horama_crops),
                                      imagesets=not args.no_imagesets, insertion_slices=args.insertion_slices,
                                      sanity=args.sanity, seed=args.seed)
    report = bench.run_quality(qsettings, log=log)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        print(bench.quality_table(report))
    return 0
