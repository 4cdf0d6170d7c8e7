"""The output layer's shared pieces: one safe_name rule, the atomic writer, the staged folder,
and the Manifest record that every writer and reader goes through."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from hf_fviz.errors import AtlasError, InvalidSettings, PublishError
from hf_fviz.output import card, render, writer
from hf_fviz.output.manifest import Item, Manifest


def test_one_safe_name_rule_everywhere() -> None:
    assert card.safe_name is writer.safe_name and render.safe_name is writer.safe_name
    assert writer.safe_name("blocks.3.mlp.fc1") == "blocks.3.mlp.fc1"
    assert writer.safe_name("tabby cat/..") == "tabby_cat__"
    assert writer.safe_name("../..") == "___" and writer.safe_name("") == "_"
    a, b = "layer." * 20 + "a", "layer." * 20 + "b"  # same first 80 characters
    assert writer.safe_name(a) != writer.safe_name(b)
    assert len(writer.safe_name(a)) == 80 and writer.safe_name(a) == writer.safe_name(a)


def test_atomic_write_replaces_whole_files_and_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.txt"
    writer.atomic_write(path, b"one")
    os.chmod(path, 0o600)
    writer.atomic_write(path, b"two")
    assert path.read_bytes() == b"two" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.txt"]  # no temporary file left


def test_staged_folder_moves_in_on_success_and_leaves_nothing_on_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with writer.staged_folder(out) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (out / "a.txt").read_text() == "a"
    with pytest.raises(RuntimeError), writer.staged_folder(out) as tmp:
        (tmp / "b.txt").write_text("b")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not (out / "b.txt").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidSettings, match="not a folder"), writer.staged_folder(tmp_path / "file" / "o"):
        pass


def test_manifest_round_trip_keeps_keys_order_and_unknown_fields(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "u.png")
    written = Manifest(
        model="org/m", method="maco", layer="logits", settings={"steps": 2}, revision="r", library="timm",
        items=[Item(image="u.png", rgba="u.png", unit=3, label="cat", objective=1.5, extra={"facet": 0, "members": ["a", "b"]})],
        seconds=1.0, device="cpu", extra={"stopped_early": True},
    )
    path = written.save(tmp_path)
    data = json.loads(path.read_text())
    assert list(data) == ["hf_fviz_version", "model", "revision", "library", "method", "layer", "settings", "items",
                          "seconds", "device", "stopped_early"]
    assert data["items"] == [{"unit": 3, "label": "cat", "image": "u.png", "rgba": "u.png", "objective": 1.5, "facet": 0,
                              "members": ["a", "b"]}]
    read = Manifest.read(tmp_path)
    assert read.to_json() == data and read.items[0].members == 2 and read.items[0].caption == "unit 3 · cat · 2 images"
    data["items"][0]["image"] = "../u.png"
    path.write_text(json.dumps(data))
    with pytest.raises(PublishError, match="points outside the output folder"):
        Manifest.read(tmp_path)


def test_atlas_units_with_exemplars_keep_them_through_records_merge_and_grid(tmp_path: Path) -> None:
    """`atlas --exemplars`: each unit's exemplar JPEGs are written before its record, which lists
    them with its sanity score; the merge carries both into the manifest and draws each unit
    beside its exemplar crops (rows of 32 px tiles, a 14 px caption strip, 4 px gaps)."""
    import numpy as np
    import torch

    from hf_fviz.engine.exemplars import Exemplar
    from hf_fviz.output.atlas_store import AtlasSpec, claim_folder, merge, write_unit
    from tests.test_render import _vis

    rng = np.random.default_rng(0)
    spec = AtlasSpec("org/x", None, "timm", "logits", (0, 1), "maco", {"steps": 4, "size": 32, "crops": 2, "seed": 0, "lr": None})
    out = tmp_path / "atlas"
    out.mkdir()
    claim_folder(out, spec)
    for unit in spec.units:
        vis = _vis(unit, seed=unit)
        vis.extra.update(exemplar_source="samples", sanity={"score": 0.75, "flag": False}, exemplars=[
            Exemplar(j, f"img{j}.jpg", 5.0 - j, torch.from_numpy(rng.integers(0, 256, (3, 40, 40), dtype=np.uint8)), (0, 0, 20, 20))
            for j in range(2 + unit)])
        write_unit(out, vis, unit, shard=(0, 1), device="cpu", share=1)
    data = json.loads(merge(out, tile=32).read_text())
    for item in data["items"]:
        record = json.loads((out / "records" / f"{item['unit']}.json").read_text())
        assert item["exemplars"] == record["exemplars"] and item["sanity"] == {"score": 0.75, "flag": False}
        assert [e["activation"] for e in item["exemplars"]] == [5.0 - j for j in range(2 + item["unit"])]
        assert all((out / e["image"]).is_file() and (out / e["crop"]).is_file() for e in item["exemplars"])
    tile, pad, cap = 32, 4, 14
    grid = Image.open(out / "grid.png").convert("RGB")
    assert grid.size == (4 * (tile + pad) + 2 * pad, 2 * (tile + cap + pad) + pad)  # widest row: image + 3 crops
    for row, item in enumerate(data["items"]):
        for col, rel in enumerate([item["image"]] + [e["crop"] for e in item["exemplars"]]):
            x, y = pad + col * (tile + pad) + (pad if col else 0), pad + row * (tile + cap + pad)
            want = np.asarray(Image.open(out / rel).convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS))
            assert np.array_equal(np.asarray(grid.crop((x, y, x + tile, y + tile))), want), (row, col)
    (out / data["items"][1]["exemplars"][0]["crop"]).unlink()  # a lost exemplar: the unit is redone
    with pytest.raises(AtlasError, match="exemplar .* missing"):
        merge(out, tile=32)
    assert not (out / "records" / "1.json").exists() and (out / "records" / "0.json").exists()
