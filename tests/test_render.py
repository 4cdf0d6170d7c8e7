"""PNG/RGBA/grid rendering, the output folder contract, atomic saves and the CLI `visualize`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hf_fviz import render
from hf_fviz.cli import main
from hf_fviz.results import Visualization, alpha_from_transparency
from hf_fviz.settings import Settings


def _vis(unit: int | None = 3, layer: str = "logits", label: str = "tabby cat", seed: int = 0) -> Visualization:
    rng = np.random.default_rng(seed)
    t = rng.random((32, 32)).astype(np.float32)
    return Visualization(
        image=rng.random((32, 32, 3)).astype(np.float32) * 0.5 + 0.2, alpha=alpha_from_transparency(t), transparency=t,
        history=np.linspace(0, 1, 4), objective=1.5, unit=unit, label=label, layer=layer, method="maco",
        settings=Settings(steps=4, size=32, crops=2), model_id="org/x",
    )


def test_display_clip_and_alpha():
    img = np.zeros((20, 20, 3), np.float32)
    img[0, 0] = 100.0  # one outlier is clipped by the 99th percentile
    img[10:] = 1.0
    out = render.display_image(img)
    assert out.min() == 0 and out.max() == 1 and out[0, 0, 0] == 1 and out[19, 19, 0] == 1
    t = np.arange(100, dtype=np.float32).reshape(10, 10)
    a = alpha_from_transparency(t)
    assert a.max() == 1.0 and (a == 1.0).sum() >= 20  # top 20 % opaque
    assert a.min() == 0.0
    corner = np.zeros((10, 10), dtype=np.float32)  # a neuron's map: zero on 91 % of the canvas
    corner[:3, :3] = np.arange(1, 10).reshape(3, 3)
    a = alpha_from_transparency(corner)
    assert (a[3:] == 0).all() and (a[:, 3:] == 0).all()  # transparent outside its corner
    np.testing.assert_allclose(a[:3, :3], np.minimum(corner[:3, :3], np.percentile(np.arange(1, 10), 80)) / np.percentile(np.arange(1, 10), 80))


def test_png_rgba_and_grid():
    v = _vis()
    assert render.rgb_image(v).mode == "RGB" and render.rgb_image(v).size == (32, 32)
    rgba = render.rgba_image(v)
    assert rgba.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(rgba)[..., 3], render.to_uint8(v.alpha))
    g = render.grid([_vis(u, seed=u) for u in range(5)], tile=40)
    assert g.size[0] > 3 * 40 and g.size[1] > 40
    # captions are drawn under tiles: the caption strip holds dark pixels
    strip = np.asarray(g.convert("L"))[4 + 40 : 4 + 40 + 14, 4 : 4 + 40]
    assert strip.min() < 100


def test_safe_names_cannot_escape():
    for bad in ("..", ".", "../../etc", "a/b", "a\\b", "/abs", ".hidden"):
        name = render.safe_name(bad)
        assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert render.safe_name("blocks.3.mlp.fc1") == "blocks.3.mlp.fc1"


def test_save_writes_contract_and_is_atomic(tmp_path, monkeypatch):
    vis = [_vis(3), _vis(7, label="espresso")]
    path = render.save(vis, tmp_path / "out")
    data = json.loads(path.read_text())
    assert set(data) >= {"hf_fviz_version", "model", "revision", "library", "method", "layer", "settings", "items", "seconds", "device"}
    assert data["settings"]["steps"] == 4 and data["layer"] == "logits"
    assert [i["unit"] for i in data["items"]] == [3, 7]
    for item in data["items"]:
        assert Image.open(tmp_path / "out" / item["image"]).mode == "RGB"
        assert Image.open(tmp_path / "out" / item["rgba"]).mode == "RGBA"
    assert (tmp_path / "out" / "grid.png").exists()
    escaped = render.save([_vis(1, layer="../evil")], tmp_path / "out2")
    assert not (tmp_path / "evil").exists() and escaped.parent.exists()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(render, "grid", boom)
    with pytest.raises(RuntimeError):
        render.save(vis, tmp_path / "out3")
    assert not (tmp_path / "out3").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out3")]  # temp folder removed


def test_cli_visualize_writes_manifest(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["visualize", "org/tiny-resnet", "--classes", "tabby cat,1", "--steps", "3", "--size", "32", "--crops", "1",
               "--device", "cpu", "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "manifest.json").read_text())
    assert data["model"] == "org/tiny-resnet" and data["library"] == "timm" and data["method"] == "maco"
    assert data["layer"] == "logits" and data["device"] == "cpu" and data["revision"]
    assert {"steps": 3, "size": 32, "crops": 1, "seed": 0, "lr": 0.3}.items() <= data["settings"].items()
    assert [(i["unit"], i["label"]) for i in data["items"]] == [(4, "tabby cat"), (1, "dog")]
    for item in data["items"]:
        assert item["image"] == f"logits/{item['unit']}.png" and (out / item["rgba"]).exists()
        assert isinstance(item["objective"], float)
    assert (out / "grid.png").exists()


def test_cli_bad_class_exit_2_with_suggestion(tmp_path, capsys):
    rc = main(["visualize", "org/tiny-resnet", "--classes", "tabby kat", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "tabby cat" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("args,needle", [(["--steps", "0"], "steps must be an integer in 1..10000"),
                                         (["--size", "5000"], "size must be an integer in 32..2048"),
                                         (["--crops", "-1"], "crops"), (["--units", "3,x"], "--units takes indices")])
def test_cli_invalid_settings(args, needle, capsys):
    assert main(["visualize", "org/tiny-resnet", *args]) == 2
    assert needle in capsys.readouterr().err


def test_cli_spectrum(tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "a.png")
    assert main(["spectrum", str(tmp_path / "imgs"), "--out", str(tmp_path / "s.npy"), "--crops", "4", "--size", "32"]) == 0
    assert np.load(tmp_path / "s.npy").shape == (3, 32, 17)
    out = tmp_path / "v"
    assert main(["visualize", "org/tiny-resnet", "--units", "0", "--steps", "2", "--size", "32", "--crops", "1",
                 "--spectrum", str(tmp_path / "s.npy"), "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["settings"]["spectrum"].endswith("s.npy")
    assert main(["spectrum", str(tmp_path / "nothing"), "--out", str(tmp_path / "t.npy")]) == 2
