"""Image sets, clustering, dual-objective and multifaceted visualization (issue 4).

Real-model tests use builtin:mobilenetv2 (pretrained ImageNet) on the bundled sample photos with
tiny settings; the token-layer test uses the random tiny ViT of the test hub cache.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hf_fviz
from hf_fviz import cli
from hf_fviz.engine import imagesets as I
from hf_fviz.output import imagesets as imageset_output
from hf_fviz.engine.dual import PaperLoopSettings
from hf_fviz.errors import BadImageSet, InvalidSettings
from hf_fviz.hub.images import SAMPLE_IMAGES, ImageSet, load_images


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared, busy 2-core machine two threads oversubscribe and run
    these small batches several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mobilenet():
    return hf_fviz.load_model("builtin:mobilenetv2", device="cpu")


@pytest.fixture(scope="module")
def samples(mobilenet) -> ImageSet:
    return load_images("samples", model=mobilenet)


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (what a decompression bomb looks like to Image.open)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def _write_photos(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        arr = (rng.random((40 + i, 60, 3)) * 255).astype(np.uint8)
        p = folder / f"img{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------- loading
def test_samples_load_at_model_size(samples):
    assert len(samples) == len(SAMPLE_IMAGES) == 15
    assert samples.pixels.shape == (15, 3, 224, 224) and samples.pixels.dtype == torch.uint8
    assert samples.names[0] == "skimage:astronaut" and "sklearn:china.jpg" in samples.names
    assert set(samples.info["licences"]) == set(samples.names)
    x = samples.float01([0])
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.std()) > 0.1  # a real photo, not blank


def test_folder_files_and_resize(tmp_path):
    paths = _write_photos(tmp_path / "set", 3)
    (tmp_path / "set" / "notes.txt").write_text("not an image, ignored by suffix")
    (tmp_path / "set" / ".hidden.png").write_text("hidden, ignored")
    rgba = np.zeros((30, 50, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # fully transparent red -> composited on white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "set" / "z_rgba.png")
    folder = load_images(tmp_path / "set", size=32)
    assert len(folder) == 4 and folder.size == (32, 32)
    assert folder.names[-1].endswith("z_rgba.png") and int(folder.pixels[-1].min()) == 255
    files = load_images([paths[0], paths[2]], size=(24, 40))
    assert files.pixels.shape == (2, 3, 24, 40) and files.names == [str(paths[0]), str(paths[2])]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("empty", "no image files"),
        ("text", "not an image"),
        ("truncated", "truncated"),
        ("bomb", "too large"),
        ("huge", "over the limit"),
        ("missing", "no such file"),
    ],
)
def test_bad_images_one_clear_line(tmp_path, case, expected):
    folder = tmp_path / case
    folder.mkdir()
    target = folder
    if case == "text":
        _write_photos(folder, 2)
        target = folder / "fake.png"
        target.write_text("hello, I am text")
    elif case == "truncated":
        target = folder / "cut.jpg"
        Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)).save(target, quality=95)
        target.write_bytes(target.read_bytes()[:600])
    elif case == "bomb":  # above PIL's own decompression-bomb limit
        target = folder / "bomb.png"
        target.write_bytes(_png_header(20000, 20000))
    elif case == "huge":  # below PIL's limit, above ours
        target = folder / "huge.png"
        target.write_bytes(_png_header(9000, 9000))
    elif case == "missing":
        target = folder / "nope"
    with pytest.raises(BadImageSet) as err:
        load_images(folder if case in ("empty", "text") else target, size=32)
    msg = str(err.value)
    assert expected in msg and "\n" not in msg
    if case != "empty":
        assert target.name in msg  # names the offending file


def test_set_too_small_for_k(tmp_path, mobilenet):
    _write_photos(tmp_path / "three", 3)
    with pytest.raises(BadImageSet, match="at least 5 images"):
        hf_fviz.dual_objective(mobilenet, layer="blocks.2", images=tmp_path / "three", k=5, steps=1, size=64, crops=1)
    with pytest.raises(InvalidSettings, match="k must be"):
        hf_fviz.multifaceted(mobilenet, unit=1, images=tmp_path / "three", k=0, steps=1)


def test_cli_bad_input_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = cli.main(["facets", "org/tiny-vit", "--classes", "cat", "--images", str(tmp_path / "empty"), "--k", "2", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "no image files" in err
    _write_photos(tmp_path / "two", 2)
    code = cli.main(["dual", "org/tiny-vit", "--layer", "blocks.1", "--images", str(tmp_path / "two"), "--k", "3", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "at least 3 images" in err
    (tmp_path / "two" / "bad.png").write_text("text")
    code = cli.main(["dual", "org/tiny-vit", "--layer", "blocks.1", "--images", str(tmp_path / "two"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "bad.png" in err and err.count("\n") == 0


# ---------------------------------------------------------------------------- clustering
def _blobs(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, 6, generator=g) * 6
    return torch.cat([c + torch.randn(25, 6, generator=g) for c in centres])


def test_kmeans_matches_sklearn():
    from sklearn.cluster import KMeans as SkKMeans

    x = _blobs()
    ours = I.kmeans(x, 4, seed=0)
    ref = SkKMeans(4, n_init=8, random_state=0).fit(x.numpy())
    assert ours.inertia == pytest.approx(float(ref.inertia_), rel=1e-6)
    # the same partition up to label names
    pairs = {(int(a), int(b)) for a, b in zip(ours.labels, ref.labels_)}
    assert len(pairs) == 4
    assert I.kmeans(x, 4, seed=0).labels.tolist() == ours.labels.tolist()  # seeded: reproducible


def test_kmeans_never_leaves_a_cluster_empty():
    x = torch.tensor([[0.0, 0.0]] * 5 + [[1.0, 1.0]])  # two distinct points, three clusters
    km = I.kmeans(x, 3, seed=1)
    assert sorted(torch.bincount(km.labels, minlength=3).tolist())[0] >= 1


def test_pca_matches_sklearn():
    from sklearn.decomposition import PCA as SkPCA

    x = _blobs(1)
    ours = I.fit_pca(x, 3)
    ref = SkPCA(3).fit(x.numpy())
    proj, ref_proj = ours.transform(x).numpy(), ref.transform(x.numpy())
    for j in range(3):  # equal up to the sign of each axis
        assert np.allclose(np.abs(proj[:, j]), np.abs(ref_proj[:, j]), atol=1e-6)
    assert np.allclose(ours.explained.numpy(), ref.explained_variance_ratio_, atol=1e-8)


# ---------------------------------------------------------------------------- methods
def test_facets_mobilenet_distinct_and_raised(samples, mobilenet, tmp_path):
    vis = hf_fviz.multifaceted(mobilenet, unit="tabby cat", images=samples, k=3, steps=4, size=96, crops=1)
    assert len(vis) == 3 and {v.extra["facet"] for v in vis} == {0, 1, 2}
    assert all(v.unit == 281 and v.layer == "logits" for v in vis)
    for v in vis:  # each facet's optimization raised the logit above its mean-image start
        assert v.objective > v.extra["init_objective"] + 0.5, (v.objective, v.extra["init_objective"])
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(vis[i].image - vis[j].image).mean() > 0.02  # k different images
    members = [set(v.extra["members"]) for v in vis]
    assert sum(len(m) for m in members) == len(set().union(*members)) == 8  # disjoint; top half of 15
    assert "skimage:chelsea" in set().union(*members)  # the cat photo ranks among the top for 'tabby cat'
    path = imageset_output.save(vis, tmp_path / "facets", model=mobilenet, images=samples)
    data = json.loads(path.read_text())
    assert data["method"] == "facets" and len({it["image"] for it in data["items"]}) == 3
    for item, v in zip(data["items"], vis):
        assert item["members"] == v.extra["members"] and (tmp_path / "facets" / item["image"]).is_file()


def test_dual_images_match_their_cluster(samples, mobilenet, tmp_path):
    vis = hf_fviz.dual_objective(mobilenet, layer="blocks.3", images=samples, k=3, steps=10, size=96, crops=1)
    assert len(vis) == 3
    own = [int(np.argmin(v.extra["distances"])) == v.extra["cluster"] for v in vis]
    assert sum(own) >= 2, [v.extra["distances"] for v in vis]
    every = sorted(name for v in vis for name in v.extra["members"])
    assert every == sorted(samples.names)  # the clusters partition the set
    assert all(len(v.extra["top_channels"]) == 32 for v in vis)  # min(50, 64 // 2) on blocks.3
    assert all(v.history[-1] > v.history[0] for v in vis)  # the dual score rose
    path = imageset_output.save(vis, tmp_path / "dual", model=mobilenet, images=samples)
    data = json.loads(path.read_text())
    assert data["method"] == "dual" and data["settings"]["recipe"] == "maco"
    assert [it["members"] for it in data["items"]] == [v.extra["members"] for v in vis]
    assert data["images"]["source"] == "samples"


def test_dual_paper_recipe_runs(samples, mobilenet):
    vis = hf_fviz.dual_objective(mobilenet, layer="blocks.3", images=samples.subset(range(6)), k=2, steps=6, size=64, crops=1, recipe="paper")
    assert all(v.settings.recipe == "paper" and v.settings.lr == 0.5 for v in vis)
    for v in vis:
        assert 0.0 <= v.image.min() and v.image.max() <= 1.0
        assert v.history[-1] > v.history[0]


def test_paper_pixels_mask_blur_and_clip():
    init = torch.rand(2, 3, 64, 64) * 1.4 - 0.2  # partly outside [0, 1]
    p = I.PaperPixels(init, steps=20, blur=(16.0, 16.0), blur_every=2)  # 2 px at 64 px
    p.train()
    out = p()
    assert out.min() >= 0 and out.max() <= 1  # clipped in place
    out.sum().backward()
    g = p.pixels.grad[0, 0]
    assert float(g[30:34, 30:34].min()) > 0.9 and float(g[:4, :4].max()) < 1e-3  # centre-weighted gradient
    before = p.pixels.detach().clone()
    p()
    p()  # step 2: blur blended in under the centre mask
    changed = (p.pixels.detach() - before).abs()[0].mean(dim=0)
    assert float(changed[28:36, 28:36].mean()) > 0.05 and float(changed[:4, :4].max()) < 1e-3


def test_paper_optimizer_is_sgd_nesterov_with_linear_lr():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = PaperLoopSettings(steps=5, lr=0.5).make_optimizer([p])
    lrs = []
    for _ in range(5):
        p.grad = torch.ones(3)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    assert lrs[0] == pytest.approx(0.5) and lrs[-1] == pytest.approx(0.08)


def test_facets_on_vit_token_channel(tmp_path):
    model = hf_fviz.load_model("org/tiny-vit", device="cpu")
    vis = hf_fviz.multifaceted(model, layer="blocks.1", unit=5, images="samples", k=2, steps=8, size=64, crops=2)
    assert len(vis) == 2 and all(v.layer == "blocks.1" and v.unit == 5 for v in vis)
    assert all(v.extra["embedding_layer"] == "blocks.2" for v in vis)  # last token layer before logits
    for v in vis:
        assert v.objective > v.extra["init_objective"]
    assert np.abs(vis[0].image - vis[1].image).mean() > 0.02


def test_cli_facets_and_dual_write_manifests(tmp_path, capsys):
    out = tmp_path / "f"
    code = cli.main(["facets", "org/tiny-vit", "--layer", "blocks.1", "--units", "2,3", "--images", "samples", "--k", "2",
                     "--steps", "2", "--size", "64", "--crops", "1", "--device", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "manifest.json").read_text())
    assert [(it["unit"], it["facet"]) for it in data["items"]] == [(2, 0), (2, 1), (3, 0), (3, 1)]
    assert all(it["members"] and (out / it["image"]).is_file() and (out / it["rgba"]).is_file() for it in data["items"])
    assert (out / "grid.png").is_file()
    code = cli.main(["dual", "org/tiny-vit", "--layer", "blocks.2", "--images", "samples", "--k", "3", "--steps", "2",
                     "--size", "64", "--crops", "1", "--device", "cpu", "--out", str(tmp_path / "d"), "--recipe", "paper"])
    assert code == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert len(data["items"]) == 3 and data["settings"]["recipe"] == "paper"
    assert sorted(n for it in data["items"] for n in it["members"]) == sorted(f"{s.package}:{s.name}" for s in SAMPLE_IMAGES)
