"""`hf-fviz bench`: smoke runs on tiny settings (benchmarks are not tests) plus the small pieces
whose failure would silently falsify the figures (ranks, class spread, horama offline patch)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_fviz import bench
from hf_fviz.cli import main
from hf_fviz.errors import InvalidSettings

SPEED_KEYS = {"case", "hf_fviz_s_per_step", "horama_s_per_step", "ratio", "hf_fviz_peak_mb", "horama_peak_mb"}


def test_bench_speed_smoke_prints_json_with_the_contract_keys(capsys):
    code = main(["bench", "speed", "--cases", "a", "--steps", "2", "--rounds", "1", "--size", "64", "--crops", "2",
                 "--model", "org/tiny-mobilenetv2", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and len(rows) == 1
    row = rows[0]
    assert SPEED_KEYS <= set(row)
    assert row["case"] == "a"
    assert row["hf_fviz_s_per_step"] > 0 and row["horama_s_per_step"] > 0
    assert row["ratio"] == pytest.approx(row["horama_s_per_step"] / row["hf_fviz_s_per_step"])
    # two measured steps per side, warm-ups dropped
    assert len(row["samples"]["hf_fviz"]) == 2 and len(row["samples"]["other"]) == 2
    # peak memory from child processes: positive MiB figures for both libraries
    assert row["hf_fviz_peak_mb"] > 0 and row["horama_peak_mb"] > 0


def test_bench_speed_overhead_case_compares_with_the_bare_model(capsys):
    code = main(["bench", "speed", "--cases", "e", "--steps", "2", "--rounds", "1", "--size", "64", "--crops", "2",
                 "--model", "org/tiny-resnet", "--no-memory", "--speedups", "channels_last"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| e |" in out and "bare" in out and "channels_last" in out


def test_paired_run_times_the_two_sides_apart_step_by_step(monkeypatch):
    """The overhead cases alternate one hf_fviz step and one bare step; each side's laps leave
    the other's time out (a bare step made to take 2 s shows up in its own laps only)."""
    import time

    import hf_fviz
    from hf_fviz.bench import cases

    calls: list[int] = []

    def slow_bare(vm, case, *, crops):
        def step():
            calls.append(crops)
            time.sleep(2.0)
        return step

    monkeypatch.setattr(cases, "bare_step", slow_bare)
    vm = hf_fviz.load_model("org/tiny-resnet", device="cpu")
    case = cases.speed_cases("org/tiny-resnet")["e"]
    ours, bare = cases.paired_run(vm, case, steps=2, size=64, crops=2, seed=0)
    assert calls == [2, 2] and len(ours.steps(0)) == 2 and len(bare.steps(0)) == 2
    assert min(bare.steps(0)) >= 2.0 and ours.steps(1)[0] < 2.0
    assert max(bare.cpu_steps(0)) < 0.1  # sleeping costs no CPU time


def test_bench_speed_rejects_unknown_cases_in_one_line(capsys):
    assert main(["bench", "speed", "--cases", "a,z", "--no-memory"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown case(s) z" in err[0]


def test_bench_quality_smoke_two_classes_two_steps(capsys, tmp_path):
    code = main(["bench", "quality", "--classes", "2", "--steps", "2", "--size", "96", "--crops", "2",
                 "--horama-size", "128", "--horama-crops", "2", "--json", "--out", str(tmp_path), "--no-imagesets",
                 "--insertion-slices", "4"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["judge"] == "builtin:efficientnet-lite0" and report["model"] == "builtin:mobilenetv2"
    assert report["classes"] == bench.pick_classes(2) and report["steps"] == 2
    assert [m["method"] for m in report["methods"]] == ["maco", "fourier", "pixel", "horama"]
    for m in report["methods"]:
        assert 0.0 <= m["top1"] <= m["top5"] <= 1.0
        assert all(1 <= r <= 1000 for r in m["judge_ranks"] + m["self_ranks"])
        assert len(m["judge_top1"]) == 2
    assert sorted(p.name for p in (tmp_path / "horama").iterdir()) == sorted(f"{c}.png" for c in report["classes"])
    for m in report["methods"]:  # the insertion test of the transparency maps (none for horama)
        rows = m["insertion"]
        assert len(rows) == (0 if m["method"] == "horama" else 2)
        assert all(set(r) == {"alpha_auc", "random_auc", "ratio", "alpha_auc_all_views", "ratio_all_views"} for r in rows)
    assert report["imagesets"] is None


def test_quality_report_includes_the_image_set_quality_table(monkeypatch):
    import hf_fviz.bench.imagesets as imagesets
    from hf_fviz.bench.quality import _imagesets_quality

    class Fake:
        def table(self) -> str:
            return "facet distinctness 0.42"

        def to_dict(self) -> dict:
            return {"facets": [{"distance": 0.42}]}

    seen = {}

    def fake_quality(*, model, judge, steps=64, log=None):
        seen.update(model=model, judge=judge, steps=steps)
        return Fake()

    monkeypatch.setattr(imagesets, "quality_imagesets", fake_quality)
    got = _imagesets_quality("M", "J", bench.QualitySettings(steps=3), lambda _m: None)
    assert seen == {"model": "M", "judge": "J", "steps": 3}
    assert got["result"] == {"facets": [{"distance": 0.42}]}
    report = bench.QualityReport("m", "j", [1], ["goldfish"], 3, [], got)
    assert "facet distinctness 0.42" in bench.quality_table(report)


def test_image_set_quality_figures_are_measured_as_documented():
    """The real `quality_imagesets` on tiny models: every row is there, the "maco seeds"
    distinctness and the dual-objective figures match an independent recomputation, and the
    table prints the measured numbers."""
    import torch.nn.functional as F

    import hf_fviz
    from hf_fviz.api import dual_objective
    from hf_fviz.bench.imagesets import quality_imagesets
    from hf_fviz.engine.imagesets import penultimate_layer
    from hf_fviz.settings import RECIPES

    gen = hf_fviz.load_model("org/tiny-resnet", device="cpu")
    judge = hf_fviz.load_model("org/tiny-mobilenetv2", device="cpu")
    colours = torch.eye(3).repeat_interleave(3, dim=0)  # three clear groups: reddish, greenish, bluish
    images = 0.7 * colours[:, :, None, None] + 0.3 * torch.rand(9, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    small = dict(steps=2, size=32, crops=1)
    lines: list[str] = []
    report = quality_imagesets(model=gen, judge=judge, images=images, classes=("cat",), k=2, dual_layer="layer3", dual_k=3,
                               log=lines.append, **small)
    assert [(r["class"], r["method"]) for r in report.facets] == [("cat", "facets (maco)"), ("cat", "facets (pixel)"), ("cat", "maco seeds")]
    assert [r["recipe"] for r in report.dual] == list(RECIPES)

    # "maco seeds": k plain runs with seeds 0..k-1, judged by cosine distance of pooled penultimate features
    seeds = [hf_fviz.visualize(gen, classes=["cat"], seed=s, **small)[0] for s in range(2)]
    x = torch.stack([torch.from_numpy(v.image).permute(2, 0, 1) for v in seeds]).float()
    x = F.interpolate(x, size=judge.input_size, mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        feats = judge.activations(judge.normalize(x), penultimate_layer(judge).name).double().mean(dim=(2, 3))
    distance = 1 - float(F.cosine_similarity(feats[0], feats[1], dim=0))
    row = report.facets[2]
    assert row["distance"] == pytest.approx(distance, rel=1e-4, abs=1e-6) and distance > 0
    assert row["objective"] == pytest.approx(np.mean([v.objective for v in seeds]), rel=1e-5)
    assert all(0 < r["distance"] <= 2 for r in report.facets)

    # dual: nearest-cluster accuracy and distances, recomputed from the items' own distances
    for row in report.dual:
        vis = dual_objective(gen, layer="layer3", images=images, k=3, recipe=row["recipe"], **small)
        own = [v.extra["distances"][v.extra["cluster"]] for v in vis]
        hits = [min(range(3), key=lambda c, v=v: v.extra["distances"][c]) == v.extra["cluster"] for v in vis]
        assert row["accuracy"] == pytest.approx(np.mean(hits)) and row["k"] == 3 and row["layer"] == "layer3"
        assert row["own_distance"] == pytest.approx(np.mean(own), rel=1e-5)
        assert row["start_distance"] == pytest.approx(np.mean([v.extra["init_distance"] for v in vis]), rel=1e-5)

    table = report.table()
    assert lines[-1] == table
    for r in report.facets:
        assert f"{r['distance']:>9.4f} {r['objective']:>10.2f}" in table
    for r in report.dual:
        assert f"{r['recipe']:<8} layer3       3 {r['accuracy']:>9.3f} {r['own_distance']:>9.2f}" in table
    assert report.to_dict()["settings"]["steps"] == 2


def test_ranks_are_one_based_and_count_strictly_higher_scores():
    logits = torch.tensor([[0.1, 3.0, 2.0, 5.0], [9.0, 1.0, 1.0, 0.0]])
    assert bench.ranks(logits, [3, 0]) == [1, 1]
    assert bench.ranks(logits, [2, 1]) == [3, 2]  # a tie with another class does not push the target down


def test_geometric_mean_rank_tells_near_misses_from_wild_ones():
    assert bench.geometric_mean([1, 1, 1]) == pytest.approx(1.0)
    assert bench.geometric_mean([1, 4]) == pytest.approx(2.0)
    assert bench.geometric_mean([2, 2]) < bench.geometric_mean([1, 200])  # same top-1 rate, different transfer
    row = bench.MethodQuality("maco", "s", 0.5, 0.5, 1.0, [1, 4], [1, 1], ["a", "b"], 1.0)
    table = bench.quality_table(bench.QualityReport("m", "j", [1, 2], ["x", "y"], 3, [row]))
    assert "| maco | s | 50% | 50% | 2.00 | 100% | 1 |" in table


def test_classes_are_spread_over_imagenet():
    twenty = bench.pick_classes(20)
    assert len(set(twenty)) == 20 and min(twenty) < 50 and max(twenty) > 950
    five = bench.pick_classes(5)
    assert set(five) <= set(twenty) and max(five) - min(five) > 500
    assert len(set(bench.pick_classes(40))) == 40
    with pytest.raises(InvalidSettings):
        bench.pick_classes(0)


def test_horama_runs_offline_on_our_spectrum_and_is_restored():
    import horama.maco_fv as maco_fv

    before = maco_fv.MACO_SPECTRUM_FILENAME
    with bench.horama_offline():
        magnitude, phase = maco_fv.init_maco_buffer((64, 64))
    assert maco_fv.MACO_SPECTRUM_FILENAME == before
    assert magnitude.shape == (3, 64, 33) and phase.shape == (3, 64, 33)
    assert torch.isfinite(magnitude).all() and magnitude[:, 0, 0].min() > magnitude[:, 32, 16].max()


def test_horama_objective_reads_the_layer_and_removes_its_hook():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    objective, remove = bench.horama_objective(conv, "0", 2)
    x = torch.randn(2, 3, 8, 8)
    assert objective(x).item() == pytest.approx(conv[0](x)[:, 2].mean().item())
    remove()
    assert not conv[0]._forward_hooks


def test_horama_images_go_through_our_display_step():
    """De-normalized per channel, then one stretch over all channels between the 1st and 99th
    percentiles (recomputed here in float64), clipped, rounded to uint8."""
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(3, 16, 16, generator=g) * torch.tensor([0.3, 0.6, 0.9]).view(3, 1, 1)  # unequal channel ranges
    rgb[:, 0, :3] = torch.tensor([-2.0, 3.0, 0.5]).view(3, 1)  # outliers the percentile clip must ignore
    image = (rgb - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)  # horama's model space
    out = bench.rgb_uint8_from_model_space(image, mean, std)
    x = rgb.permute(1, 2, 0).double().numpy()
    lo, hi = np.percentile(x, [1, 99])
    expected = np.floor(np.clip((x - lo) / (hi - lo), 0, 1) * 255 + 0.5)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(np.int64) - expected).max() <= 1 and (out == expected).mean() > 0.99
    assert (out[0, :3, 0] == 0).all() and (out[0, :3, 1] == 255).all()  # outliers clipped, not stretched to


def test_quality_table_reports_insertion_means_over_classes():
    rows = [{"alpha_auc": 0.6, "random_auc": 0.3, "ratio": 2.0, "alpha_auc_all_views": 0.6, "ratio_all_views": 2.0},
            {"alpha_auc": 0.4, "random_auc": 0.4, "ratio": 1.0, "alpha_auc_all_views": 0.5, "ratio_all_views": 1.25}]
    m = bench.MethodQuality("maco", "s", 1.0, 1.0, 1.0, [1, 1], [1, 1], ["a", "b"], 1.0, insertion=rows)
    assert m.insertion_summary() == pytest.approx(1.5) and m.insertion_summary("ratio_all_views") == pytest.approx(1.625)
    table = bench.quality_table(bench.QualityReport("m", "j", [1, 2], ["x", "y"], 3, [m]))
    assert "| maco | 0.500 | 0.350 | 1.50 | 1.62 |" in table


def test_quality_sanity_rows_are_the_library_check_against_the_top_exemplars():
    """`bench quality --sanity SOURCE`: each class's row is `hf_fviz.engine.sanity`'s score and flag
    against that class's top exemplars in the source (recomputed here), and the table prints them."""
    import hf_fviz
    from hf_fviz.bench.quality import _sanity_rows
    from hf_fviz.exemplars import find_exemplars
    from hf_fviz.engine.sanity import sanity_check

    model = hf_fviz.load_model("org/tiny-mobilenetv2", device="cpu")
    vis = hf_fviz.visualize(model, classes=[1, 2], steps=2, size=32, crops=1)
    rows = _sanity_rows(model, vis, "samples", 3, lambda _m: None)
    found = find_exemplars(model, layer="logits", units=[1, 2], source="samples", top=3)
    for v, row in zip(vis, rows):
        expected = sanity_check(model, v.image, "logits", found.top[v.unit], found.random)
        assert row["score"] == pytest.approx(expected.score, abs=1e-4) and row["flag"] == expected.flag
        assert row["exemplars"] == [e.name for e in found.top[v.unit]]
    m = bench.MethodQuality("maco", "s", 1.0, 1.0, 1.0, [1, 1], [1, 1], ["a", "b"], 1.0,
                            sanity=[{"score": 0.9, "flag": False, "exemplars": ["x.jpg", "y.jpg", "z.jpg"]},
                                    {"score": 0.3, "flag": True, "exemplars": ["z.jpg", "w.jpg"]}])
    table = bench.quality_table(bench.QualityReport("m", "j", [1, 2], ["goldfish", "shark"], 3, [m]))
    assert "mean score 0.60, 1 of 2 flagged" in table
    assert "| 1 goldfish | 0.90 | no | x.jpg, y.jpg |" in table and "| 2 shark | 0.30 | yes | z.jpg, w.jpg |" in table


def test_python_m_hf_fviz_bench_is_the_bench_command():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "hf_fviz.bench", "speed", "--cases", "a,z", "--no-memory"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "unknown case(s) z" in err[0]


def test_bench_chunks_reports_the_automatic_and_calibrated_choices_against_one_unit_and_the_best(monkeypatch):
    """A tiny run of `bench chunks`: every chunk size timed, the default choice (the CPU's crops
    rule) and a fresh calibration made for 4 units, and their ratios computed from the medians."""
    from hf_fviz.bench import chunks
    from hf_fviz.engine import chunking

    monkeypatch.setitem(chunks.SETTINGS, "ours", (48, 2))
    report = chunks.run_chunks(model="org/tiny-resnet", chunks=(1, 2, 4), steps=3, rounds=1, settings=("ours",),
                               units=(0, 1, 2, 3))
    med = {r.chunk: r.s_per_unit_step for r in report.rows}
    assert sorted(med) == [1, 2, 4] and all(t > 0 for t in med.values())
    assert report.auto["ours"][4] == chunking.cpu_chunk(units=4, crops=2, largest=4) == 4
    assert report.auto_vs_one["ours"][4] == pytest.approx(med[4] / med[1])
    assert report.auto_vs_best["ours"][4] == pytest.approx(med[4] / min(med.values()))
    choice = report.measured["ours"][4]
    assert choice in med
    assert report.measured_vs_one["ours"][4] == pytest.approx(med[choice] / med[1])
    assert report.measured_vs_best["ours"][4] == pytest.approx(med[choice] / min(med.values()))
    calibration = report.calibration_s["ours"][4]
    assert calibration > 0
    assert report.calibration_share["ours"][4] == pytest.approx(calibration / (4 * chunks.DEFAULT_STEPS * med[choice]))
    table = chunks.chunks_table(report)
    assert "ours, 4 units: 4 per chunk" in table and "automatic for 4 units" in table
    assert f"Calibrated choice: ours, 4 units: {choice} per chunk" in table and "calibrated for 4 units" in table
    assert f"calibration {calibration:.0f} s" in table
