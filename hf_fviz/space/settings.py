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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from hf_fviz.errors import FvizError
from hf_fviz.hub.vision_model import LOGITS  # noqa: F401  (the Space's modules take it from here)
from hf_fviz.settings import CPU_SPACE, GPU_SPACE, Profile

log = logging.getLogger("hf_fviz.space")


try:  # ZeroGPU: `spaces.GPU` is a no-op unless SPACES_ZERO_GPU is set
    import spaces

    def gpu(fn: Callable) -> Callable:
        return spaces.GPU(duration=120)(fn)

except ImportError:

    def gpu(fn: Callable) -> Callable:
        return fn


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


# Caps field -> the field of `hf_fviz.settings.Profile` it sets (the run settings' defaults and caps).
_PROFILE_FIELDS = {
    "default_steps": "default_steps", "max_steps": "max_steps", "default_size": "default_size", "max_size": "max_size",
    "min_size": "min_size", "crops": "default_crops", "max_crops": "max_crops", "max_units": "max_units",
}


@dataclass(frozen=True)
class Caps:
    """What one visitor may ask for, and how the server is shared between visitors.

    The run settings' defaults and caps are the `hf_fviz.settings` profile CPU_SPACE (GPU_SPACE
    on a GPU), as `profile`; the fields below override them, e.g. in tests or by env vars
    (`HF_FVIZ_SPACE_<FIELD>`, e.g. HF_FVIZ_SPACE_MAX_STEPS=512). The rest is the server's."""

    default_steps: int = CPU_SPACE.default_steps
    max_steps: int = CPU_SPACE.max_steps
    default_size: int = CPU_SPACE.default_size
    max_size: int = CPU_SPACE.max_size
    min_size: int = CPU_SPACE.min_size
    crops: int = CPU_SPACE.default_crops
    max_crops: int = CPU_SPACE.max_crops
    max_units: int = CPU_SPACE.max_units
    max_seconds: int = int(CPU_SPACE.max_seconds or 0)  # a run stops here at a step boundary and keeps its images (0: no limit)
    max_params: int = 100_000_000
    max_images: int = 32  # uploaded natural images for facets / dual
    concurrency: int = 1  # optimizations running at once
    queue_size: int = 16
    models_in_memory: int = 2
    previews: int = 8  # intermediate updates per run
    allow_local: int = 0  # 1: also load model folders on this server's disk (never on a public Space)

    def __post_init__(self) -> None:
        self.profile  # noqa: B018  (inconsistent caps fail here, with InvalidSettings, a ValueError)

    @functools.cached_property
    def profile(self) -> Profile:
        """The run settings' defaults and caps a request is checked against."""
        changes = {p: getattr(self, c) for c, p in _PROFILE_FIELDS.items()}
        return CPU_SPACE.replace(**changes, default_units=min(CPU_SPACE.default_units, self.max_units),
                                 max_seconds=self.max_seconds or None)

    @classmethod
    def from_env(cls, **overrides: int) -> "Caps":
        """Caps from HF_FVIZ_SPACE_* env vars; on a GPU the defaults are the GPU_SPACE profile's."""
        base = cls()
        if _cuda_available():
            base = cls(**{c: getattr(GPU_SPACE, p) for c, p in _PROFILE_FIELDS.items()}, max_params=1_000_000_000)
        values = {f: _env_int(f"HF_FVIZ_SPACE_{f.upper()}", getattr(base, f)) for f in cls.__dataclass_fields__}
        values.update(overrides)
        return cls(**values)


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

