"""Exemplars and hub-dataset sources through the command line: visualize --exemplars, exemplars,
facets/dual on a dataset ID, publish with exemplars; bad sources are one line, exit code 2."""

from __future__ import annotations

import json

import pytest

from hf_fviz import cli

TINY = ["--steps", "2", "--size", "64", "--crops", "2", "--device", "cpu"]


def test_visualize_with_exemplars_then_publish(hub_datasets, tmp_path, capsys):
    out = tmp_path / "vis"
    code = cli.main(["visualize", "org/tiny-resnet", "--layer", "layer2", "--units", "1,2", *TINY,
                     "--exemplars", "org/tiny-images", "--top", "3", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "sanity layer2:1" in printed and "units flagged" in printed
    items = json.loads((out / "manifest.json").read_text())["items"]
    for item in items:
        assert [e["source"] for e in item["exemplars"]] == ["org/tiny-images (train split)"] * 3
        assert all((out / e["image"]).is_file() and (out / e["crop"]).is_file() for e in item["exemplars"])
        assert 0.0 <= item["sanity"]["score"] <= 1.0
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")
    assert cli.main(["publish", "org/tiny-resnet", "--from", str(out), "--local-dir", str(clone)]) == 0
    card = (clone / "README.md").read_text()
    assert "### Natural exemplars and sanity check" in card and "org/tiny-images (train split)" in card
    strips = sorted(p.name for p in clone.rglob("*_exemplars.png"))
    assert len(strips) == 2 and all(name in card for name in strips)


def test_exemplars_command_on_a_split_with_classes(hub_datasets, tmp_path, capsys):
    out = tmp_path / "ex"
    assert cli.main(["exemplars", "org/tiny-resnet", "--classes", "cat,dog", "--images", "org/tiny-images", "--split", "test",
                     "--top", "2", "--batch-size", "4", "--out", str(out), "--device", "cpu"]) == 0
    data = json.loads((out / "manifest.json").read_text())
    assert data["images_seen"] == 6 and [i["label"] for i in data["items"]] == ["cat", "dog"]
    assert all(e["name"].startswith("org/tiny-images:test[") for i in data["items"] for e in i["exemplars"])
    assert "6 images of org/tiny-images (test split)" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["facets", "dual"])
def test_facets_and_dual_take_a_dataset_id(hub_datasets, tmp_path, command):
    target = ["--units", "1"] if command == "facets" else []
    out = tmp_path / command
    assert cli.main([command, "org/tiny-resnet", "--layer", "layer2", *target, "--images", "org/tiny-images", "--k", "2",
                     *TINY, "--out", str(out)]) == 0
    items = json.loads((out / "manifest.json").read_text())["items"]
    assert len(items) == 2 and all(m.startswith("org/tiny-images:train[") for m in items[0]["members"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["exemplars", "org/tiny-resnet", "--units", "1", "--images", "org/no-images"], "has no image column"),
        (["exemplars", "org/tiny-resnet", "--units", "1", "--images", "org/tiny-images", "--split", "dev"], "has no split 'dev'"),
        (["exemplars", "org/tiny-resnet", "--units", "1", "--images", "org/absent"], "not in the local hub cache"),
        (["visualize", "org/tiny-resnet", "--exemplars", "no-such-folder", *TINY], "no such file or folder: no-such-folder"),
        (["visualize", "org/tiny-resnet", "--exemplars", "samples", "--top", "100", *TINY], "--top must be in 1..64"),
        (["facets", "org/tiny-resnet", "--units", "1", "--images", "org/tiny-images", "--image-column", "caption", "--k", "2", *TINY],
         "is not an image column"),
    ],
)
def test_bad_sources_are_one_line(hub_datasets, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing half-written
