"""Each example script runs end to end on the tiny test models (offline, a few steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAST = ["--steps", "2", "--size", "32"]


def _run(script: str, *args: str, cwd: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")  # conftest's offline hub cache is inherited
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_every_example_is_tested():
    assert {p.name for p in EXAMPLES.glob("*.py")} == {"visualize_classes.py", "vit_mlp_channels.py", "layer_grid.py"}


def test_visualize_classes(tmp_path):
    out = _run("visualize_classes.py", "org/tiny-resnet", "--classes", "tabby cat,dog", *FAST, "--out", "o", cwd=tmp_path)
    assert "tabby cat" in out
    data = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert [i["unit"] for i in data["items"]] == [4, 1]


@pytest.mark.parametrize("model", ["hf-internal/tiny-vit", "org/tiny-vit"], ids=["transformers", "timm"])
def test_vit_mlp_channels(tmp_path, model):
    out = _run("vit_mlp_channels.py", model, "--channels", "0,1", *FAST, "--out", "o", cwd=tmp_path)
    data = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert len(data["items"]) == 2 and data["layer"] in out


def test_layer_grid(tmp_path):
    out = _run("layer_grid.py", "org/tiny-resnet", "--layer", "layer3", "--n", "3", *FAST, "--out", "g.png", cwd=tmp_path)
    assert "3 channels" in out and (tmp_path / "g.png").stat().st_size > 0
