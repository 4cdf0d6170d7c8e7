"""The one settings object (hf_fviz/settings.py), its profiles, the keyword API built on it, and
`hub.as_vision_model`, the one place a model id becomes a model."""

from __future__ import annotations

import inspect

import pytest
import torch

import hf_fviz
from hf_fviz import api
from hf_fviz.errors import InvalidSettings
from hf_fviz.hub import as_vision_model
from hf_fviz.settings import (
    CPU_JOB,
    CPU_SPACE,
    GPU_SPACE,
    DualSettings,
    FacetSettings,
    Profile,
    Settings,
)


@pytest.mark.parametrize("fn,cls", [(api.visualize, Settings), (api.dual_objective, DualSettings),
                                    (api.multifaceted, FacetSettings)])
def test_keyword_defaults_are_the_settings_defaults(fn, cls):
    """The keyword API declares no default of its own: each one is the settings object's."""
    defaults = cls()
    params = inspect.signature(fn).parameters
    shared = [name for name in cls.field_names() if name in params]
    assert len(shared) >= 10
    for name in shared:
        assert params[name].default == getattr(defaults, name), name


def test_check_names_the_range_and_a_replaced_copy_is_checked_again():
    s = Settings(steps=5).check()
    assert s.check() is s
    with pytest.raises(InvalidSettings, match=r"^steps must be an integer in 1\.\.10000, got 0$"):
        s.replace(steps=0).check()
    with pytest.raises(InvalidSettings, match="unknown recipe 'x'"):
        DualSettings(recipe="x").check()
    with pytest.raises(InvalidSettings, match="top must be a fraction"):
        FacetSettings(top=0).check()
    with pytest.raises(InvalidSettings, match=r"^k must be an integer in 1\.\.256, got 0$"):
        FacetSettings(k=0).check()
    with pytest.raises(InvalidSettings, match="seed must be an integer"):
        DualSettings(seed=-1).check()


def test_resolved_fills_each_methods_lr_and_the_manifest_leaves_run_knobs_out():
    assert [Settings(method=m).resolved().lr for m in ("maco", "fourier", "pixel")] == [0.3, 1.0, 0.05]
    assert DualSettings(recipe="paper").resolved().lr == 0.5 and DualSettings().resolved().lr == 0.3
    assert FacetSettings(param="pixel").resolved().lr == 0.05 and FacetSettings().resolved().lr == 0.2
    assert Settings(lr=0.7).resolved().lr == 0.7
    m = Settings(batch_size=2, max_seconds=5.0).resolved().to_manifest()
    assert m == {"steps": 160, "size": 384, "crops": 4, "seed": 0, "lr": 0.3, "crop_scale": [0.9, 0.4], "noise": 0.05,
                 "spectrum": None}
    assert set(DualSettings().to_manifest()) == {"recipe", "k", "steps", "size", "crops", "seed", "lr", "channels", "nearest",
                                                 "distance_weight", "activation_weight", "crop_scale", "noise", "spectrum"}


def test_profiles_give_defaults_and_refuse_above_their_caps():
    s = CPU_SPACE.settings()
    assert (s.steps, s.size, s.crops, s.max_seconds) == (48, 224, 4, 300)
    assert CPU_SPACE.check(s.replace(steps=256), units=8).steps == 256
    with pytest.raises(InvalidSettings, match=r"^steps must be a whole number in 1\.\.256 on this Space, got 300$"):
        CPU_SPACE.check(s.replace(steps=300))
    with pytest.raises(InvalidSettings, match=r"^units must be a whole number in 1\.\.8 on this Space, got 9$"):
        CPU_SPACE.check(s, units=9)
    # the caps first: a Space visitor reads the Space's range (tests/test_bad_input.py, Space cases), then the global check
    with pytest.raises(InvalidSettings, match=r"^size must be a whole number in 64\.\.512 on this Space, got 4096$"):
        CPU_SPACE.check(s.replace(size=4096))
    with pytest.raises(InvalidSettings, match=r"lr must be a positive number"):
        CPU_SPACE.check(s.replace(lr=-1.0))
    with pytest.raises(InvalidSettings, match="for automatic jobs"):
        CPU_JOB.check(CPU_JOB.settings(crops=9))
    assert GPU_SPACE.ranges()["steps"] == (1, 1024) and CPU_JOB.settings().steps == 64
    with pytest.raises(InvalidSettings, match="inconsistent profile"):
        Profile(name="bad", where="here", default_steps=10, max_steps=5, default_size=64, max_size=128, max_crops=4, max_units=2)


def test_as_vision_model_is_the_one_door():
    model = as_vision_model("org/tiny-resnet", device="cpu")
    assert isinstance(model, hf_fviz.VisionModel) and model.id == "org/tiny-resnet"
    assert as_vision_model(model) is model and model.device == torch.device("cpu")
    with pytest.raises(InvalidSettings, match="cannot visualize a Linear"):
        as_vision_model(torch.nn.Linear(2, 2))


def test_the_api_checks_before_it_loads_anything():
    """A bad setting is refused before the model id is even resolved (an unknown id would fail otherwise)."""
    with pytest.raises(InvalidSettings, match="steps must be an integer"):
        hf_fviz.visualize("org/does-not-exist", steps=0)
    with pytest.raises(InvalidSettings, match="unknown parametrization 'x'"):
        hf_fviz.multifaceted("org/does-not-exist", unit=0, images="samples", param="x")


def test_readme_settings_table_is_the_settings_module():
    """The README lists every default and cap once, in one table: it must say what settings.py says."""
    from pathlib import Path

    from hf_fviz import settings as S

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| `")}
    base = rows["`Settings` (CLI, Python API)"]
    for name, default in (("steps", S.DEFAULT_STEPS), ("size", S.DEFAULT_SIZE), ("crops", S.DEFAULT_CROPS)):
        lo, hi = S.LIMITS[name]
        assert f"{default} ({lo}..{hi})" in base, name
    assert f"first {S.DEFAULT_UNITS}" in base
    assert f"| {S.DEFAULT_STEPS} | {S.IMAGESET_SIZE} |" in rows["`DualSettings` / `FacetSettings`"]
    for const in ("CPU_SPACE", "GPU_SPACE", "CPU_JOB"):
        profile = getattr(S, const)
        row = next(line for key, line in rows.items() if key.startswith(f"`{const}`"))
        for text in (f"{profile.default_steps} (max {profile.max_steps})", f"{profile.default_size} ({profile.min_size}..{profile.max_size})",
                     f"{profile.default_crops} ({profile.min_crops}..{profile.max_crops})", f"max {profile.max_units}"):
            assert text in row, (profile.name, text)
    assert sum("| `CPU_SPACE`" in line for line in readme.splitlines()) == 1  # listed once
