"""The output layer's shared pieces: one safe_name rule, the atomic writer, the staged folder,
and the Manifest record that every writer and reader goes through."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from hf_fviz.errors import InvalidSettings, PublishError
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
