"""Peak memory of one side of a speed case, measured in a child process.

torch's CPU tensors come from malloc, which tracemalloc does not see, so each library is measured
in its own child process: load the model, note the resident set size, reset the kernel's
high-water mark (`/proc/self/clear_refs` = 5), run a few steps, read `VmHWM`. The figure is the
peak minus the resident size before the first step: the memory the optimization itself needs
(activations kept for backward, canvas, FFT buffers, optimizer state), on top of the same imports
and model weights. Where `clear_refs` is not writable, `ru_maxrss` of the fresh child is used
instead (whole process, so loading counts too).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .cases import SpeedCase, bare_run, hf_run, horama_run
from .horama import load_pair

_MEMORY_STEPS = 3


def _status_mb(key: str) -> float:
    """A `/proc/self/status` memory figure (`VmRSS`, `VmHWM`) in MiB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def memory_child(request: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: load one side of a case, run a few steps, report peak memory."""
    import gc

    import horama  # noqa: F401  (both libraries imported in every child: equal baselines)

    from ..engine import methods  # noqa: F401

    case = SpeedCase(**{**request["case"], "units": tuple(request["case"]["units"])})
    side, size, crops = request["side"], request["size"], request["crops"]
    pair = load_pair(case.model, with_horama=(side == "horama"), with_ours=True)
    if side != "horama":
        from ..engine.speed import apply

        apply(pair.vision_model, request.get("speedups", ()))
    gc.collect()
    before = _status_mb("VmRSS")
    exact = _reset_peak() and sys.platform.startswith("linux")
    if side == "hf_fviz":
        hf_run(pair.vision_model, case, steps=_MEMORY_STEPS, size=size, crops=crops, seed=0)
    elif side == "horama":
        horama_run(pair, case, case.units[0], steps=_MEMORY_STEPS, size=size, crops=crops, seed=0)
    else:
        bare_run(pair.vision_model, case, steps=_MEMORY_STEPS, crops=crops)
    if exact:
        peak = _status_mb("VmHWM")
        return {"peak_mb": peak - before, "process_peak_mb": peak, "method": "VmHWM after clear_refs, minus RSS before the steps"}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"peak_mb": peak - before, "process_peak_mb": peak, "method": "ru_maxrss of a fresh child, minus RSS before the steps"}


def memory_child_main() -> int:
    """Entry point of the child process: JSON request on stdin, JSON result on stdout's last line."""
    request = json.loads(sys.stdin.read())
    result = memory_child(request)
    print(json.dumps(result))
    return 0


def measure_memory(case: SpeedCase, side: str, *, size: int, crops: int, speedups: Sequence[str] = (),
                   timeout: float = 1800.0) -> dict[str, Any]:
    """Peak memory of `side` ('hf_fviz', 'horama' or 'bare') on `case`, in a child process."""
    request = {"case": asdict(case), "side": side, "size": size, "crops": crops, "speedups": list(speedups)}
    code = "import sys; from hf_fviz.bench.memory import memory_child_main; sys.exit(memory_child_main())"
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(request), capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"memory child for case {case.name} ({side}) failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
