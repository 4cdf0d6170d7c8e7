"""THE settings of a run: every default and every limit of hf_fviz, defined here once, checked by
one `check()`.

    >>> from hf_fviz.settings import Settings, CPU_SPACE
    >>> s = Settings(method="fourier", steps=64).check()      # InvalidSettings names what to fix
    >>> s.replace(size=224).resolved().lr                        # 1.0: the method's default lr
    >>> CPU_SPACE.settings(steps=32)                             # a profile's defaults ...
    >>> CPU_SPACE.check(s, units=3)                              # ... and its caps

`Settings` fixes a `visualize` run (MACO, Fourier, pixel); `DualSettings` and `FacetSettings`
(both `ImageSetSettings`) the two image-set methods. Each is a frozen, keyword-only dataclass:
the faces (CLI, Space, webhook, Trainer callback, atlas) build one, call `check()` once, and
hand it to the engine, which never validates again. A `Profile` is a named set of defaults and
caps for a place that runs visualizations for other people (`CPU_SPACE`, `GPU_SPACE`, `CPU_JOB`).

Why these defaults: tuned for a CPU (2 cores: six ImageNet classes of MobileNetV2 in a few
minutes): a 384 px canvas, 4 views per step (the whole canvas plus 3 random crops shrinking from
90 % to 40 % of the canvas), 160 steps, NAdam lr 0.3 (MACO), 1.0 (Fourier) or 0.05 (pixel). The
papers' presets are much heavier (xplique: 512 px, 32 crops, 256 steps; Horama: 1280 px, 6
crops, 1000 steps); pass them on a GPU for more detail. Image-set methods start from natural
images at a 256 px canvas (docs/ALGORITHMS.md).

Imports nothing of hf_fviz but `errors` (the shared vocabulary; see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar, TypeVar

from .errors import InvalidSettings

# ---------------------------------------------------------------------------- defaults and limits
METHODS = ("maco", "fourier", "pixel")
"""The parametrizations of `visualize` (engine/param.py)."""
DEFAULT_LR = {"maco": 0.3, "fourier": 1.0, "pixel": 0.05}
"""NAdam learning rate per method (MACO: see `engine.param.MacoImage` for why 0.3)."""
DEFAULT_STEPS = 160
DEFAULT_SIZE = 384
DEFAULT_CROPS = 4
DEFAULT_CROP_SCALE = (0.9, 0.4)
DEFAULT_NOISE = 0.05
DEFAULT_UNITS = 4
"""Units visualized when none are named: the first four of the layer."""
MAX_SEED = 2**63 - 1
LIMITS = {"steps": (1, 10000), "size": (32, 2048), "crops": (0, 64), "k": (1, 256), "nearest": (1, 10000),
          "spectrum_crops": (1, 100000), "spectrum_size": (16, 2048)}
"""Inclusive ranges of the integer settings, anywhere (a `Profile` narrows them)."""

MAX_TOP = 64
"""Most natural exemplars shown per unit (`--top`)."""
SPECTRUM_CROPS, SPECTRUM_SIZE = 2000, 512
"""`hf-fviz spectrum`: random crops averaged, and the spectrum's side (resized to the canvas at run time)."""
DEFAULT_TOP = 8
"""Natural exemplars kept per unit when a caller names none (`--top`)."""
DEFAULT_SOURCE_IMAGES = 2000
"""Images read from an exemplar source at most, by default (`--max-images`)."""

IMAGESET_SIZE = 256
"""Canvas of the image-set methods (they start from natural images at the model input size)."""
RECIPES = ("maco", "paper")
"""Dual-objective recipes (engine/dual.py)."""
FACET_PARAMS = ("maco", "pixel")
"""Multifaceted start parametrizations (engine/facets.py)."""
IMAGESET_LR = {("dual", "maco"): 0.3, ("dual", "paper"): 0.5, ("facets", "maco"): 0.2, ("facets", "pixel"): 0.05}
"""Learning rate per image-set method and recipe/param (measured: `hf-fviz bench quality`)."""

S = TypeVar("S", bound="Settings")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int(name: str, value: Any, lo: int, hi: int) -> None:
    """Raise `InvalidSettings` unless `value` is an integer in lo..hi (the one message for it)."""
    if not _is_int(value) or not lo <= value <= hi:
        raise InvalidSettings(f"{name} must be an integer in {lo}..{hi}, got {value!r}")


# ---------------------------------------------------------------------------- settings
@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything that fixes a `visualize` run's result (with the model, its revision and the
    targets), plus how it is run (`batch_size`, `max_seconds`), which the manifest leaves out.

    `lr=None` means the method's default (`resolved()` fills it in); `batch_size=None` means
    chosen for this machine (`engine.chunking`); `max_seconds=None` means no time limit."""

    method: str = "maco"
    steps: int = DEFAULT_STEPS
    size: int = DEFAULT_SIZE
    crops: int = DEFAULT_CROPS
    seed: int = 0
    lr: float | None = None
    crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE
    noise: float = DEFAULT_NOISE
    spectrum: str | None = None
    batch_size: int | None = None
    max_seconds: float | None = None

    methods: ClassVar[tuple[str, ...]] = METHODS
    not_in_manifest: ClassVar[tuple[str, ...]] = ("method", "batch_size", "max_seconds")

    def __post_init__(self) -> None:
        if isinstance(self.crop_scale, list):
            object.__setattr__(self, "crop_scale", tuple(self.crop_scale))
        if isinstance(self.spectrum, os.PathLike):
            object.__setattr__(self, "spectrum", os.fspath(self.spectrum))

    # -- checks
    def check(self: S) -> S:
        """Raise `InvalidSettings` (one line naming the allowed range) for a value outside it;
        returns self, so `Settings(...).check()` reads as one step. Runs once per object: a face
        that checks early (before loading a model) and the API that checks again pay once."""
        if not self.__dict__.get("_checked"):
            self._check()
            object.__setattr__(self, "_checked", True)
        return self

    def _check(self) -> None:
        self._check_method()
        for name in ("steps", "size", "crops"):
            check_int(name, getattr(self, name), *LIMITS[name])
        self._check_common()

    def _check_method(self) -> None:
        if self.method not in self.methods:
            raise InvalidSettings(f"unknown method '{self.method}': use one of {', '.join(self.methods)}")

    def _check_common(self) -> None:
        lr, seed = self.lr, self.seed
        if lr is not None and not (_is_number(lr) and lr > 0):
            raise InvalidSettings(f"lr must be a positive number, got {lr!r}")
        if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
            raise InvalidSettings(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
        if self.batch_size is not None and not (_is_int(self.batch_size) and self.batch_size >= 1):
            raise InvalidSettings(f"batch size must be a positive integer, got {self.batch_size!r}")
        if self.max_seconds is not None and not (_is_number(self.max_seconds) and self.max_seconds > 0):
            raise InvalidSettings(f"max seconds must be a positive number, got {self.max_seconds!r}")
        if self.spectrum is not None and not os.path.isfile(self.spectrum):
            raise InvalidSettings(
                f"spectrum file {self.spectrum} does not exist (build one with `hf-fviz spectrum IMAGE_DIR --out FILE`)"
            )

    # -- derived values
    def default_lr(self) -> float:
        """The learning rate used when `lr` is None."""
        return DEFAULT_LR[self.method]

    def resolved(self: S) -> S:
        """These settings with `lr` filled in and numbers as floats: what a result records."""
        lr = float(self.lr) if self.lr is not None else self.default_lr()
        return self.replace(lr=lr, noise=float(self.noise), crop_scale=tuple(float(c) for c in self.crop_scale))

    def replace(self: S, **changes: Any) -> S:
        """A copy with `changes` (unchecked: call `check()` on the result where it comes from a user)."""
        return replace(self, **changes)

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's `settings` object: the fields that fix the result, `crop_scale` as a list."""
        out = {k: v for k, v in asdict(self).items() if k not in self.not_in_manifest}
        out["crop_scale"] = list(self.crop_scale)
        return out

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True, kw_only=True)
class ImageSetSettings(Settings):
    """What both image-set methods add: `k` clusters (one image each) and the `nearest` members
    of each cluster that make its start image."""

    size: int = IMAGESET_SIZE
    k: int = 4
    nearest: int = 10

    def _check(self) -> None:
        self._check_method()
        for name in ("k", "steps", "size", "crops", "nearest"):
            check_int(name, getattr(self, name), *LIMITS[name])
        self._check_common()


@dataclass(frozen=True, kw_only=True)
class DualSettings(ImageSetSettings):
    """A dual-objective run (The Mind's Eye; engine/dual.py): `channels` top channels per cluster,
    the two terms' weights, and the `recipe` ("maco" or the paper's "paper")."""

    method: str = "dual"
    recipe: str = "maco"
    channels: int = 50
    distance_weight: float = 2.0
    activation_weight: float = 1.0
    crop_scale: tuple[float, float] = (1.0, 0.85)

    methods: ClassVar[tuple[str, ...]] = ("dual",)

    def _check_method(self) -> None:
        super()._check_method()
        if self.recipe not in RECIPES:
            raise InvalidSettings(f"unknown recipe '{self.recipe}': use one of {', '.join(RECIPES)}")

    def _check(self) -> None:
        super()._check()
        if not _is_int(self.channels) or self.channels < 1:
            raise InvalidSettings(f"channels must be a positive integer, got {self.channels!r}")
        for name in ("distance_weight", "activation_weight"):
            w = getattr(self, name)
            if not (_is_number(w) and w >= 0):
                raise InvalidSettings(f"{name} must be a number >= 0, got {w!r}")

    def default_lr(self) -> float:
        return IMAGESET_LR[("dual", self.recipe)]

    def resolved(self: S) -> S:
        out = super().resolved()
        return out.replace(distance_weight=float(out.distance_weight), activation_weight=float(out.activation_weight))  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True)
class FacetSettings(ImageSetSettings):
    """A multifaceted run (Nguyen et al.; engine/facets.py): the `top` images kept (a fraction
    <= 1 or a count), the start `param` and the centre bias."""

    method: str = "facets"
    param: str = "maco"
    top: float = 0.5
    nearest: int = 15
    center_bias: bool = True
    crop_scale: tuple[float, float] = (0.9, 0.5)

    methods: ClassVar[tuple[str, ...]] = ("facets",)

    def _check_method(self) -> None:
        super()._check_method()
        if self.param not in FACET_PARAMS:
            raise InvalidSettings(f"unknown parametrization '{self.param}': use one of {', '.join(FACET_PARAMS)}")

    def _check(self) -> None:
        super()._check()
        if not _is_number(self.top) or self.top <= 0:
            raise InvalidSettings(f"top must be a fraction in (0, 1] or a count >= 1, got {self.top!r}")

    def default_lr(self) -> float:
        return IMAGESET_LR[("facets", self.param)]

    def resolved(self: S) -> S:
        out = super().resolved()
        return out.replace(top=float(out.top), center_bias=bool(out.center_bias))  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- profiles
@dataclass(frozen=True, kw_only=True)
class Profile:
    """Defaults and caps for a place that runs visualizations for others (a Space, a webhook
    job, a Trainer callback): what a request gets when it names nothing, and the most it may
    ask for. Caps narrow `LIMITS`; `where` ends the refusal ("on this Space")."""

    name: str
    where: str
    default_steps: int
    max_steps: int
    default_size: int
    min_size: int = LIMITS["size"][0]
    max_size: int
    default_crops: int = DEFAULT_CROPS
    min_crops: int = LIMITS["crops"][0]
    max_crops: int
    default_units: int = DEFAULT_UNITS
    max_units: int
    max_seed: int = MAX_SEED
    max_seconds: float | None = None
    """A run stops here at a step boundary and keeps its images (None: no limit)."""
    default_top: int = 4
    min_top: int = 2
    """Natural exemplars per unit: the sanity check compares with two at least."""
    max_top: int = 8
    max_source_images: int = 500
    """Images read from an exemplar source per run."""

    def __post_init__(self) -> None:
        ok = (
            1 <= self.default_steps <= self.max_steps <= LIMITS["steps"][1]
            and LIMITS["size"][0] <= self.min_size <= self.default_size <= self.max_size <= LIMITS["size"][1]
            and 0 <= self.min_crops <= self.default_crops <= self.max_crops <= LIMITS["crops"][1]
            and 1 <= self.default_units <= self.max_units
            and 1 <= self.min_top <= self.default_top <= self.max_top <= MAX_TOP and self.max_source_images >= 1
        )
        if not ok:
            raise InvalidSettings(f"inconsistent profile {self.name}: {self}")

    def settings(self, **changes: Any) -> Settings:
        """`Settings` with this profile's defaults, then `changes` (unchecked)."""
        base = Settings(steps=self.default_steps, size=self.default_size, crops=self.default_crops,
                        max_seconds=self.max_seconds)
        return base.replace(**changes)

    def ranges(self) -> dict[str, tuple[int, int]]:
        """The allowed range of each capped setting (what a form's sliders show)."""
        return {
            "steps": (LIMITS["steps"][0], self.max_steps),
            "size": (self.min_size, self.max_size),
            "crops": (self.min_crops, self.max_crops),
            "units": (1, self.max_units),
            "seed": (0, self.max_seed),
        }

    def check(self, settings: S, *, units: int | None = None) -> S:
        """The caps, then `settings.check()`: InvalidSettings "steps must be a whole number in
        1..256 on this Space, got 300". Returns `settings`."""
        values = {"steps": settings.steps, "size": settings.size, "crops": settings.crops, "seed": settings.seed,
                  "units": units}
        for name, (lo, hi) in self.ranges().items():  # the caps first: their range is the one that helps here
            value = values[name]
            if _is_number(value) and not lo <= value <= hi:
                raise InvalidSettings(f"{name} must be a whole number in {lo}..{hi} {self.where}, got {value!r}")
        return settings.check()

    def replace(self, **changes: Any) -> Profile:
        return replace(self, **changes)


CPU_SPACE = Profile(
    name="cpu-space", where="on this Space",
    default_steps=48,  # README.md, Timings: fits 30 s (MobileNetV2) / 90 s (ResNet-50) on 2 vCPUs
    max_steps=256, default_size=224, min_size=64, max_size=512, default_crops=4, min_crops=1, max_crops=16,
    max_units=8, max_seed=2**31 - 1, max_seconds=300,
)
"""An interactive Space on 2 CPU cores (each visitor waits for the run)."""
GPU_SPACE = CPU_SPACE.replace(
    name="gpu-space", default_steps=256, max_steps=1024, default_size=384, max_size=1024, default_crops=16, max_crops=32,
    max_units=32,
)
"""The same Space on a GPU: more steps, a larger canvas, more crops and units."""
CPU_JOB = Profile(
    name="cpu-job", where="for automatic jobs",
    default_steps=64, max_steps=256, default_size=224, max_size=512, default_crops=4, max_crops=8,
    default_units=4, max_units=16,
)
"""Automatic jobs on a CPU (the hub webhook's and the Trainer callback's defaults and caps):
a few units that finish in minutes, in the background."""
PROFILES = {p.name: p for p in (CPU_SPACE, GPU_SPACE, CPU_JOB)}


__all__ = [
    "Settings", "ImageSetSettings", "DualSettings", "FacetSettings", "Profile", "CPU_SPACE", "GPU_SPACE", "CPU_JOB",
    "PROFILES", "METHODS", "RECIPES", "FACET_PARAMS", "LIMITS", "MAX_SEED", "DEFAULT_LR", "IMAGESET_LR",
    "DEFAULT_STEPS", "DEFAULT_SIZE", "DEFAULT_CROPS", "DEFAULT_CROP_SCALE", "DEFAULT_NOISE", "DEFAULT_UNITS",
    "IMAGESET_SIZE", "MAX_TOP", "DEFAULT_TOP", "DEFAULT_SOURCE_IMAGES", "SPECTRUM_CROPS", "SPECTRUM_SIZE", "check_int",
]
