"""The Space's settings and shared plumbing: caps (limits per visitor), constants, the work
folder, and `friendly` (every error becomes a one-line message in the page, never a traceback)."""

# No `from __future__ import annotations` in the Space's modules: Gradio reads the handlers' type
# hints (gr.OAuthToken, gr.Progress, ...) at run time.

import functools
import inspect
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gradio as gr

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
def message(err: BaseException) -> str:
    return " ".join(str(err).split())[:500] or type(err).__name__


def _as_gr_error(err: Exception) -> gr.Error:
    if isinstance(err, gr.Error):
        return err
    if isinstance(err, FvizError):
        return gr.Error(message(err), title="Cannot do that")
    log.exception("unexpected error in the hf_fviz Space")
    return gr.Error(f"Unexpected error ({type(err).__name__}): {message(err)}", title="Something went wrong")


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


# ---------------------------------------------------------------------------- work folder
def workdir() -> Path:
    """Where runs and card images go: under the system temp dir (Gradio serves files from there)."""
    root = Path(os.environ.get("HF_FVIZ_SPACE_DIR") or Path(tempfile.gettempdir()) / "hf_fviz_space")
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_run_dir(max_age_s: float = 3 * 3600) -> Path:
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

