"""Running one request: the optimization in a worker thread, streamed as progress ticks (with
previews), then written as the CLI's output folder (manifest + PNGs) and zipped."""

import math
import queue
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

import hf_fviz
from hf_fviz import render
from hf_fviz.hub.size import is_hub_id
from hf_fviz.output.grid import gallery_caption, unit_name
from hf_fviz.output.manifest import Manifest

from .models import ModelStore
from .run_request import IMAGE_METHODS, RunRequest, image_method
from .settings import gpu, new_run_dir

# ---------------------------------------------------------------------------- running
@dataclass
class Tick:
    """One progress report of a running optimization."""

    step: int
    total: int
    objective: float
    previews: list[tuple[Any, str]] | None = None


@dataclass
class RunResult:
    """A finished run: the gallery entries, the output folder (manifest + PNGs) and its zip."""

    gallery: list[tuple[str, str]]
    folder: Path
    zip_path: Path
    seconds: float
    device: str
    items: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


class _Cancelled(Exception):
    """Raised from the progress callback when the visitor stopped the run."""


def _preview(info: Any, labels: Sequence[str]) -> list[tuple[Any, str]] | None:
    """Current images from the engine's progress info, when it gives them (`info['images']`:
    (N, H, W, 3) or (N, 3, H, W) in [0, 1], or a zero-argument callable returning that)."""
    images = info.get("images") if hasattr(info, "get") else None
    if images is None:
        return None
    import numpy as np

    if callable(images):
        images = images()
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim != 4:
        return None
    if arr.shape[1] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(0, 2, 3, 1)
    return [(render.to_uint8(render.display_image(a)), labels[i] if i < len(labels) else f"image {i}") for i, a in enumerate(arr)]


def _call_engine(model: Any, req: RunRequest, progress: Callable) -> list[Any]:
    s = req.settings
    if req.method in IMAGE_METHODS:
        fn = image_method(req.method)
        if fn is None:
            raise gr.Error(f"method '{req.method}' is not available in this hf_fviz version", title="Bad method")
        images: Any = list(req.images) or "samples"  # the natural images bundled with hf_fviz
        common = {"steps": s.steps, "size": s.size, "crops": s.crops, "seed": s.seed, "k": s.k, "progress": progress}
        if req.method == "facets":  # multifaceted(model, *, unit, images, layer, k, ...)
            unit: int | str = req.classes[0] if req.classes else req.units[0]
            if isinstance(unit, str) and unit.isdigit():
                unit = int(unit)
            return list(fn(model, unit=unit, layer=req.layer, images=images, **common))
        return list(fn(model, layer=req.layer, images=images, **common))  # dual_objective
    return hf_fviz.visualize(model, method=req.method, **req.call_kwargs(), progress=progress, max_seconds=s.max_seconds)


@gpu
def optimize_stream(store: ModelStore, req: RunRequest, preview_every: int) -> Iterator[Tick | list[Any]]:
    """Run the optimization in a worker thread; yield `Tick`s while it runs, then the list of
    Visualizations. Closing the generator (the visitor pressed Stop) stops the worker."""
    model = store.get(req.model_id)
    labels = list(req.classes) or [f"{req.layer}:{u}" for u in req.units]
    events: queue.Queue = queue.Queue()
    cancel = threading.Event()

    def progress(step: int, total: int, info: Any) -> None:
        if cancel.is_set():
            raise _Cancelled
        objective = float(info.get("objective", math.nan)) if hasattr(info, "get") else math.nan
        previews = _preview(info, labels) if step % preview_every == 0 and step < total else None
        events.put(Tick(step, total, objective, previews))

    def work() -> None:
        try:
            with store.run_slots:
                events.put(("done", _call_engine(model, req, progress)))
        except BaseException as err:  # handed to the generator, re-raised there
            events.put(("error", err))

    worker = threading.Thread(target=work, name="hf_fviz-run", daemon=True)
    worker.start()
    try:
        while True:
            event = events.get()
            if isinstance(event, Tick):
                yield event
                continue
            kind, payload = event
            if kind == "error":
                raise payload
            yield payload
            return
    finally:
        cancel.set()


def finish_run(store: ModelStore, req: RunRequest, visualizations: Sequence[Any], seconds: float) -> RunResult:
    """Write the output folder (the CLI's manifest contract), zip it, and list the gallery."""
    model = store.get(req.model_id)
    run_dir = new_run_dir()
    folder = run_dir / "hf-fviz"
    device = str(getattr(model, "device", "cpu"))
    manifest_path = render.save(list(visualizations), folder, model=model, seconds=seconds, device=device)

    manifest = Manifest.read(manifest_path.parent)
    gallery: list[tuple[str, str]] = []
    for item in manifest.items:
        layer = item.layer or manifest.layer
        gallery.append((str(folder / item.image), gallery_caption(item.unit, item.label, layer, item.objective)))
        if item.rgba:
            gallery.append((str(folder / item.rgba), f"{unit_name(item.unit, item.label, layer)} · transparency"))
    stem = render.safe_name(f"hf-fviz_{Path(req.model_id).name if not is_hub_id(req.model_id) else req.model_id}_{req.layer}")
    zip_path = run_dir / f"{stem}.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(f, f"{stem}/{f.relative_to(folder).as_posix()}")
    items = [item.to_json() for item in manifest.items]
    return RunResult(gallery, folder, zip_path, seconds, device, items, bool(manifest.extra.get("stopped_early")))


def run_blocking(store: ModelStore, req: RunRequest) -> RunResult:
    """The whole run without intermediate updates (the `/visualize` API)."""
    start = time.perf_counter()
    for event in optimize_stream(store, req, preview_every=10**9):
        if not isinstance(event, Tick):
            return finish_run(store, req, event, time.perf_counter() - start)
    raise RuntimeError("the optimization ended without a result")

