"""hf_fviz Space: see what a unit of any hub vision model responds to, by the model's ID.

A face over the public API only (`hf_fviz.load_model`, `hf_fviz.visualize`, `hf_fviz.render`,
`hf_fviz.publish`): it parses input, calls the API and shows the output. Caps on steps, size,
units and model size keep one visitor from starving the others on a free CPU Space; every
`hf_fviz.errors.FvizError` is shown as a one-line message in the page, never a traceback.

API (contract): `/layers (model_id)` and `/visualize (model_id, layer, units, method, steps, size)`.

    python space/app.py          # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured
"""

# No `from __future__ import annotations`: Gradio reads the handlers' type hints
# (gr.OAuthToken, gr.OAuthProfile, gr.Request, gr.Progress) at run time.

import functools
import html
import inspect
import logging
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gradio as gr

import hf_fviz
from hf_fviz import render
from hf_fviz.card import MAX_CARD_BYTES
from hf_fviz.errors import FvizError

log = logging.getLogger("hf_fviz.space")

try:  # ZeroGPU: `spaces.GPU` is a no-op unless SPACES_ZERO_GPU is set
    import spaces

    def gpu(fn: Callable) -> Callable:
        return spaces.GPU(duration=120)(fn)

except ImportError:

    def gpu(fn: Callable) -> Callable:
        return fn


CARD_START, CARD_END = "<!-- hf-fviz:start -->", "<!-- hf-fviz:end -->"
ASSET_DIR = "feature_visualizations"
LOGITS = "logits"
EXAMPLES = [
    "builtin:mobilenetv2",
    "builtin:efficientnet-lite0",
    "timm/resnet50.a1_in1k",
    "timm/convnext_tiny.fb_in1k",
    "google/vit-base-patch16-224",
    "facebook/dinov2-small",
]
DEFAULT_MODEL = EXAMPLES[0]
PREFERRED_CLASSES = ("goldfish", "tabby cat", "tabby")


# ---------------------------------------------------------------------------- caps
def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


@dataclass(frozen=True)
class Caps:
    """Limits that keep one visitor from starving the others; overridable by env vars
    (`HF_FVIZ_SPACE_<FIELD>`, e.g. HF_FVIZ_SPACE_MAX_STEPS=512) and in tests."""

    default_steps: int = 48  # README.md, Timings: fits 30 s (MobileNetV2) / 90 s (ResNet-50) on 2 vCPUs
    max_steps: int = 256
    default_size: int = 224
    max_size: int = 512
    min_size: int = 64
    crops: int = 4
    max_crops: int = 16
    max_units: int = 8
    max_params: int = 100_000_000
    max_images: int = 32  # uploaded natural images for facets / dual
    concurrency: int = 1  # optimizations running at once
    queue_size: int = 16
    models_in_memory: int = 2
    previews: int = 8  # intermediate updates per run
    max_seconds: int = 300  # a run stops here at a step boundary and keeps its images (0: no limit)
    allow_local: int = 0  # 1: also load model folders on this server's disk (never on a public Space)

    @classmethod
    def from_env(cls, **overrides: int) -> "Caps":
        """Caps from HF_FVIZ_SPACE_* env vars; on a GPU the defaults are more generous."""
        base = cls()
        if _cuda_available():
            base = replace(base, default_steps=256, max_steps=1024, default_size=384, max_size=1024, crops=16,
                           max_crops=32, max_units=32, max_params=1_000_000_000)
        values = {f: _env_int(f"HF_FVIZ_SPACE_{f.upper()}", getattr(base, f)) for f in cls.__dataclass_fields__}
        values.update(overrides)
        caps = cls(**values)
        if not (1 <= caps.default_steps <= caps.max_steps and caps.min_size <= caps.default_size <= caps.max_size):
            raise ValueError(f"inconsistent Space caps: {caps}")
        return caps


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------------------- errors
def _message(err: BaseException) -> str:
    return " ".join(str(err).split())[:500] or type(err).__name__


def _as_gr_error(err: Exception) -> gr.Error:
    if isinstance(err, gr.Error):
        return err
    if isinstance(err, FvizError):
        return gr.Error(_message(err), title="Cannot do that")
    log.exception("unexpected error in the hf_fviz Space")
    return gr.Error(f"Unexpected error ({type(err).__name__}): {_message(err)}", title="Something went wrong")


def friendly(fn: Callable) -> Callable:
    """Show user mistakes (FvizError) and surprises as a message in the page, never a traceback.
    Keeps the handler's signature (Gradio reads it) and its generator-ness (Gradio streams it)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:  # GeneratorExit (a cancelled run) is not an Exception
                raise _as_gr_error(err) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raise _as_gr_error(err) from None

    return wrapper


# ---------------------------------------------------------------------------- models
def _is_hub_id(model_id: str) -> bool:
    return not model_id.startswith("builtin:") and not Path(model_id).expanduser().is_dir()


def hub_parameter_count(model_id: str) -> int | None:
    """Parameters of a hub repo from its safetensors headers (no weights downloaded), or None
    when unknown (offline, local folder, builtin, no safetensors metadata, hub unreachable)."""
    if not model_id or not _is_hub_id(model_id):
        return None
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return None
    repo, _, revision = model_id.partition("@")
    try:
        meta = HfApi().get_safetensors_metadata(repo, revision=revision or None)
    except Exception as err:  # any hub problem is reported by load_model with a proper message
        log.info("no safetensors metadata for %s: %s", model_id, _message(err))
        return None
    counts = getattr(meta, "parameter_count", None) or {}
    return int(sum(counts.values())) if counts else None


def _too_large(model_id: str, params: int, caps: Caps) -> gr.Error:
    return gr.Error(
        f"{model_id} has {params / 1e6:.0f} M parameters; this Space visualizes models up to "
        f"{caps.max_params / 1e6:.0f} M. Run it on your own machine: pip install hf-fviz; "
        f"hf-fviz visualize {model_id}",
        title="Model too large",
    )


class ModelStore:
    """The few most recently used models, loaded once. The parameter budget is checked before
    any download (hub safetensors metadata) and again after loading (local, builtin, offline)."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: str) -> Any:
        model_id = (model_id or "").strip()
        if not model_id:
            raise gr.Error("Enter a model ID first, e.g. builtin:mobilenetv2 or timm/resnet50.a1_in1k.", title="No model")
        if not self.caps.allow_local and not model_id.startswith("builtin:") and Path(model_id).expanduser().exists():
            raise gr.Error(f"'{model_id[:100]}' is a path on this server: the Space loads hub models (org/name) and "
                           "builtin: models only.", title="Not a hub model")
        with self._lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
            params = hub_parameter_count(model_id)
            if params is not None and params > self.caps.max_params:
                raise _too_large(model_id, params, self.caps)
            model = hf_fviz.load_model(model_id, device="auto")
            params = sum(p.numel() for p in model.module.parameters())
            if params > self.caps.max_params:
                raise _too_large(model_id, params, self.caps)
            self._models[model_id] = model
            while len(self._models) > max(1, self.caps.models_in_memory):
                self._models.popitem(last=False)
            return model


# ---------------------------------------------------------------------------- work folder
def workdir() -> Path:
    """Where runs and card images go: under the system temp dir (Gradio serves files from there)."""
    root = Path(os.environ.get("HF_FVIZ_SPACE_DIR") or Path(tempfile.gettempdir()) / "hf_fviz_space")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _new_run_dir(max_age_s: float = 3 * 3600) -> Path:
    """A fresh folder for one run; folders older than `max_age_s` are removed on the way."""
    root = workdir()
    now = time.time()
    for old in root.glob("run-*"):
        try:
            if now - old.stat().st_mtime > max_age_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    path = root / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


# ---------------------------------------------------------------------------- card assets
_IMAGE_LINK = re.compile(r"!\[((?:\\.|[^\]\\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def card_section(text: str) -> str | None:
    """The hf-fviz section of a model card (between the markers), or None."""
    start = text.find(CARD_START)
    if start < 0:
        return None
    end = text.find(CARD_END, start + len(CARD_START))
    return text[start + len(CARD_START) : end] if end >= 0 else None


def _asset_path(target: str, repo_id: str) -> str | None:
    """A link of the section -> its path in the repo, only for images under feature_visualizations/."""
    from urllib.parse import unquote, urlparse

    path = target
    if "://" in target:
        url = urlparse(target)
        prefix = f"/{repo_id}/resolve/"
        if url.netloc not in ("huggingface.co", "hf.co") or not url.path.startswith(prefix):
            return None
        path = url.path[len(prefix) :].split("/", 1)[-1]  # drop the revision
    path = unquote(path).lstrip("./") if path.startswith("./") else unquote(path)
    parts = path.split("/")
    if parts[0] != ASSET_DIR or ".." in parts or not path.lower().endswith(_IMAGE_EXT):
        return None
    return path


def card_images(model_id: str, *, revision: str | None = None, limit: int = 40) -> list[tuple[str, str]]:
    """Images an earlier `hf-fviz publish` put on the model's card, as (local path, caption).

    Read through huggingface_hub (so HF_HUB_OFFLINE=1 works from the cache) or from a local
    folder's README.md; copied under the work folder so that Gradio may serve them. Per-unit
    images first; the grid only when there are none. Never raises: no card, no images."""
    model_id = (model_id or "").strip()
    if not model_id or model_id.startswith("builtin:"):
        return []
    local = Path(model_id).expanduser()
    repo_id, _, at = model_id.partition("@")
    revision = revision or at or None
    try:
        if local.is_dir():
            root = local.resolve()
            readme = root / "README.md"
            text = readme.read_text(encoding="utf-8") if readme.is_file() else ""

            def fetch(path: str) -> Path:
                found = (root / path).resolve()
                if not found.is_relative_to(root) or not found.is_file():
                    raise FileNotFoundError(path)
                return found

        else:
            from huggingface_hub import hf_hub_download

            card_path = Path(hf_hub_download(repo_id, "README.md", revision=revision))
            if card_path.stat().st_size > MAX_CARD_BYTES:
                raise ValueError(f"README.md is {card_path.stat().st_size:,} bytes: too large to show")
            text = card_path.read_text(encoding="utf-8")

            def fetch(path: str) -> Path:
                return Path(hf_hub_download(repo_id, path, revision=revision))

    except Exception as err:  # no card, not cached, hub unreachable: nothing to show
        log.info("no card for %s: %s", model_id, _message(err))
        return []
    section = card_section(text)
    if not section:
        return []
    links: dict[str, str] = {}
    for alt, target in _IMAGE_LINK.findall(section):
        path = _asset_path(target, repo_id)
        if path and path not in links:
            links[path] = html.unescape(re.sub(r"\\(.)", r"\1", alt)).strip()
    items = [p for p in links if not p.endswith("/grid.png")] or list(links)
    dest = workdir() / "cards" / render.safe_name(f"{model_id}@{revision or 'main'}")
    out = []
    for path in items[:limit]:
        try:
            src = fetch(path)
        except Exception as err:
            log.info("card image %s of %s unavailable: %s", path, model_id, _message(err))
            continue
        copy = dest / path
        copy.parent.mkdir(parents=True, exist_ok=True)
        if not copy.exists():
            shutil.copyfile(src, copy)
        out.append((str(copy), links[path] or Path(path).stem))
    return out


# ---------------------------------------------------------------------------- methods
METHOD_LABELS = {"maco": "MACO", "fourier": "Fourier", "pixel": "Pixel"}
IMAGE_METHODS = {"facets": ("multifaceted", "Facets"), "dual": ("dual_objective", "Dual objective")}


def _image_method(method: str) -> Callable | None:
    name = IMAGE_METHODS.get(method, (None,))[0]
    if name is None:
        return None
    try:
        return getattr(hf_fviz, name)
    except (AttributeError, ImportError):
        return None


def available_methods() -> list[tuple[str, str]]:
    """(label, value) of the methods this hf_fviz offers; facets and dual only when importable."""
    out = list((label, value) for value, label in METHOD_LABELS.items())
    out += [(label, key) for key, (_, label) in IMAGE_METHODS.items() if _image_method(key) is not None]
    return out


# ---------------------------------------------------------------------------- requests
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def parse_units(units: str | Sequence[str] | None) -> list[str]:
    """'3, 7, 10-12' or a list of picked values -> ['3', '7', '10', '11', '12'], deduplicated."""
    if units is None:
        return []
    tokens = units.split(",") if isinstance(units, str) else [str(u) for u in units]
    out: list[str] = []
    for tok in (t.strip() for t in tokens):
        if not tok:
            continue
        m = _RANGE.match(tok)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo or hi - lo > 4096:
                raise gr.Error(f"bad unit range '{tok}': write it as low-high, e.g. 0-7", title="Bad units")
            out.extend(str(i) for i in range(lo, hi + 1))
        else:
            out.append(tok)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class RunRequest:
    """One checked visualization request (what the API and the UI both run)."""

    model_id: str
    layer: str
    units: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()
    method: str = "maco"
    steps: int = 64
    size: int = 224
    crops: int = 4
    seed: int = 0
    images: tuple[str, ...] = ()
    k: int = 3

    def call_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"layer": self.layer, "steps": self.steps, "size": self.size, "crops": self.crops, "seed": self.seed}
        if self.classes:
            kw["classes"] = list(self.classes)
        else:
            kw["units"] = list(self.units)
        return kw


def _int_setting(name: str, value: Any, lo: int, hi: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number, got {value!r}", title="Bad setting") from None
    if not math.isfinite(number) or number != int(number) or not lo <= number <= hi:
        raise gr.Error(f"{name} must be a whole number in {lo}..{hi} on this Space, got {value!r}", title="Bad setting")
    return int(number)


def make_request(
    caps: Caps,
    model_id: str,
    layer: str | None,
    units: str | Sequence[str] | None,
    method: str | None,
    steps: Any,
    size: Any,
    *,
    crops: Any = None,
    seed: Any = 0,
    images: Sequence[Any] | None = None,
    k: Any = 3,
) -> RunRequest:
    """Check a request against the caps; every problem is a gr.Error naming what to fix."""
    model_id = (model_id or "").strip()
    if not model_id:
        raise gr.Error("Enter a model ID and click Load first.", title="No model")
    layer = (layer or "").strip()
    if not layer:
        raise gr.Error("Choose a layer first (Load the model, then pick one in the Layer list).", title="No layer")
    method = (method or "maco").strip().lower()
    known = [value for _, value in available_methods()]
    if method not in known:
        raise gr.Error(f"unknown method '{method}': use one of {', '.join(known)}", title="Bad method")
    tokens = [] if method == "dual" else parse_units(units)  # dual: one image per cluster of the images
    if not tokens and method != "dual":
        what = "class" if layer == LOGITS else "unit index (e.g. 0, 5, 12)"
        raise gr.Error(f"Pick at least one {what} to visualize.", title="Nothing to visualize")
    if method == "facets" and len(tokens) != 1:
        raise gr.Error("Facets show one unit or class at a time (one image per facet): pick exactly one.", title="Bad units")
    if len(tokens) > caps.max_units:
        raise gr.Error(f"{len(tokens)} units asked for; this Space runs at most {caps.max_units} per run.", title="Too many units")
    unit_ids: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()
    if layer == LOGITS:
        classes = tuple(tokens)
    else:
        bad = [t for t in tokens if not t.isdigit()]
        if bad:
            raise gr.Error(f"units of layer '{layer}' are indices (e.g. 0, 5, 12 or 0-7), not '{bad[0]}'", title="Bad units")
        unit_ids = tuple(int(t) for t in tokens)
    paths: tuple[str, ...] = ()
    if method in IMAGE_METHODS:
        paths = tuple(str(getattr(f, "name", f)) for f in (images or []) if f)  # none: the bundled samples
        if len(paths) > caps.max_images:
            raise gr.Error(f"{len(paths)} images uploaded; this Space takes at most {caps.max_images}.", title="Too many images")
    return RunRequest(
        model_id=model_id,
        layer=layer,
        units=unit_ids,
        classes=classes,
        method=method,
        steps=_int_setting("steps", steps, 1, caps.max_steps),
        size=_int_setting("size", size, caps.min_size, caps.max_size),
        crops=_int_setting("crops", caps.crops if crops is None else crops, 1, caps.max_crops),
        seed=_int_setting("seed", seed if seed not in (None, "") else 0, 0, 2**31 - 1),
        images=paths,
        k=_int_setting("facets", k, 1, 8),
    )


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


def _call_engine(model: Any, req: RunRequest, progress: Callable, max_seconds: float | None = None) -> list[Any]:
    common = {"steps": req.steps, "size": req.size, "crops": req.crops, "seed": req.seed, "progress": progress}
    if req.method in IMAGE_METHODS:
        fn = _image_method(req.method)
        if fn is None:
            raise gr.Error(f"method '{req.method}' is not available in this hf_fviz version", title="Bad method")
        images: Any = list(req.images) or "samples"  # the natural images bundled with hf_fviz
        if req.method == "facets":  # multifaceted(model, *, unit, images, layer, k, ...)
            unit: int | str = req.classes[0] if req.classes else req.units[0]
            if isinstance(unit, str) and unit.isdigit():
                unit = int(unit)
            return list(fn(model, unit=unit, layer=req.layer, images=images, k=req.k, **common))
        return list(fn(model, layer=req.layer, images=images, k=req.k, **common))  # dual_objective
    return hf_fviz.visualize(model, method=req.method, **req.call_kwargs(), progress=progress, max_seconds=max_seconds)


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
            events.put(("done", _call_engine(model, req, progress, store.caps.max_seconds or None)))
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
    run_dir = _new_run_dir()
    folder = run_dir / "hf-fviz"
    device = str(getattr(model, "device", "cpu"))
    manifest_path = render.save(list(visualizations), folder, model=model, seconds=seconds, device=device)
    import json

    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    gallery: list[tuple[str, str]] = []
    for item in manifest["items"]:
        name = str(item.get("label") or f"{manifest['layer']}:{item.get('unit')}")
        unit = item.get("unit")
        caption = f"{name} ({unit})" if unit is not None and str(unit) not in name else name
        objective = item.get("objective")
        if isinstance(objective, (int, float)):
            caption += f" · {objective:.1f}"
        gallery.append((str(folder / item["image"]), caption))
        if item.get("rgba"):
            gallery.append((str(folder / item["rgba"]), f"{name} · transparency"))
    stem = render.safe_name(f"hf-fviz_{Path(req.model_id).name if not _is_hub_id(req.model_id) else req.model_id}_{req.layer}")
    zip_path = run_dir / f"{stem}.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(f, f"{stem}/{f.relative_to(folder).as_posix()}")
    return RunResult(gallery, folder, zip_path, seconds, device, manifest["items"], bool(manifest.get("stopped_early")))


def run_blocking(store: ModelStore, req: RunRequest) -> RunResult:
    """The whole run without intermediate updates (the `/visualize` API)."""
    start = time.perf_counter()
    for event in optimize_stream(store, req, preview_every=10**9):
        if not isinstance(event, Tick):
            return finish_run(store, req, event, time.perf_counter() - start)
    raise RuntimeError("the optimization ended without a result")


# ---------------------------------------------------------------------------- page text
def model_summary(model: Any) -> str:
    params = sum(p.numel() for p in model.module.parameters())
    h, w = model.input_size
    parts = [f"**{html.escape(model.id)}**", model.library, model.family, f"{h}×{w} input", f"{params / 1e6:.1f} M parameters",
             f"{len(model.layers())} layers"]
    if model.labels:
        parts.append(f"{len(model.labels)} classes")
    return " · ".join(parts)


def class_choices(model: Any) -> list[tuple[str, str]]:
    return [(f"{label} ({i})", str(i)) for i, label in enumerate(model.labels or [])]


def default_class(model: Any) -> list[str]:
    labels = [label.lower() for label in (model.labels or [])]
    for name in PREFERRED_CLASSES:
        if name in labels:
            return [str(labels.index(name))]
    return ["0"] if labels else []


def layer_choices(model: Any) -> list[tuple[str, str]]:
    def label(layer: Any) -> str:
        if layer.name == LOGITS:
            return f"logits  ·  {layer.units} classes"
        return f"{layer.name}  ·  {layer.kind}, {layer.units} units"

    return [(label(layer), layer.name) for layer in model.layers()]


def _units_hint(units: int) -> str:
    return f"Unit indices 0..{units - 1}, e.g. 0, 5, 12 or 0-3"


HEADER = """
<div class="fviz-header">
<h1>hf-fviz <span class="fviz-sub">feature visualization for hub vision models</span></h1>
<p>What does a unit of a vision model respond to? Give any Hugging Face image model by its ID
(timm or transformers), pick a layer and units, and optimize images that excite them, with
<a href="https://arxiv.org/abs/2306.06805" target="_blank">MACO</a> (phase-only Fourier optimization under a
natural-image spectrum). The faint regions of the transparency view mattered least to the unit.</p>
</div>
"""

CSS = """
.fviz-header h1 { margin-bottom: 0.2rem; }
.fviz-header .fviz-sub { font-size: 1rem; font-weight: 400; color: var(--body-text-color-subdued); margin-left: 0.4rem; }
.fviz-header p { margin-top: 0; color: var(--body-text-color-subdued); max-width: 62rem; }
#fviz-status { min-height: 4.5rem; }
#fviz-gallery .caption-label { white-space: normal; }
footer { margin-top: 0.5rem; }
"""


# ---------------------------------------------------------------------------- the page
def build_demo(
    caps: Caps | None = None,
    *,
    store: ModelStore | None = None,
    default_model: str = DEFAULT_MODEL,
    autoload: bool = True,
    oauth: bool | None = None,
) -> gr.Blocks:
    """The Space's page. Tests import it, launch it on a free port and drive it.

    The page opens with `default_model` in the box, loaded at once when `autoload`; a link
    `?model=org/name` (the model cards' "Try this model" link) loads that model instead.
    `oauth` (default: `oauth_available()`) adds the Hugging Face login and the publish button."""
    oauth = oauth_available() if oauth is None else oauth
    caps = caps or Caps.from_env()
    store = store or ModelStore(caps)
    methods = available_methods()

    def describe(model: Any) -> dict[str, Any]:
        return {"id": model.id, "units": {layer.name: layer.units for layer in model.layers()}, "has_head": model.has_head}

    # ------------------------------------------------------------------ handlers
    @friendly
    def load(model_id: str) -> tuple:
        model = store.get(model_id)
        layer = model.default_layer
        info = describe(model)
        card = card_images(model.id if _is_hub_id(model_id.strip()) else model_id.strip(), revision=model.revision)
        if card:
            status = (f"Shown from the model card: {len(card)} hf-fviz images published earlier. "
                      "Pick units and press **Visualize** to make your own.")
        else:
            status = "Model loaded. Pick units and press **Visualize**."
        is_logits = layer == LOGITS
        return (
            info,
            gr.update(choices=layer_choices(model), value=layer, interactive=True),
            gr.update(choices=class_choices(model), value=default_class(model) if is_logits else [], visible=is_logits),
            gr.update(visible=not is_logits, value="" if is_logits else "0-3", info=_units_hint(info["units"].get(layer, 1))),
            model_summary(model),
            card or None,
            status,
        )

    def pick_layer(info: dict | None, layer: str | None) -> tuple:
        if not info or not layer:
            return gr.skip(), gr.skip()
        units = info["units"].get(layer)
        if layer == LOGITS and info.get("has_head"):
            return gr.update(visible=True), gr.update(visible=False)
        return gr.update(visible=False), gr.update(visible=True, info=_units_hint(units or 1))

    def pick_method(method: str) -> tuple:
        needs_images = method in IMAGE_METHODS
        return gr.update(visible=needs_images), gr.update(visible=needs_images)

    @friendly
    def run(
        info: dict | None,
        layer: str | None,
        classes: list[str] | None,
        units: str | None,
        method: str,
        steps: float,
        size: float,
        seed: float,
        crops: float,
        images: list[Any] | None,
        k: float,
        progress: gr.Progress = gr.Progress(),
    ) -> Iterator[tuple]:
        if not info:
            raise gr.Error("Load a model first.", title="No model")
        picked = classes if layer == LOGITS else units
        req = make_request(caps, info["id"], layer, picked, method, steps, size, crops=crops, seed=seed, images=images, k=k)
        progress(0, desc="loading the model")
        yield gr.skip(), "Starting…", gr.update(visible=False), None, _curve([])
        start = time.perf_counter()
        every = max(1, req.steps // max(1, caps.previews))
        curve: list[dict[str, float]] = []
        last_yield = 0.0
        for event in optimize_stream(store, req, every):
            if isinstance(event, Tick):
                progress((event.step, event.total), desc="optimizing", unit="steps")
                if math.isfinite(event.objective):
                    curve.append({"step": event.step, "objective": event.objective})
                now = time.perf_counter()
                if event.previews or now - last_yield > 1.0:
                    last_yield = now
                    status = f"Step {event.step} / {event.total} · objective {event.objective:.2f} · {now - start:.0f} s"
                    yield (event.previews if event.previews else gr.skip()), status, gr.skip(), gr.skip(), _curve(curve)
                continue
            progress(1.0, desc="writing images")
            result = finish_run(store, req, event, time.perf_counter() - start)
            n = len(result.items)
            what = ("class" if n == 1 else "classes") if req.layer == LOGITS else ("unit" if n == 1 else "units")
            status = (f"Done in {result.seconds:.1f} s on {result.device}: {n} {what} of `{req.layer}` with "
                      f"{_method_label(req.method)}, {req.steps} steps at {req.size} px "
                      "(caption: class or unit · final objective). "
                      + (f"Stopped at this Space's {caps.max_seconds} s limit: the images are as far as they got. "
                         if result.stopped_early else "")
                      + ("Download the zip, or sign in to publish them to the model card." if oauth else "Download the zip below."))
            yield (
                result.gallery,
                status,
                gr.update(value=str(result.zip_path), visible=True),
                {"model_id": req.model_id, "folder": str(result.folder)},
                _curve(curve),
            )

    @friendly
    def api_visualize(model_id: str, layer: str, units: str, method: str, steps: float, size: float) -> list[tuple[str, str]]:
        req = make_request(caps, model_id, layer, units, method, steps, size)
        return run_blocking(store, req).gallery

    @friendly
    def publish(last: dict | None, oauth_token: gr.OAuthToken | None) -> str:
        return publish_to_card(last, oauth_token)

    def logged_in(profile: gr.OAuthProfile | None) -> Any:
        return gr.update(visible=profile is not None)

    def from_query(request: gr.Request) -> tuple:
        asked = (request.query_params.get("model") or "").strip() if request is not None else ""
        return (asked or gr.skip()), bool(asked)

    # ------------------------------------------------------------------ layout
    with gr.Blocks(title="hf-fviz: feature visualization for hub vision models", delete_cache=(3600, 3 * 3600)) as demo:
        model_info = gr.State(None)
        last_run = gr.State(None)
        gr.HTML(HEADER)
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=320):
                with gr.Group():
                    with gr.Row(equal_height=True):
                        model_box = gr.Textbox(
                            label="Model ID", value=default_model, placeholder="org/name, e.g. timm/resnet50.a1_in1k",
                            scale=4, max_lines=1, elem_id="fviz-model",
                        )
                        load_btn = gr.Button("Load", variant="secondary", scale=1, min_width=80, elem_id="fviz-load")
                gr.Examples([[e] for e in EXAMPLES], inputs=[model_box], label="Examples (builtin: models work offline)",
                            examples_per_page=len(EXAMPLES))
                summary = gr.Markdown("", elem_id="fviz-summary")
                layer_dd = gr.Dropdown(label="Layer", choices=[], interactive=True, elem_id="fviz-layer",
                                       info="`logits` = the classes; earlier layers show simpler features")
                classes_dd = gr.Dropdown(label="Classes", choices=[], multiselect=True, filterable=True, interactive=True,
                                         max_choices=caps.max_units, elem_id="fviz-classes",
                                         info=f"Type to search; up to {caps.max_units} per run")
                units_box = gr.Textbox(label="Units", visible=False, max_lines=1, elem_id="fviz-units")
                method_radio = gr.Radio(methods, value="maco", label="Method", elem_id="fviz-method")
                images_in = gr.File(label="Natural images to cluster (none: hf_fviz's bundled samples)",
                                    file_count="multiple", file_types=["image"], type="filepath", visible=False)
                k_slider = gr.Slider(1, 8, value=3, step=1, label="Facets / clusters (one image each)", visible=False)
                with gr.Row():
                    steps_sl = gr.Slider(8, caps.max_steps, value=caps.default_steps, step=8, label="Steps",
                                         info=f"max {caps.max_steps} on this Space")
                    size_sl = gr.Slider(caps.min_size, caps.max_size, value=caps.default_size, step=32, label="Size (px)",
                                        info=f"max {caps.max_size} on this Space")
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        seed_nb = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                        crops_sl = gr.Slider(1, caps.max_crops, value=caps.crops, step=1, label="Crops per step")
                with gr.Row():
                    run_btn = gr.Button("Visualize", variant="primary", scale=3, elem_id="fviz-run")
                    stop_btn = gr.Button("Stop", variant="stop", scale=1, min_width=80)
            with gr.Column(scale=7, min_width=400):
                status_md = gr.Markdown("Load a model to begin.", elem_id="fviz-status")
                gallery = gr.Gallery(label="Visualizations (each with its transparency view)", columns=4, height="auto",
                                     object_fit="contain", format="png", preview=False, elem_id="fviz-gallery",
                                     buttons=["download", "fullscreen"])
                curve_plot = gr.LinePlot(x="step", y="objective", x_title="step", y_title="objective (mean)", height=160,
                                         label="Objective while optimizing", show_label=True, elem_id="fviz-curve")
                with gr.Row(equal_height=True):
                    download_btn = gr.DownloadButton("Download manifest + PNGs (zip)", visible=False, elem_id="fviz-download")
                if oauth:
                    with gr.Group():
                        with gr.Row(equal_height=True):
                            gr.LoginButton(scale=1)
                            publish_btn = gr.Button("Publish to model card (opens a pull request)", visible=False,
                                                    scale=2, elem_id="fviz-publish")
                        publish_md = gr.Markdown("")
                else:
                    gr.Markdown(LOCAL_PUBLISH_NOTE, elem_id="fviz-publish-note")

        # hidden twins of the inputs for the scripted API (units as a comma-separated string)
        with gr.Row(visible=False):
            api_model, api_layer, api_units, api_method = (gr.Textbox(), gr.Textbox(), gr.Textbox(), gr.Textbox())
            api_steps, api_size = gr.Number(), gr.Number()
            api_gallery = gr.Gallery(format="png")
            api_btn = gr.Button()
            autoload = gr.State(False)

        load_outputs = [model_info, layer_dd, classes_dd, units_box, summary, gallery, status_md]
        gr.on([load_btn.click, model_box.submit], load, inputs=[model_box], outputs=load_outputs,
                           api_name="layers", concurrency_id="load", concurrency_limit=2)
        layer_dd.change(pick_layer, [model_info, layer_dd], [classes_dd, units_box], api_visibility="private", queue=False)
        method_radio.change(pick_method, method_radio, [images_in, k_slider], api_visibility="private", queue=False)
        run_event = run_btn.click(
            run,
            inputs=[model_info, layer_dd, classes_dd, units_box, method_radio, steps_sl, size_sl, seed_nb, crops_sl, images_in, k_slider],
            outputs=[gallery, status_md, download_btn, last_run, curve_plot],
            api_visibility="private", concurrency_id="optimize", concurrency_limit=caps.concurrency,
            show_progress_on=[status_md],  # the bar sits on the status line; the gallery and curve stay visible
        )
        stop_btn.click(None, cancels=[run_event], api_visibility="private")
        api_btn.click(api_visualize, [api_model, api_layer, api_units, api_method, api_steps, api_size], api_gallery,
                      api_name="visualize", concurrency_id="optimize", concurrency_limit=caps.concurrency)
        if oauth:
            publish_btn.click(publish, [last_run], publish_md, api_visibility="private")
            demo.load(logged_in, None, publish_btn, api_visibility="private", queue=False)
        demo.load(from_query, None, [model_box, autoload], api_visibility="private", queue=False).then(
            lambda flag, model_id: load(model_id) if flag or (autoload and model_id == default_model) else tuple(gr.skip() for _ in load_outputs),
            [autoload, model_box], load_outputs, api_visibility="private",
        )
    demo.hf_fviz_caps = caps  # for tests and launch()
    return demo


def _method_label(method: str) -> str:
    return METHOD_LABELS.get(method) or IMAGE_METHODS.get(method, (None, method))[1]


def _curve(points: list[dict[str, float]]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(points or [], columns=["step", "objective"])
    return frame.astype({"step": "int64", "objective": "float64"})


MOCK_OAUTH_TOKEN = "mock-oauth-token-for-local-dev"  # what gradio's local stand-in for OAuth hands out
LOCAL_PUBLISH_NOTE = (
    "Publishing to a model card opens a pull request with your Hugging Face login, on the hosted Space. "
    "Here, download the zip and run `hf-fviz publish MODEL --from DIR --pr` (or log in with `hf auth login` "
    "and restart the app)."
)


def oauth_available() -> bool:
    """Sign-in works on a Space with `hf_oauth: true`; locally Gradio mocks it with the machine's
    own token (it needs one, and the hub to look it up)."""
    if os.environ.get("SPACE_ID"):
        return bool(os.environ.get("OAUTH_CLIENT_ID"))
    from huggingface_hub import constants, get_token

    return not constants.HF_HUB_OFFLINE and get_token() is not None


def publish_to_card(last: dict | None, oauth_token: Any) -> str:
    """Open a pull request on the model's card with the visitor's own login (never a push)."""
    if oauth_token is None or not getattr(oauth_token, "token", None):
        raise gr.Error("Sign in with Hugging Face first: the pull request is opened with your account.", title="Not signed in")
    if not last or not last.get("folder"):
        raise gr.Error("Run a visualization first; then publish it.", title="Nothing to publish")
    model_id = last["model_id"].partition("@")[0]
    if not _is_hub_id(model_id):
        raise gr.Error(f"{model_id} is not a hub model: only hub models have a card to publish to.", title="No card")
    token = oauth_token.token
    if token == MOCK_OAUTH_TOKEN and not os.environ.get("SPACE_ID"):
        token = None  # Gradio's local stand-in login: publish with this machine's own token instead
    result = hf_fviz.publish(model_id, last["folder"], create_pr=True, token=token)
    url = getattr(result, "url", None) or f"https://huggingface.co/{model_id}/discussions"
    return f"Pull request opened: [{url}]({url}). The model's owners decide whether to merge it."


def launch(demo: gr.Blocks | None = None, **kwargs: Any) -> Any:
    """Queue (with the caps' concurrency limit) and launch with the Space's theme and CSS."""
    demo = demo or build_demo()
    caps: Caps = getattr(demo, "hf_fviz_caps", None) or Caps.from_env()
    demo.queue(max_size=caps.queue_size, default_concurrency_limit=caps.concurrency)
    kwargs.setdefault("server_name", os.environ.get("GRADIO_SERVER_NAME") or None)
    port = os.environ.get("GRADIO_SERVER_PORT")
    kwargs.setdefault("server_port", int(port) if port else None)
    kwargs.setdefault("theme", gr.themes.Soft(primary_hue="indigo", secondary_hue="pink"))
    kwargs.setdefault("css", CSS)
    kwargs.setdefault("footer_links", ["api", "gradio"])
    if os.environ.get("WEBHOOK_SECRET"):
        # Auto-attach: also serve POST /webhooks/hf-fviz (hf_fviz.integrations; needs HF_TOKEN to open PRs).
        from hf_fviz.integrations import launch_with_webhooks

        kwargs.setdefault("share", False)  # WebhooksServer would open a share link when run locally
        return launch_with_webhooks(demo, **kwargs)
    return demo.launch(**kwargs)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    launch()
