"""Bad input through all three faces (issue 8): what any visitor may paste, one case each.

Through the API a case raises exactly its `FvizError` subclass. Through the command line it
exits with code 2 and exactly one stderr line `hf-fviz: error: ...`, no traceback, and leaves no
output behind (the --out folder absent, no temporary folder left, the input files and publish
clones byte-identical). Through the Space (a live server on 127.0.0.1, driven with gradio_client)
it is a gr.Error: an AppError with the message and no traceback. Tiny models, 2 steps, 32 px.

Memory and time bounds, the security defaults (no token anywhere, no writes outside the output
folder or the clone) are tested at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import hf_fviz
from hf_fviz import errors as E
from hf_fviz import render
from hf_fviz.cli import main
from hf_fviz.engine import budget
from hf_fviz.api import build_spectrum

R = "org/tiny-resnet"  # timm resnet18, 64 px input, classes cat, dog, fish, bird, tabby cat
FAST = {"steps": 2, "size": 32, "crops": 1}
FAST_CLI = ["--steps", "2", "--size", "32", "--crops", "1", "--device", "cpu"]
TOKEN = "hf_FAKEtokenDoNotLeak0123456789abcdefXYZ"


# ---------------------------------------------------------------------------- fixtures
def _png_gray(width: int, height: int) -> bytes:
    """A valid, complete grayscale PNG of width x height black pixels, compressed on the fly (a
    20000 x 20000 one is 400 MB decoded, ~400 KB on disk: a real decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    body = b"".join(comp.compress(row * 500) for _ in range(height // 500)) + comp.compress(row * (height % 500)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _photos(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"p{i}.png")


@pytest.fixture(scope="module")
def repos(hub_repos, tmp_path_factory) -> dict[str, str]:
    """Hostile repos beyond the shared fixtures, laid out in the test hub cache."""
    import transformers

    from tests.conftest import HUB_CACHE, _ROOT
    from tests.hub_cache import populate_cache

    base = _ROOT / "src" / "org--tiny-resnet"
    other = _ROOT / "src" / "org--tiny-mobilenetv2"
    root = tmp_path_factory.mktemp("bad-repos")
    made: dict[str, Path] = {}

    audio = root / "tiny-wav2vec2"
    cfg = transformers.Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                                      conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=4,
                                      num_conv_pos_embedding_groups=2, vocab_size=8)
    transformers.Wav2Vec2ForCTC(cfg).save_pretrained(audio, safe_serialization=True)
    transformers.Wav2Vec2FeatureExtractor().save_pretrained(audio)
    made["org/tiny-wav2vec2"] = audio

    def variant(name: str, *, config: bytes | None = None, weights: bytes | None = None) -> None:
        folder = root / name
        folder.mkdir()
        (folder / "config.json").write_bytes(config if config is not None else (base / "config.json").read_bytes())
        if weights is not None:
            (folder / "model.safetensors").write_bytes(weights)
        made[f"org/{name}"] = folder

    good = (base / "model.safetensors").read_bytes()
    variant("garbage-weights", weights=os.urandom(4096))
    variant("wrong-shapes", weights=(other / "model.safetensors").read_bytes())  # another architecture's tensors
    variant("no-weights")
    variant("bad-config", config=b'{"architecture": "resnet18", "num_classes": 5, "label": "caf\xe9\xff"}', weights=good)
    return {repo: populate_cache(HUB_CACHE, repo, folder) for repo, folder in made.items()}


@dataclass
class Files:
    """Inputs the cases point at (never changed by any case)."""

    root: Path

    def __getitem__(self, key: str) -> str:
        return str(self.root / key)


@pytest.fixture(scope="module")
def files(tmp_path_factory, repos) -> Files:
    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "images" / "empty").mkdir(parents=True)
    _photos(root / "images" / "ok", 3)
    _photos(root / "images" / "truncated", 3)
    cut = root / "images" / "truncated" / "cut.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(cut, quality=95)
    cut.write_bytes(cut.read_bytes()[:700])
    _photos(root / "images" / "text", 3)
    (root / "images" / "text" / "notes.png").write_text("these are my notes, not an image\n")
    _photos(root / "images" / "huge", 3)
    (root / "images" / "huge" / "huge.png").write_bytes(_png_gray(20000, 20000))
    (root / "images" / "only-bad").mkdir()
    (root / "images" / "only-bad" / "notes.png").write_text("not an image\n")
    shutil.copyfile(root / "images" / "huge" / "huge.png", root / "images" / "only-bad" / "huge.png")
    (root / "not-a-spectrum.npy").write_text("hello\n")
    (root / "a-file").write_text("keep me\n")

    # a real output folder to publish, and one whose manifest points outside itself
    model = hf_fviz.load_model(R, device="cpu")
    render.save(hf_fviz.visualize(model, units=[0, 1], **FAST), root / "out-ok", model=model)
    shutil.copytree(root / "out-ok", root / "out-escape")
    manifest = json.loads((root / "out-escape" / "manifest.json").read_text())
    manifest["items"][0]["image"] = "../a-file"
    (root / "out-escape" / "manifest.json").write_text(json.dumps(manifest))
    for name, card in (("clone-ok", b"---\nlicense: mit\n---\n# Tiny\n"),
                       ("clone-latin1", b"---\nlicense: mit\n---\n# Caf\xe9 \xff\xfe model\n"),
                       ("clone-huge", b"---\nlicense: mit\n---\n" + b"# big\n" + b"x" * 11_000_000 + b"\n")):
        (root / name).mkdir()
        (root / name / "README.md").write_bytes(card)
    return Files(root)


_MODELS: dict[str, Any] = {}


def _model(model_id: str = R):
    if model_id not in _MODELS:
        _MODELS[model_id] = hf_fviz.load_model(model_id, device="cpu")
    return _MODELS[model_id]


def _gate(monkeypatch) -> None:
    """The hub says 403 gated for org/gated-model: a real GatedRepoError from the network boundary."""
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError
    from huggingface_hub.utils import httpx

    real = huggingface_hub.hf_hub_download

    def download(repo_id, filename, *args, **kwargs):
        if repo_id == "org/gated-model":
            url = f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
            response = httpx.Response(403, request=httpx.Request("GET", url))
            raise GatedRepoError(f"403 Client Error. Cannot access gated repo for url {url}.", response=response)
        return real(repo_id, filename, *args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)


def _small_memory(monkeypatch) -> None:
    monkeypatch.setenv(budget.ENV_LIMIT, "256MB")


# ---------------------------------------------------------------------------- the cases
Api = Callable[[Files, Path], Any]


@dataclass(frozen=True)
class Case:
    """One bad input. `api(files, out)` must raise `error`; `cli` is argv ({out} and {name} of a
    fixture file filled in); `space` is ('layers', model_id) or the 6 /visualize arguments."""

    id: str
    error: type[E.FvizError] | None
    needle: str
    api: Api | None = None
    cli: tuple[str, ...] | None = None
    cli_needle: str | None = None
    space: tuple | None = None
    space_needle: str | None = None
    setup: Callable[[Any], None] | None = None


def load(model_id: str) -> Api:
    return lambda f, out: hf_fviz.load_model(model_id, device="cpu")


def viz(model_id: str = R, **kw: Any) -> Api:
    return lambda f, out: hf_fviz.visualize(_model(model_id), **{**FAST, **kw})


def vcli(model_id: str, *extra: str) -> tuple[str, ...]:
    return ("visualize", model_id, *extra, *FAST_CLI, "--out", "{out}")


def dual(images: str) -> Api:
    return lambda f, out: hf_fviz.dual_objective(_model(), layer="layer1", images=f[images], k=2, **FAST)


def dcli(images: str) -> tuple[str, ...]:
    return ("dual", R, "--layer", "layer1", "--images", "{" + images + "}", "--k", "2", *FAST_CLI, "--out", "{out}")


def publish(clone: str, folder: str = "out-ok", repo: str = R) -> Api:
    return lambda f, out: hf_fviz.publish(repo, f[folder], local_dir=f[clone])


def pcli(clone: str, folder: str = "out-ok", repo: str = R) -> tuple[str, ...]:
    return ("publish", repo, "--from", "{" + folder + "}", "--local-dir", "{" + clone + "}")


def save_into(target: str) -> Api:
    def run(f: Files, out: Path) -> Any:
        vis = hf_fviz.visualize(_model(), units=[0], **FAST)
        return render.save(vis, f[target] if target != "{out}" else out)
    return run


def atlas(**kw: Any) -> Api:
    from hf_fviz.atlas import atlas as run

    return lambda f, out: run(_model(), out_dir=out, **{**FAST, **kw})


LONG_ID = "org/" + "a" * 300
SNAPSHOT_OF_R = "{snapshot}"  # the Space case fills in the tiny-resnet snapshot folder

CASES: list[Case] = [
    # ------------------------------------------------------------ model ids and repos
    Case("empty-id", E.InvalidModelId, "empty model id", load(""), ("layers", "")),
    Case("malformed-id", E.InvalidModelId, "malformed model id", load("org/bad name!"), vcli("org/bad name!")),
    Case("overlong-id", E.InvalidModelId, "malformed model id", load(LONG_ID), ("layers", LONG_ID),
         space=("layers", LONG_ID)),
    Case("revision-escape", E.InvalidModelId, "malformed revision", load(f"{R}@../../etc"), vcli(f"{R}@../../etc"),
         space=(f"{R}@../../etc", "logits", "1", "maco", 2, 32)),
    Case("unknown-model", E.ModelNotFound, "not in the local cache", load("org/no-such-model"), vcli("org/no-such-model")),
    Case("text-model", E.NotAVisionModel, "is a text model", load("hf-internal/tiny-bert"), vcli("hf-internal/tiny-bert"),
         space=("layers", "hf-internal/tiny-bert")),
    Case("audio-model", E.NotAVisionModel, "is an audio model", load("org/tiny-wav2vec2"), vcli("org/tiny-wav2vec2"),
         space=("layers", "org/tiny-wav2vec2")),
    Case("gated-repo", E.GatedRepo, "org/gated-model is gated", load("org/gated-model"), ("layers", "org/gated-model"),
         space=("layers", "org/gated-model"), setup=_gate),
    Case("pickle-only", E.UnsafeWeights, "--allow-pickle", load("org/pickle-only"), vcli("org/pickle-only")),
    Case("remote-code", E.RemoteCodeRequired, "--trust-remote-code", load("org/remote-code"), vcli("org/remote-code"),
         space=("layers", "org/remote-code")),
    Case("truncated-weights", E.CorruptWeights, "corrupt or truncated", load("org/truncated"), vcli("org/truncated"),
         space=("org/truncated", "logits", "1", "maco", 2, 32)),
    Case("garbage-weights", E.CorruptWeights, "corrupt or truncated", load("org/garbage-weights"), vcli("org/garbage-weights")),
    Case("wrong-shapes", E.CorruptWeights, "could not load weights", load("org/wrong-shapes"), vcli("org/wrong-shapes")),
    Case("no-weights", E.ModelNotFound, "has no weights", load("org/no-weights"), ("layers", "org/no-weights")),
    Case("non-utf8-config", E.CorruptWeights, "config.json is not valid JSON", load("org/bad-config"), ("layers", "org/bad-config")),
    Case("unknown-architecture", E.UnsupportedArchitecture, "no_such_architecture_v9", load("org/unknown-arch"),
         vcli("org/unknown-arch")),
    Case("server-path-in-space", None, "", space=(SNAPSHOT_OF_R, "logits", "1", "maco", 2, 32),
         space_needle="is a path on this server"),
    # ------------------------------------------------------------ layers, units, classes
    Case("unknown-layer", E.UnknownLayer, "Did you mean: layer2", viz(layer="layr2", units=[0]),
         vcli(R, "--layer", "layr2", "--units", "0")),
    Case("layer-dotdot", E.UnknownLayer, "unknown layer '../../etc'", viz(layer="../../etc", units=[0]),
         vcli(R, "--layer", "../../etc", "--units", "0"), space=(R, "../../etc", "0", "maco", 2, 32)),
    Case("layer-absolute-path", E.UnknownLayer, "unknown layer '/tmp/x'", atlas(layer="/tmp/x"),
         ("atlas", R, "--layer", "/tmp/x", *FAST_CLI, "--out", "{out}"), space=(R, "/tmp/x", "0", "maco", 2, 32)),
    Case("unit-out-of-range", E.UnitOutOfRange, "valid units are 0..4", viz(units=[99]),
         ("atlas", R, "--units", "0-99", *FAST_CLI, "--out", "{out}")),
    Case("negative-unit", E.UnitOutOfRange, "unit -1 is out of range", viz(layer="layer1", units=[-1]),
         vcli(R, "--layer", "layer1", "--units=-1"), space=(R, "layer1", "-1", "maco", 2, 32), space_needle="not '-1'"),
    Case("units-and-classes", E.InvalidSettings, "not both", viz(units=[0], classes=["cat"]),
         vcli(R, "--units", "0", "--classes", "cat"), cli_needle="not allowed with argument --units"),
    Case("no-units", E.InvalidSettings, "no units given", viz(layer="layer1", units=[]), vcli(R, "--units", ","),
         cli_needle="--units is empty"),
    Case("unknown-class", E.UnknownClass, "Did you mean: tabby cat", viz(classes=["tabbi cat"]),
         vcli(R, "--classes", "tabbi cat")),
    # ------------------------------------------------------------ settings
    Case("negative-steps", E.InvalidSettings, "steps must be an integer in 1..10000, got -5", viz(steps=-5),
         ("visualize", R, "--steps=-5", "--out", "{out}"), space=(R, "logits", "1", "maco", -5, 32),
         space_needle="steps must be a whole number"),
    Case("huge-steps", E.InvalidSettings, "steps must be an integer in 1..10000", viz(steps=10**9),
         ("visualize", R, "--steps", str(10**9), "--out", "{out}")),
    Case("non-integer-steps", E.InvalidSettings, "steps must be an integer", viz(steps="10"),
         ("visualize", R, "--steps", "ten", "--out", "{out}"), cli_needle="invalid int value: 'ten'"),
    Case("huge-size", E.InvalidSettings, "size must be an integer in 32..2048", viz(size=20000),
         ("visualize", R, "--size", "20000", "--out", "{out}"), space=(R, "logits", "1", "maco", 2, 20000),
         space_needle="size must be a whole number"),
    Case("zero-size", E.InvalidSettings, "size must be an integer in 32..2048, got 0", viz(size=0),
         ("visualize", R, "--size", "0", "--out", "{out}")),
    Case("huge-crops", E.InvalidSettings, "crops must be an integer in 0..64", viz(crops=10**6),
         ("visualize", R, "--crops", str(10**6), "--out", "{out}")),
    Case("nan-lr", E.InvalidSettings, "lr must be a positive number", viz(lr=float("nan")), vcli(R, "--lr", "nan")),
    Case("huge-seed", E.InvalidSettings, "seed must be an integer", viz(seed=2**70), vcli(R, "--seed", str(2**70))),
    Case("zero-batch-size", E.InvalidSettings, "batch size must be a positive integer", viz(batch_size=0),
         vcli(R, "--batch-size", "0")),
    Case("negative-max-seconds", E.InvalidSettings, "max seconds must be a positive number", viz(max_seconds=-1),
         vcli(R, "--max-seconds=-1")),
    Case("unknown-method", E.InvalidSettings, "unknown method 'deepdream'", viz(method="deepdream"),
         ("visualize", R, "--method", "deepdream", "--out", "{out}"), cli_needle="invalid choice: 'deepdream'"),
    Case("run-too-big-for-memory", E.ResourceLimit, "would need about", viz(units=[0, 1, 2, 3, 4], size=2048, crops=64),
         ("visualize", R, "--units", "0,1,2,3,4", "--size", "2048", "--crops", "64", "--steps", "2", "--out", "{out}"),
         setup=_small_memory),
    Case("corrupt-spectrum-file", E.InvalidSettings, "cannot read spectrum file", lambda f, out: hf_fviz.visualize(
        _model(), units=[0], spectrum=f["not-a-spectrum.npy"], **FAST), vcli(R, "--spectrum", "{not-a-spectrum.npy}")),
    Case("out-is-a-file", E.InvalidSettings, "exists and is not a folder", save_into("a-file"),
         ("visualize", R, *FAST_CLI, "--out", "{a-file}")),
    Case("out-under-a-file", E.InvalidSettings, "exists and is not a folder", save_into("a-file/sub"),
         ("dual", R, "--layer", "layer1", "--images", "samples", *FAST_CLI, "--out", "{a-file}/sub")),
    Case("bad-shard", E.InvalidSettings, "shard must be I/N", atlas(shard="5/2"),
         ("atlas", R, "--shard", "5/2", *FAST_CLI, "--out", "{out}")),
    # ------------------------------------------------------------ image sets
    Case("empty-image-folder", E.BadImageSet, "no image files", dual("images/empty"), dcli("images/empty")),
    Case("truncated-jpeg", E.BadImageSet, "truncated", lambda f, out: hf_fviz.multifaceted(
        _model(), unit="cat", images=f["images/truncated"], k=2, **FAST),
        ("facets", R, "--classes", "cat", "--images", "{images/truncated}", "--k", "2", *FAST_CLI, "--out", "{out}")),
    Case("text-file-named-png", E.BadImageSet, "notes.png is not an image", dual("images/text"), dcli("images/text")),
    Case("20000x20000-image", E.BadImageSet, "too large", dual("images/huge"), dcli("images/huge")),
    Case("missing-image-path", E.BadImageSet, "no such file or folder", dual("images/nope"), dcli("images/nope")),
    Case("spectrum-from-unreadable-images", E.BadImageSet, "no readable images", lambda f, out: build_spectrum(
        f["images/only-bad"], crops=4, size=32), ("spectrum", "{images/only-bad}", "--crops", "4", "--size", "32",
                                                   "--out", "{out}")),
    # ------------------------------------------------------------ model cards and publishing
    Case("card-not-utf8", E.PublishError, "is not UTF-8 text", publish("clone-latin1"), pcli("clone-latin1")),
    Case("card-huge", E.PublishError, "over the 10,000,000-byte limit", publish("clone-huge"), pcli("clone-huge")),
    Case("manifest-points-outside", E.PublishError, "points outside the output folder", publish("clone-ok", "out-escape"),
         pcli("clone-ok", "out-escape")),
    Case("publish-repo-id-escape", E.PublishError, "is not a hub model id", publish("clone-ok", repo="../evil"),
         pcli("clone-ok", repo="../evil")),
]

assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


def _tree(root: Path) -> dict[str, str]:
    """Every file under `root` with a digest of its bytes (to prove nothing changed)."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _fill(arg: str, files: Files, out: Path) -> str:
    if arg == "{out}":
        return str(out)
    if arg.startswith("{") and "}" in arg:
        key, rest = arg[1:].split("}", 1)
        return files[key] + rest
    return arg


# ---------------------------------------------------------------------------- API
@pytest.mark.parametrize("case", [c for c in CASES if c.api], ids=lambda c: c.id)
def test_api_raises_the_exact_error_class(case: Case, files: Files, tmp_path: Path, monkeypatch) -> None:
    if case.setup:
        case.setup(monkeypatch)
    out = tmp_path / "out"
    before = _tree(files.root)
    with pytest.raises(E.FvizError) as info:
        case.api(files, out)
    assert type(info.value) is case.error, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert case.needle in message and "\n" not in message and len(message) < 600
    assert TOKEN not in message
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert _tree(files.root) == before


# ---------------------------------------------------------------------------- command line
@pytest.mark.parametrize("case", [c for c in CASES if c.cli], ids=lambda c: c.id)
def test_cli_one_line_exit_2_nothing_written(case: Case, files: Files, tmp_path: Path, monkeypatch, capsys) -> None:
    if case.setup:
        case.setup(monkeypatch)
    out = tmp_path / "out"
    argv = [_fill(a, files, out) for a in case.cli]
    before = _tree(files.root)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse usage errors leave through SystemExit, as the console script does
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hf-fviz: error: "), captured.err
    assert (case.cli_needle or case.needle) in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists() and list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())
    assert _tree(files.root) == before  # inputs, clones and the file given as --out are untouched


def test_console_script_usage_error_is_one_line_exit_2() -> None:
    """The real entry point (python -m hf_fviz.cli) on a usage error (a model error in a subprocess
    is tested in test_hub_timm)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "hf_fviz.cli", "visualize", R, "--steps", "ten"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == ["hf-fviz: error: argument --steps: invalid int value: 'ten' (see `hf-fviz visualize --help`)"]


# ---------------------------------------------------------------------------- Space
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def space(repos, tmp_path_factory):
    from tests.test_space import _load_app

    app = _load_app()
    os.environ["HF_FVIZ_SPACE_DIR"] = str(tmp_path_factory.mktemp("space-bad"))
    caps = app.Caps(default_steps=2, max_steps=16, default_size=32, max_size=128, min_size=32, crops=1, max_crops=2,
                    max_units=4, queue_size=8, models_in_memory=2, previews=1)
    demo = app.build_demo(caps, default_model=R, autoload=False, oauth=False)
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True,
                           quiet=True, ssr_mode=False)
    from gradio_client import Client

    try:
        yield Client(url, verbose=False, analytics_enabled=False)
    finally:
        demo.close()


@pytest.mark.parametrize("case", [c for c in CASES if c.space], ids=lambda c: c.id)
def test_space_shows_a_gr_error(case: Case, space, hub_repos, monkeypatch) -> None:
    from gradio_client.exceptions import AppError

    from tests.conftest import HUB_CACHE

    if case.setup:
        case.setup(monkeypatch)
    snapshot = str(HUB_CACHE / "models--org--tiny-resnet" / "snapshots" / hub_repos[R])
    args = tuple(snapshot if a == SNAPSHOT_OF_R else a for a in case.space)
    with pytest.raises(AppError) as info:
        if args[0] == "layers":
            space.predict(args[1], api_name="/layers")
        else:
            space.predict(*args, api_name="/visualize")
    message = str(info.value)
    assert (case.space_needle or case.needle) in message
    assert "Traceback" not in message and 'File "' not in message and TOKEN not in message


# ---------------------------------------------------------------------------- memory bound
def test_memory_refusal_states_estimate_limit_and_a_batch_size_that_fits(monkeypatch) -> None:
    model = _model()
    one = budget.estimate(model, units=1, crops=4, size=256, layers=["logits"])
    monkeypatch.setenv(budget.ENV_LIMIT, str(int(one.total * 2.5)))  # room for two units at once, not five
    with pytest.raises(E.ResourceLimit) as info:
        hf_fviz.visualize(model, units=[0, 1, 2, 3, 4], steps=1, size=256, crops=4, batch_size=5)
    message = str(info.value)
    assert f"about {budget.gib(one.total * 5)}" in message and "5 unit(s) at once x 4 crop(s)" in message
    assert f"only {budget.gib(int(one.total * 2.5))} is free ({budget.ENV_LIMIT})" in message
    assert "--batch-size 2" in message
    vis = hf_fviz.visualize(model, units=[0, 1, 2, 3, 4], steps=1, size=256, crops=4, batch_size=2)  # what it suggested
    assert len(vis) == 5
    auto = hf_fviz.visualize(model, units=[0, 1, 2, 3, 4], steps=1, size=256, crops=4)  # automatic chunks fit the memory
    assert len(auto) == 5 and max(v.extra["chunk"] for v in auto) >= 2  # at most 2 units per chunk: 5 units, 3+ chunks


def test_memory_probe_measures_the_truncated_forward_pass() -> None:
    model = _model()
    early, late = budget.saved_bytes_per_image(model, ["layer1"]), budget.saved_bytes_per_image(model, ["logits"])
    assert 0 < early < late  # the early exit saves less for backward
    est = budget.estimate(model, units=3, crops=2, size=64, layers=["layer1"])
    assert est.activations == int(3 * 2 * early * budget.ACT_FACTOR["cnn"])
    assert est.canvas == int(3 * 3 * 64 * 64 * 4 * budget.CANVAS_FACTOR)


def test_the_demo_run_is_estimated_well_under_two_gigabytes() -> None:
    """`make demo` (6 classes x 4 crops of MobileNetV2 at 224, 384 px canvas) must never be refused
    on an ordinary machine; measured peak RSS of that run: ~1.26 GB above the loaded model."""
    model = hf_fviz.load_model("builtin:mobilenetv2", device="cpu")
    est = budget.estimate(model, units=6, crops=4, size=384, layers=["logits"])
    assert 1.0 * 2**30 < est.total < 2.0 * 2**30, budget.gib(est.total)


@pytest.mark.parametrize(("text", "expected"), [("4GB", 4 * 2**30), ("512 mb", 512 * 2**20), ("1.5g", int(1.5 * 2**30)),
                                                ("123456", 123456)])
def test_memory_limit_env_values(text: str, expected: int) -> None:
    assert budget.parse_bytes(text) == expected


def test_bad_memory_limit_env_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv(budget.ENV_LIMIT, "lots")
    with pytest.raises(E.InvalidSettings, match="HF_FVIZ_MAX_MEMORY='lots' is not a size"):
        hf_fviz.visualize(_model(), units=[0], **FAST)


# ---------------------------------------------------------------------------- time bound
def test_max_seconds_stops_at_a_step_boundary_and_keeps_the_images() -> None:
    vis = hf_fviz.visualize(_model(), units=[0, 1, 2], steps=10_000, size=32, crops=1, batch_size=2, max_seconds=0.3)
    assert len(vis) == 2  # the first chunk of two units ran; the second never started
    for v in vis:
        assert v.extra["stopped_early"] and v.extra["units_skipped"] == 1
        assert 1 <= v.extra["steps_done"] < 10_000 and len(v.history) == v.extra["steps_done"]
        assert np.isfinite(v.objective) and v.image.std() > 0
    full = hf_fviz.visualize(_model(), units=[0], steps=3, size=32, crops=1, max_seconds=600)
    assert "stopped_early" not in full[0].extra and len(full[0].history) == 3


def test_cli_max_seconds_exits_0_with_a_notice_and_a_manifest_that_says_so(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    # --batch-size 2: both units in one chunk (a chunk of 1 would leave the second unit unstarted at
    # the deadline, and the notice would say so)
    code = main(["visualize", R, "--units", "0,1", "--steps", "10000", "--size", "32", "--crops", "1", "--batch-size", "2",
                 "--max-seconds", "0.5", "--device", "cpu", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    notices = [line for line in captured.err.splitlines() if line.startswith("hf-fviz: stopped at --max-seconds 0.5:")]
    assert len(notices) == 1 and "of 10000 steps done; images kept as they are" in notices[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stopped_early"] is True and 1 <= manifest["steps_done"] < 10000 and manifest["units_skipped"] == 0
    assert manifest["settings"]["steps"] == 10000
    for item in manifest["items"]:
        assert (out / item["image"]).is_file() and (out / item["rgba"]).is_file()


# ---------------------------------------------------------------------------- security defaults
def test_a_20000x20000_image_among_good_ones_is_skipped_by_spectrum_never_decoded(files: Files, tmp_path: Path, capsys, monkeypatch) -> None:
    """Every PIL decode goes through `ImageFile.load`: a spy there sees which files were decoded
    (and stops a decode of the bomb, so a broken guard fails this test instead of the machine)."""
    from PIL import ImageFile

    decoded: list[str] = []
    real_load = ImageFile.ImageFile.load

    def spy_load(im: ImageFile.ImageFile):
        decoded.append(Path(getattr(im, "filename", "") or "?").name)
        if im.size[0] * im.size[1] > 100_000_000:
            raise OSError("the spy refused to decode a decompression bomb")
        return real_load(im)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    assert main(["spectrum", files["images/huge"], "--crops", "4", "--size", "32", "--out", str(tmp_path / "s.npy")]) == 0
    assert "of 3 images" in capsys.readouterr().out  # the three photos
    assert "huge.png" not in decoded
    assert {"p0.png", "p1.png", "p2.png"} <= set(decoded)  # the spy does see decoding


def test_hostile_layer_names_stay_inside_the_output_folder(tmp_path: Path) -> None:
    vis = hf_fviz.visualize(_model(), units=[0], **FAST)[0]
    import dataclasses

    hostile = [dataclasses.replace(vis, layer=name, unit=i) for i, name in enumerate(["../../escape", "/abs/path", "..", "a/../../b"])]
    out = tmp_path / "deep" / "out"
    render.save(hostile, out)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.resolve().is_relative_to(out.resolve()) for p in written)
    assert len([p for p in written if p.name.endswith("_rgba.png")]) == 4


def test_no_token_in_any_output_or_file(files: Files, tmp_path: Path, monkeypatch, capsys) -> None:
    """HF_TOKEN set to a recognizable value, and --token given: no output line, manifest, card or
    other written file contains it."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    clone = tmp_path / "clone"
    shutil.copytree(files.root / "clone-ok", clone)
    runs = [
        ["layers", R],
        ["visualize", R, "--units", "0", *FAST_CLI, "--out", str(tmp_path / "viz")],
        ["dual", R, "--layer", "layer1", "--images", files["images/ok"], "--k", "2", *FAST_CLI,
         "--out", str(tmp_path / "dual")],
        ["atlas", R, "--units", "0-1", *FAST_CLI, "--out", str(tmp_path / "atlas")],
        ["publish", R, "--from", str(tmp_path / "viz"), "--local-dir", str(clone), "--token", TOKEN],
        ["publish", R, "--from", str(tmp_path / "viz"), "--pr", "--token", TOKEN],  # offline: a one-line error
        ["layers", "org/gated-model"],
    ]
    _gate(monkeypatch)
    codes = [main(argv) for argv in runs]
    captured = capsys.readouterr()
    assert codes == [0, 0, 0, 0, 0, 2, 2], captured.err  # the last two: offline PR and gated repo, one line each
    assert "hf-fviz: error:" in captured.err and "gated" in captured.err
    assert TOKEN not in captured.out and TOKEN not in captured.err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in written) and any(p.name == "README.md" for p in written)
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path


def test_spectrum_limits_come_from_settings_and_refuse_in_one_line(files: Files, tmp_path: Path, capsys) -> None:
    from hf_fviz.settings import LIMITS

    hi = LIMITS["spectrum_crops"][1]
    out = tmp_path / "s.npy"
    assert main(["spectrum", files["images/huge"], "--crops", str(hi + 1), "--size", "32", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"spectrum crops must be an integer in 1..{hi}, got {hi + 1}" in err and not out.exists()
