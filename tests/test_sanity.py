"""Sanity check per unit: a visualization scores above an image unrelated to the unit."""

from __future__ import annotations

import numpy as np
import pytest

from hf_fviz import load_model
from hf_fviz.api import visualize
from hf_fviz.exemplars import find_exemplars, with_exemplars
from hf_fviz.sanity import path_layers, sanity_check


@pytest.fixture(scope="module")
def mobilenet():
    return load_model("builtin:mobilenetv2", device="cpu")


def test_path_is_spread_over_the_layers_before_the_target(mobilenet):
    layers = path_layers(mobilenet, "logits")
    names = [lay.name for lay in mobilenet.layers()]
    assert len(layers) == 6 and layers[-1] == "bn2" and layers[0] == names[0]
    assert path_layers(mobilenet, "blocks.1") == ["bn1", "blocks.0.0", "blocks.0", "blocks.1.0", "blocks.1.1"]  # stem first


def test_score_separates_a_visualization_from_unrelated_images(mobilenet):
    """'tabby cat': the samples' top image is the tabby cat photo; the unrelated images are the
    three samples that excite the class least. The visualization is closer to the exemplars along
    the path than each of them, and not flagged."""
    import torch

    unit = mobilenet.class_index("tabby cat")
    found = find_exemplars(mobilenet, layer="logits", units=[unit], source="samples", top=4, random_images=15, max_images=None)
    assert found.top[unit][0].name == "skimage:chelsea"
    vis = visualize(mobilenet, classes=[unit], steps=40, size=160, crops=3)[0]
    own = sanity_check(mobilenet, vis.image, "logits", found.top[unit], found.random)
    assert not own.flag and own.score > 0.9 and len(own.per_layer) == len(own.layers) == 6
    pool = sorted(found.random, key=lambda r: r.index)
    x = mobilenet.normalize(torch.stack([r.pixels for r in pool]).float() / 255)
    with torch.no_grad():
        logit = mobilenet.activations(x, "logits")[:, unit]
    for i in logit.argsort()[:3].tolist():
        other = sanity_check(mobilenet, pool[i].pixels.permute(1, 2, 0).numpy() / 255.0, "logits", found.top[unit], found.random)
        assert own.visualization > other.visualization and own.score >= other.score


def test_with_exemplars_fills_the_manifest_fields(mobilenet, tmp_path):
    import json

    from hf_fviz.output.render import save

    vis = visualize(mobilenet, layer="blocks.2", units=[0, 5], steps=2, size=96, crops=2)
    with_exemplars(mobilenet, vis, "samples", top=3)
    path = save(vis, tmp_path / "out", model=mobilenet)
    items = json.loads(path.read_text())["items"]
    for item in items:
        assert len(item["exemplars"]) == 3 and item["exemplars"][0]["source"] == "samples"
        assert (tmp_path / "out" / item["exemplars"][0]["crop"]).is_file()
        assert set(item["sanity"]) >= {"score", "flag", "visualization", "random", "exemplars", "layers", "per_layer"}
        acts = [e["activation"] for e in item["exemplars"]]
        assert acts == sorted(acts, reverse=True)
    from PIL import Image

    with Image.open(tmp_path / "out" / "grid.png") as grid:  # one row per unit: the visualization and 3 exemplars
        assert grid.width > 3.5 * 224 and grid.height < 2 * (224 + 40)
    assert np.isfinite(items[0]["sanity"]["score"])
