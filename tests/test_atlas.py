"""Atlas: every unit of a layer, resumable, sharded (explicit --shard and torchrun), merged once.

One tiny model (`org/tiny-mobilenetv2`, layer `blocks.0`: 8 channels) at 4 steps, 64 px, 2 crops.
The torchrun test launches two CPU ranks, SIGKILLs rank 1 after its first unit is done (torchrun
then stops rank 0), relaunches the job, and checks that the merged manifest holds every unit exactly once and every PNG
decodes; the other tests damage folders by hand (truncated PNG without a record, stray temporary
file, a PNG changed after its record) and check that exactly the damaged units are redone.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_fviz.atlas import Shard, atlas, merge, parse_units, status
from hf_fviz.cli import main
from hf_fviz.errors import AtlasError, InvalidSettings, UnitOutOfRange

MODEL = "org/tiny-mobilenetv2"
LAYER = "blocks.0"
UNITS = list(range(8))  # the torchrun job: the whole layer
SOME = list(range(6))  # the in-process tests: units 0-5 (fewer, for speed)
FAST = dict(steps=4, size=64, crops=2, seed=0)
CLI_FAST = ["--steps", "4", "--size", "64", "--crops", "2", "--device", "cpu"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(hub_repos):
    from hf_fviz import load_model

    return load_model(MODEL, device="cpu")


@pytest.fixture(scope="module")
def done_dir(model, tmp_path_factory) -> Path:
    """A complete atlas of units 0-5 made in one process, 4 units per batch."""
    out = tmp_path_factory.mktemp("atlas") / "done"
    result = atlas(model, layer=LAYER, units="0-5", out_dir=out, batch=4, shard=(0, 1), **FAST)
    assert result.computed == SOME and result.skipped == [] and result.manifest == out / "manifest.json"
    return out


def manifest_units(out: Path) -> list[int]:
    return [item["unit"] for item in json.loads((out / "manifest.json").read_text())["items"]]


def check_complete(out: Path, expected: list[int] = SOME) -> dict:
    """Every unit exactly once in the manifest, every listed PNG whole, no temporary file left."""
    data = json.loads((out / "manifest.json").read_text())
    units = [item["unit"] for item in data["items"]]
    assert sorted(units) == expected and len(set(units)) == len(units)
    for item in data["items"]:
        for key, mode in (("image", "RGB"), ("rgba", "RGBA")):
            with Image.open(out / item[key]) as img:
                img.load()  # raises on a truncated or damaged file
                assert img.mode == mode and img.size == (64, 64)
    with Image.open(out / "grid.png") as img:
        img.load()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    return data


def pixels(out: Path, unit: int) -> np.ndarray:
    with Image.open(out / LAYER / f"{unit}.png") as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


# ---------------------------------------------------------------------------- pure parts
def test_units_and_shards_parse_and_partition() -> None:
    assert parse_units("all", 5) == [0, 1, 2, 3, 4]
    assert parse_units("3, 0-2,2", 5) == [3, 0, 1, 2]  # given order, each unit once
    assert parse_units([4, 4, 1], 5) == [4, 1]
    with pytest.raises(UnitOutOfRange, match="0..4"):
        parse_units("2-5", 5)
    with pytest.raises(InvalidSettings):
        parse_units("cats", 5)
    assert Shard.parse("1/4") == Shard(1, 4)
    for bad in ("4/4", "1-4", "0/0"):
        with pytest.raises(InvalidSettings):
            Shard.parse(bad)
    assert Shard.from_environment({"RANK": "1", "WORLD_SIZE": "3"}) == Shard(1, 3, from_env=True)
    assert Shard.from_environment({}) == Shard(0, 1)
    units = list(range(1000))
    parts = [Shard(i, 7).pick(units) for i in range(7)]
    assert sorted(u for part in parts for u in part) == units  # each unit in exactly one shard
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


# ---------------------------------------------------------------------------- one process
def test_complete_atlas_then_rerun_skips_everything(done_dir: Path, model) -> None:
    data = check_complete(done_dir)
    assert data["model"] == MODEL and data["layer"] == LAYER and data["shards"] == 1
    assert data["settings"]["steps"] == 4 and data["settings"]["size"] == 64 and data["method"] == "maco"
    assert data["items"][0] == {k: data["items"][0][k] for k in ("unit", "label", "image", "rgba", "objective")}
    assert data["items"][0]["label"] == f"{LAYER}:0" and data["grid_units"] == SOME
    before = {p: p.stat().st_mtime_ns for p in (done_dir / LAYER).iterdir()}
    again = atlas(model, layer=LAYER, units="0-5", out_dir=done_dir, batch=4, shard=(0, 1), **FAST)
    assert again.computed == [] and again.skipped == SOME and again.complete
    assert {p: p.stat().st_mtime_ns for p in (done_dir / LAYER).iterdir()} == before  # nothing rewritten


def test_shards_and_batching_do_not_change_results(done_dir: Path, model, tmp_path: Path) -> None:
    out = tmp_path / "sharded"
    first = atlas(model, layer=LAYER, units="0-5", out_dir=out, batch=8, shard="1/2", **FAST)
    assert first.units == [1, 3, 5] and first.manifest is None and not first.complete
    assert status(out).missing == (0, 2, 4)
    with pytest.raises(AtlasError, match="3 of 6 units done; missing 0, 2, 4"):
        merge(out)
    last = atlas(model, layer=LAYER, units="0-5", out_dir=out, batch=8, shard="0/2", **FAST)
    assert last.manifest is not None  # the shard that finds every unit done merges
    data = check_complete(out)
    assert data["shards"] == 2
    records = {u: json.loads((out / "records" / f"{u}.json").read_text()) for u in SOME}
    assert {u: r["shard"] for u, r in records.items()} == {u: [u % 2, 2] for u in SOME}
    for u in SOME:  # in a batch of 3 on shard u%2 vs in a batch of 4 or 2: the same image
        assert np.abs(pixels(out, u) - pixels(done_dir, u)).max() <= 1


def test_truncated_png_without_record_and_stray_tmp_are_redone(done_dir: Path, model, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    shutil.copytree(done_dir, out)
    (out / "manifest.json").unlink()
    # What a kill leaves: unit 2 with a half-written PNG and no record; unit 3 with no record and
    # a stray temporary file.
    (out / "records" / "2.json").unlink()
    png = out / LAYER / "2.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    (out / "records" / "3.json").unlink()
    (out / LAYER / ".3_rgba.png.tmp-4242").write_bytes(b"\x89PNG half")
    # And unit 5's image shortened after its record was written (size no longer matches).
    png5 = out / LAYER / "5.png"
    png5.write_bytes(png5.read_bytes()[:100])
    result = atlas(model, layer=LAYER, units="0-5", out_dir=out, batch=4, shard=(0, 1), **FAST)
    assert result.computed == [2, 3, 5] and result.manifest is not None
    check_complete(out)
    for u in (2, 3, 5):
        assert np.abs(pixels(out, u) - pixels(done_dir, u)).max() <= 1


def test_merge_finds_a_changed_png_and_the_rerun_redoes_only_it(done_dir: Path, model, tmp_path: Path) -> None:
    out = tmp_path / "damaged"
    shutil.copytree(done_dir, out)
    png = out / LAYER / "4_rgba.png"
    data = bytearray(png.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the hash (and the decoder) can tell
    png.write_bytes(bytes(data))
    with pytest.raises(AtlasError, match=r"1 unit\(s\) had damaged files.*: 4 \("):
        merge(out)
    assert status(out).missing == (4,)
    result = atlas(model, layer=LAYER, units="0-5", out_dir=out, batch=4, shard=(0, 1), **FAST)
    assert result.computed == [4]
    check_complete(out)


def test_refuses_other_settings_other_folders_and_a_busy_shard(done_dir: Path, model, tmp_path: Path) -> None:
    with pytest.raises(AtlasError, match="steps"):
        atlas(model, layer=LAYER, units="0-5", out_dir=done_dir, shard=(0, 1), **{**FAST, "steps": 5})
    with pytest.raises(AtlasError, match="units"):
        atlas(model, layer=LAYER, units="0-3", out_dir=done_dir, shard=(0, 1), **FAST)
    other = tmp_path / "not-an-atlas"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(AtlasError, match="not an atlas folder"):
        atlas(model, layer=LAYER, out_dir=other, **FAST)
    with pytest.raises(AtlasError, match="not an hf-fviz atlas"):
        merge(other)
    with pytest.raises(AtlasError, match="holds an atlas of"):
        merge(done_dir, model="org/tiny-resnet")
    busy = tmp_path / "busy"
    (busy / "shards").mkdir(parents=True)
    with open(busy / "shards" / "shard-1-of-2.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process runs shard 1/2
        with pytest.raises(AtlasError, match="already being run"):
            atlas(model, layer=LAYER, units="0-1", out_dir=busy, shard=(1, 2), **FAST)
    assert not (busy / "records").exists()


def test_cli_merge_and_one_line_errors(done_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["atlas", MODEL, "--out", str(done_dir), "--merge"]) == 0
    assert f"wrote {done_dir / 'manifest.json'}" in capsys.readouterr().out
    assert main(["atlas", MODEL, "--out", str(tmp_path / "nothing"), "--merge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-fviz: error:") and err.count("\n") == 1
    assert main(["atlas", MODEL, "--out", str(tmp_path / "x"), "--shard", "2/2"]) == 2
    assert "I/N" in capsys.readouterr().err


def test_publish_an_atlas_into_a_local_clone(done_dir: Path, tmp_path: Path) -> None:
    from hf_fviz.output.card import END, START, publish

    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "README.md").write_text("# Tiny\n")
    publish(MODEL, done_dir, local_dir=clone)
    readme = (clone / "README.md").read_text()
    assert START in readme and END in readme and LAYER in readme
    pngs = list((clone / "feature_visualizations").rglob("*.png"))
    assert any(p.name == "grid.png" for p in pngs) and len(pngs) == len(SOME) + 1


# ---------------------------------------------------------------------------- torchrun
def _torchrun(out: Path) -> subprocess.Popen:
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "hf_fviz.cli", "atlas", MODEL,
        "--layer", LAYER, "--units", "all", "--out", str(out), "--batch", "1", *CLI_FAST, "--steps", "12",
    ]  # 12 steps (the last --steps wins): a unit takes long enough for the kill to land mid-run
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _workers(parent: int) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes (its direct children, read from /proc)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != parent:
                continue
            env = (stat.parent / "environ").read_bytes().split(b"\0")
            found[int(next(e for e in env if e.startswith(b"RANK="))[5:])] = int(stat.parent.name)
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_torchrun_two_ranks_one_killed_mid_run_then_resumed(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = _torchrun(out)
    workers: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 180
        rank1_done: list[int] = []
        while proc.poll() is None and time.monotonic() < deadline:
            workers = workers if len(workers) == 2 else _workers(proc.pid)
            recs = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")] if (out / "records").is_dir() else []
            rank1_done = [r["unit"] for r in recs if r["shard"] == [1, 2]]
            if rank1_done and 1 in workers:
                os.kill(workers[1], signal.SIGKILL)  # rank 1 dies mid-run; torchrun stops rank 0
                break
            time.sleep(0.02)
        assert rank1_done, f"rank 1 finished no unit in time:\n{proc.stdout.read() if proc.poll() is not None else ''}"
        log, _ = proc.communicate(timeout=120)
        assert proc.returncode != 0, log  # torchrun reports the failed rank
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers.values():  # no rank may outlive the job (they would keep writing)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"worker {pid} outlived torchrun")
    before = {int(p.stem) for p in (out / "records").glob("*.json")}
    assert 1 <= len([u for u in before if u % 2 == 1]) < 4 and len(before) < len(UNITS), "the kill should land mid-run"
    assert not (out / "manifest.json").exists()

    again = _torchrun(out)
    log, _ = again.communicate(timeout=240)
    assert again.returncode == 0, log
    data = check_complete(out, UNITS)
    assert data["shards"] == 2
    summaries = re.findall(r"shard (\d)/2: 4 units \((\d+) computed, (\d+) already done\)", log)
    assert sorted(s[0] for s in summaries) == ["0", "1"], log  # both ranks ran
    assert sum(int(s[2]) for s in summaries) == len(before)  # finished units were not redone
    assert sum(int(s[1]) for s in summaries) == len(UNITS) - len(before)
    assert f"wrote {out / 'manifest.json'}" in log  # rank 0 merged
    records = [json.loads((out / "records" / f"{u}.json").read_text()) for u in UNITS]
    assert [r["shard"] for r in records] == [[u % 2, 2] for u in UNITS]
