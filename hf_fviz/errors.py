"""Typed errors for user mistakes.

Every error a user can cause is an `FvizError`: the faces (CLI, Space) print its message as one
line and exit with code 2 (or show it as a `gr.Error`). Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FvizError(Exception):
    """Base class of every user-facing error; `str(err)` is the one line shown to the user."""

    exit_code = 2


class InvalidModelId(FvizError, ValueError):
    """The model id is not `org/name[@revision]`, a local directory, or `builtin:NAME`."""


class ModelNotFound(FvizError, LookupError):
    """No such repo on the hub, or (offline) not in the local cache."""


class GatedRepo(FvizError, PermissionError):
    """The repo is gated or private and no (valid) token was given."""


class NotAVisionModel(FvizError, ValueError):
    """The repo holds a model, but not an image model (text, audio, ...)."""


class UnsupportedArchitecture(FvizError, ValueError):
    """A vision model whose architecture hf_fviz has no adapter for."""


class UnsafeWeights(FvizError, PermissionError):
    """Only pickle weights are available and `allow_pickle` was not given."""


class RemoteCodeRequired(FvizError, PermissionError):
    """The repo needs `trust_remote_code` and it was not given."""


class CorruptWeights(FvizError, ValueError):
    """The weights file exists but cannot be read (truncated or damaged)."""


class UnknownLayer(FvizError, KeyError):
    """The layer name is not in the model's catalogue."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnitOutOfRange(FvizError, IndexError):
    """A unit index outside the layer's range."""


class UnknownClass(FvizError, KeyError):
    """A class name that matches none of the model's labels."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidSettings(FvizError, ValueError):
    """Steps, size, crops or another setting outside its allowed range."""


class ResourceLimit(InvalidSettings):
    """A run that would not fit in the free memory (the message gives the estimate and the limit)."""


class BadImageSet(FvizError, ValueError):
    """An image set that is empty, unreadable, or too small for the request."""


class OptimizationDiverged(FvizError, FloatingPointError):
    """The objective or the image became NaN or infinite during optimization."""


class PublishError(FvizError, RuntimeError):
    """Publishing to a model card failed for a reason the user can fix (no token, bad folder)."""


class MissingDependency(FvizError, ImportError):
    """An optional package a command needs is not installed (e.g. horama for `bench`)."""


class NoTextTower(FvizError, ValueError):
    """A text objective (`--text`) asked of a model without a text tower (a plain classifier)."""


class AtlasError(FvizError, RuntimeError):
    """An atlas folder that is incomplete, damaged, busy, or made with other settings."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' Did you mean: a, b, c?' for the closest choices, or '' when none is close."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not close:
        lowered = name.lower()
        close = [c for c in choices if lowered and lowered in c.lower()][:n]
    return f" Did you mean: {', '.join(close)}?" if close else ""
