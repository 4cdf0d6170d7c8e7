"""`hf-fviz atlas --exemplars SOURCE` (issue 17): every unit's record lists its top natural images
(the same as a brute-force `find_exemplars` over the source) and its sanity check; the merged
manifest carries both and grid.png shows each unit beside its exemplars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from hf_fviz.cli import main

MODEL, LAYER, UNITS = "org/tiny-mobilenetv2", "blocks.0", [0, 1, 2]
ARGS = ["--layer", LAYER, "--units", "0-2", "--batch", "2", "--steps", "2", "--size", "32", "--crops", "1", "--device", "cpu"]


def test_atlas_records_exemplars_and_draws_them_beside_each_unit(hub_repos, tmp_path: Path, capsys) -> None:
    from hf_fviz import load_model, visualize
    from hf_fviz.exemplars import find_exemplars
    from hf_fviz.engine.sanity import sanity_check

    out = tmp_path / "atlas"
    assert main(["atlas", MODEL, "--out", str(out), *ARGS, "--exemplars", "samples", "--top", "3"]) == 0
    model = load_model(MODEL, device="cpu")
    found = find_exemplars(model, layer=LAYER, units=UNITS, source="samples", top=3, max_images=2000)  # recomputed
    vis = {v.unit: v for v in visualize(model, layer=LAYER, units=UNITS, steps=2, size=32, crops=1, seed=0)}  # batch-invariant
    manifest = json.loads((out / "manifest.json").read_text())
    assert [item["unit"] for item in manifest["items"]] == UNITS
    for item in manifest["items"]:
        record = json.loads((out / "records" / f"{item['unit']}.json").read_text())
        expected = found.top[item["unit"]]
        assert item["exemplars"] == record["exemplars"] and item["sanity"] == record["sanity"]
        assert [(e["name"], e["index"]) for e in item["exemplars"]] == [(e.name, e.index) for e in expected]
        assert [e["activation"] for e in item["exemplars"]] == [round(e.activation, 6) for e in expected]
        assert all(e["source"] == "samples" and e["crop"] and (out / e["image"]).is_file() and (out / e["crop"]).is_file()
                   for e in item["exemplars"])  # a conv layer: a crop around the most active position too
        check = sanity_check(model, vis[item["unit"]].image, LAYER, expected, found.random)
        assert item["sanity"] == check.to_dict()
    # grid.png (output.grid.tile_grid): one row per unit, its image then its 3 exemplar crops
    tile, pad, cap = 32, 4, 14  # output.atlas_store: 32 px tiles, a 14 px caption strip, 4 px gaps
    with Image.open(out / "grid.png") as grid:
        grid = grid.convert("RGB")
    assert grid.size == (4 * (tile + pad) + 2 * pad, 3 * (tile + cap + pad) + pad)
    for row, item in enumerate(manifest["items"]):
        for col, rel in enumerate([item["image"]] + [e["crop"] for e in item["exemplars"]]):
            x, y = pad + col * (tile + pad) + (pad if col else 0), pad + row * (tile + cap + pad)
            with Image.open(out / rel) as img:
                want = np.asarray(img.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS))
            assert np.array_equal(np.asarray(grid.crop((x, y, x + tile, y + tile))), want), (row, col)
    # a resumed run must ask the same exemplars: without them it is refused in one line
    capsys.readouterr()
    assert main(["atlas", MODEL, "--out", str(out), *ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "request" in err
    assert main(["atlas", MODEL, "--out", str(tmp_path / "bad"), *ARGS, "--exemplars", "samples", "--top", "0"]) == 2
    assert "--top must be in" in capsys.readouterr().err and not (tmp_path / "bad").exists()
