"""Exemplars: the streamed top-k equals a brute-force ranking; crops, files, manifest, grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_fviz import load_model
from hf_fviz.exemplars import find_exemplars, unit_values
from hf_fviz.hub.images import load_images
from hf_fviz.output.exemplars import save_exemplars
from tests.fixtures_datasets import TRAIN


def _brute_force(model, layer: str, units: list[int], source: str, top: int):
    """Every image alone through the whole model (no early exit), the channel objective's reduction."""
    from hf_fviz.engine import objectives as obj

    images = load_images(source, model=model)
    info = {lay.name: lay for lay in model.layers()}
    rows = []
    for i in range(len(images)):
        x = model.normalize(images.float01([i]))
        with torch.no_grad():
            act = model.activations(x, layer)
        rows.append([float(obj.channel(layer, u)({layer: act}, info)[0]) for u in units])
    values = np.array(rows)  # (N, U)
    return {u: [(int(i), values[i, j]) for i in np.argsort(-values[:, j], kind="stable")[:top]] for j, u in enumerate(units)}


@pytest.mark.parametrize(("repo", "layer"), [("org/tiny-resnet", "layer2"), ("org/tiny-vit", "blocks.1")])
def test_top_k_matches_brute_force(hub_datasets, repo, layer):
    model = load_model(repo, device="cpu")
    units, top = [0, 3, 5, 11], 5
    seen = []
    found = find_exemplars(model, layer=layer, units=units, source="org/tiny-images", top=top, batch_size=7,
                           progress=lambda done, total, info: seen.append((done, info["images_per_s"])))
    expected = _brute_force(model, layer, units, "org/tiny-images", top)
    for u in units:
        got = [(e.index, e.activation) for e in found.top[u]]
        assert [i for i, _ in got] == [i for i, _ in expected[u]]
        np.testing.assert_allclose([a for _, a in got], [a for _, a in expected[u]], rtol=1e-4, atol=1e-5)
        assert all(e.name == f"org/tiny-images:train[{e.index}]" for e in found.top[u])
    assert found.images_seen == TRAIN and seen[-1][0] == TRAIN and seen[-1][1] > 0
    assert len(found.random) == 16 and len({e.index for e in found.random}) == 16


def test_crop_box_holds_the_most_active_position(hub_datasets):
    model = load_model("org/tiny-resnet", device="cpu")
    info = model.layer("layer1")
    found = find_exemplars(model, layer="layer1", units=[2], source="org/tiny-images", top=3)
    h, w = model.input_size
    for ex in found.top[2]:
        left, top, right, bottom = ex.box
        assert 0 <= left < right <= w and 0 <= top < bottom <= h and right - left == bottom - top < w
        x = model.normalize(ex.pixels[None].float() / 255)
        with torch.no_grad():
            _, pos = unit_values(model.activations(x, "layer1"), info, torch.tensor([2]))
        row, col = divmod(int(pos[0, 0]), info.shape[2])
        cy, cx = (row + 0.5) * h / info.shape[1], (col + 0.5) * w / info.shape[2]
        assert left <= cx <= right and top <= cy <= bottom


def test_save_writes_manifest_files_and_grid(hub_datasets, tmp_path):
    model = load_model("org/tiny-resnet", device="cpu")
    found = find_exemplars(model, layer="logits", units=[1, 2], source="org/tiny-images", top=2, max_images=10)
    path = save_exemplars(found, tmp_path / "ex", model=model)
    data = json.loads(open(path).read())
    assert data["kind"] == "exemplars" and data["images_seen"] == 10 and data["source"] == "org/tiny-images (train split)"
    first = data["items"][0]["exemplars"][0]
    assert first["image"] == "logits/1_exemplars/0.jpg" and "crop" not in first  # logits: no position, no crop
    assert (tmp_path / "ex" / first["image"]).is_file() and (tmp_path / "ex" / "grid.png").is_file()
    assert data["items"][0]["exemplars"][0]["activation"] >= data["items"][0]["exemplars"][1]["activation"]
