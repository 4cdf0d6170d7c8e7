"""The Markdown tables of `hf-fviz bench speed` and `hf-fviz bench quality`."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch

from .loadcheck import MachineLoad
from .common import fmt
from .quality import QualityReport, geometric_mean
from .speed import SpeedResult

def speed_table(results: Sequence[SpeedResult]) -> str:
    """Markdown table of speed results."""
    machine = next((r.machine for r in results if r.machine), None)
    lines = [f"**Not trustworthy: the machine was busy ({machine['reason']}).**", ""] if machine and machine["busy"] else []
    lines += [
        "| case | what | canvas, crops | hf_fviz s/step | horama s/step | bare s/step | ratio | CPU-time ratio | goal | hf_fviz peak MiB | horama peak MiB | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        per = " (per unit)" if r.units > 1 else ""
        lines.append(
            f"| {r.case} | {r.title} | {r.size}, {r.crops} | {fmt(r.hf_fviz_s_per_step)}{per} | {fmt(r.horama_s_per_step)} | "
            f"{fmt(r.bare_s_per_step)} | {fmt(r.ratio, '.2f')} | {fmt(r.cpu_ratio, '.2f')} | {r.goal} | {fmt(r.hf_fviz_peak_mb, '.0f')} | "
            f"{fmt(r.horama_peak_mb if r.horama_peak_mb is not None else r.bare_peak_mb, '.0f')}"
            f"{' (bare)' if r.bare_peak_mb is not None else ''} | {'yes' if r.met else 'no'} |"
        )
    method = next((r.memory_method for r in results if r.memory_method), None)
    lines.append("")
    speedups = next((r.speedups for r in results if r.speedups), None)
    lines.append(f"Median wall-clock step after warm-up, interleaved runs, torch threads {torch.get_num_threads()}, CPU; "
                 f"CPU-time ratio: the same from process CPU time (all threads), less sensitive to other load. "
                 f"Peak memory: {method or 'not measured'}." + (f" Speed-ups: {', '.join(speedups)}." if speedups else "")
                 + (f" Machine: {MachineLoad(**machine).describe()}." if machine else ""))
    return "\n".join(lines)



def quality_table(report: QualityReport) -> str:
    """Markdown table of quality results (plus per-class ranks)."""
    lines = [
        f"Visualized: `{report.model}`; judge: `{report.judge}` (whole RGB PNG resized to its input); "
        f"{len(report.classes)} classes; {report.steps} steps.",
        "",
        "| method | settings | judge top-1 | judge top-5 | judge rank, geometric mean | rank 1 on visualized model | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in report.methods:
        lines.append(f"| {m.method} | {m.settings} | {m.top1:.0%} | {m.top5:.0%} | {geometric_mean(m.judge_ranks):.2f} | "
                     f"{m.self_rank1:.0%} | {m.seconds:.0f} |")
    measured = [m for m in report.methods if m.insertion]
    if measured:
        lines += ["", "Insertion test of the transparency maps (Petsiuk et al. 2018; `hf_fviz.bench.insertion`): the unit's objective "
                  "while the image is revealed over a blurred copy, most attributed pixels first, against random order; "
                  "AUC of the curve scaled to 0 (blurred) .. 1 (full image), mean over classes:", "",
                  "| method | AUC, alpha order | AUC, random order | ratio (mean per class) | ratio, map of all views |",
                  "|---|---|---|---|---|"]
        for m in measured:
            lines.append(f"| {m.method} | {m.insertion_summary('alpha_auc'):.3f} | {m.insertion_summary('random_auc'):.3f} | "
                         f"{m.insertion_summary('ratio'):.2f} | {fmt(m.insertion_summary('ratio_all_views'), '.2f')} |")
    for m in (m for m in report.methods if m.sanity):
        scores = [row["score"] for row in m.sanity]
        lines += ["", f"Sanity check of {m.method} (`hf_fviz.engine.sanity`; score = share of the source's random images less close "
                  f"to the class's exemplars than the visualization; flag below 0.5): mean score {np.nanmean(scores):.2f}, "
                  f"{sum(row['flag'] for row in m.sanity)} of {len(scores)} flagged.", "",
                  "| class | sanity score | flag | top exemplars |", "|---|---|---|---|"]
        for c, label, row in zip(report.classes, report.labels, m.sanity):
            lines.append(f"| {c} {label} | {row['score']:.2f} | {'yes' if row['flag'] else 'no'} | {', '.join(row['exemplars'][:2])} |")
    lines += ["", "Judge rank of the target class per class (visualized-model rank in brackets):", ""]
    lines.append("| class | " + " | ".join(m.method for m in report.methods) + " |")
    lines.append("|---|" + "---|" * len(report.methods))
    for i, (c, label) in enumerate(zip(report.classes, report.labels)):
        cells = [f"{m.judge_ranks[i]} ({m.self_ranks[i]}) {m.judge_top1[i]}" for m in report.methods]
        lines.append(f"| {c} {label} | " + " | ".join(cells) + " |")
    if report.imagesets is not None:
        body = report.imagesets.get("table") or json.dumps(report.imagesets["result"], indent=1, default=str)
        lines += ["", f"Image-set quality ({report.imagesets['source']}):", "", "```", body, "```"]
    return "\n".join(lines)
