"""Speed and quality benchmarks (`hf-fviz bench speed|chunks|quality`, or `python -m hf_fviz.bench`),
side by side with horama, the MACO authors' PyTorch code.

Where things live (each module has one job):
- `horama`: horama as the reference arm (offline spectrum, its objective, one run, model pairs);
- `cases`: the speed cases and one timed run of each side (`StepClock`);
- `speed`: interleaved timing of the cases; `memory`: peak memory in child processes;
- `chunks`: what batching units into chunks costs per unit;
- `quality`: transferability to a judge network, the insertion test (`insertion`) of the
  transparency maps and the sanity check per class; `imagesets`: the dual/facets figures;
- `tables`: the Markdown tables.
"""

from __future__ import annotations

from .cases import CASES, SIXTEEN_CLASSES, SpeedCase, StepClock, speed_cases
from .horama import HoramaSettings, LoadedPair, horama_objective, horama_offline, load_pair, rgb_uint8_from_model_space, run_horama
from .memory import measure_memory, memory_child_main
from .quality import (QUALITY_CLASSES, QUALITY_METHODS, MethodQuality, QualityReport, QualitySettings, classify,
                      geometric_mean, pick_classes, ranks, run_quality)
from .speed import SpeedResult, SpeedSettings, run_speed
from .tables import quality_table, speed_table

__all__ = [
    "CASES", "QUALITY_CLASSES", "QUALITY_METHODS", "SIXTEEN_CLASSES", "HoramaSettings", "LoadedPair", "MethodQuality",
    "QualityReport", "QualitySettings", "SpeedCase", "SpeedResult", "SpeedSettings", "StepClock", "classify",
    "geometric_mean", "horama_objective", "horama_offline", "load_pair", "measure_memory", "memory_child_main",
    "pick_classes", "quality_table", "ranks", "rgb_uint8_from_model_space", "run_horama", "run_quality", "run_speed",
    "speed_cases", "speed_table",
]
