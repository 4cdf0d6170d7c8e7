"""timm adapter, builtins, resolution and its errors, on tiny repos in a real (offline) hub cache."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import hf_fviz
from hf_fviz import errors
from hf_fviz.cli import main
from tests.fixtures_timm import MEAN, STD, TINY


def _rand(model, n=2):
    torch.manual_seed(0)
    return model.normalize(torch.rand(n, 3, *model.input_size))


@pytest.mark.parametrize("repo", sorted(TINY))
def test_every_tiny_timm_family_loads_with_its_catalogue(repo):
    model = hf_fviz.load_model(repo)
    assert model.library == "timm" and model.revision and len(model.revision) == 40
    assert model.mean == pytest.approx(MEAN) and model.std == pytest.approx(STD)
    layers = model.layers()
    assert len({layer.name for layer in layers}) == len(layers) > 2
    modules = dict(model.module.named_modules())
    x = _rand(model)
    for layer in layers:
        assert layer.name == "logits" or layer.name in modules  # names users see in named_modules()
        out = model.activations(x, layer.name)
        assert tuple(out.shape) == (2, *layer.shape)
        assert layer.units == (layer.shape[-1] if layer.kind == "tokens" else layer.shape[0])
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in modules.values())


@pytest.mark.parametrize(("repo", "prefix", "grid"), [("org/tiny-vit", 1, (4, 4)), ("org/tiny-deit", 2, (4, 4)),
                                                      ("org/tiny-vit-reg", 5, (4, 4)), ("org/tiny-eva", 1, (4, 4))])
def test_vit_token_layers_know_prefix_tokens_and_grid(repo, prefix, grid):
    model = hf_fviz.load_model(repo)
    assert model.family == "vit"
    tokens = [layer for layer in model.layers() if layer.kind == "tokens"]
    names = [layer.name for layer in tokens]
    assert names[:2] == ["blocks.0.mlp.act", "blocks.0"]
    for layer in tokens:
        assert layer.prefix_tokens == prefix and layer.grid == grid
        assert layer.shape[0] == prefix + grid[0] * grid[1]
    hidden, resid = tokens[0], tokens[1]
    mlp = model.module.blocks[0].mlp
    assert hidden.units == mlp.fc2.in_features > resid.units  # the MLP hidden layer, not the stream
    # The hidden read is the post-activation value, computed here by hand from fc1's output(s).
    x = _rand(model)
    seen = {}
    names = ["fc1"] if hasattr(mlp, "fc1") else ["fc1_g", "fc1_x"]
    handles = [getattr(mlp, n).register_forward_hook(lambda m, i, o, n=n: seen.setdefault(n, o.detach().clone()))
               for n in names]
    try:
        model.module(x)
    finally:
        for h in handles:
            h.remove()
    if "fc1_g" in seen:  # SwiGLU: two input projections
        expected = mlp.act(seen["fc1_g"]) * seen["fc1_x"]
    elif seen["fc1"].shape[-1] == 2 * hidden.units:  # GluMlp (EVA-02): one fused projection, chunked
        a, b = seen["fc1"].chunk(2, dim=-1)
        expected = a * mlp.act(b) if mlp.gate_last else mlp.act(a) * b
    else:
        expected = mlp.act(seen["fc1"])
    torch.testing.assert_close(model.activations(x, "blocks.0.mlp.act"), expected)


def test_swin_nhwc_stages_come_out_nchw():
    model = hf_fviz.load_model("org/tiny-swin")
    stage = model.layer("layers.1")
    assert stage.kind == "conv" and stage.shape == (32, 8, 8)
    raw = {}
    h = model.module.layers[1].register_forward_hook(lambda m, i, o: raw.setdefault("o", o.detach().clone()))
    x = _rand(model)
    try:
        model.module(x)
    finally:
        h.remove()
    torch.testing.assert_close(model.activations(x, "layers.1"), raw["o"].permute(0, 3, 1, 2))


def test_forward_stops_right_after_the_layer_and_leaves_no_hook():
    model = hf_fviz.load_model("org/tiny-resnet")
    fired = []
    later = model.module.layer3.register_forward_hook(lambda *a: fired.append("layer3"))
    try:
        model.activations(_rand(model), "layer1")
        assert fired == []
        model.activations(_rand(model), "logits")
        assert fired == ["layer3"]
    finally:
        later.remove()
    for m in model.module.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_early_exit_costs_under_40_percent_of_a_full_resnet50_forward():
    """FLOP count (deterministic, unlike timing) of ResNet-50's first stage versus the whole net."""
    import timm
    from torch.utils.flop_counter import FlopCounterMode

    from hf_fviz.hub.timm_models import wrap_timm

    model = wrap_timm(timm.create_model("resnet50"), model_id="resnet50", revision=None, device=torch.device("cpu"))
    x = torch.zeros(1, 3, 224, 224)

    def flops(fn):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            fn()
        return counter.get_total_flops()

    ratio = flops(lambda: model.activations(x, "layer1")) / flops(lambda: model.module(x))
    assert ratio < 0.40, ratio


def test_in_place_activation_after_the_layer_does_not_corrupt_what_is_read():
    """timm ResNet blocks end in act3 = ReLU(inplace=True) applied to the residual sum; the stage
    read must equal an independent computation, and reading must not change later outputs."""
    model = hf_fviz.load_model("org/tiny-resnet")
    x = _rand(model)
    blocks = model.module
    with torch.no_grad():
        ref = blocks.layer1(blocks.maxpool(blocks.act1(blocks.bn1(blocks.conv1(x)))))
        torch.testing.assert_close(model.activations(x, "layer1"), ref)
        before = model.module(x)
        model.activations(x, "layer1.0")
        torch.testing.assert_close(model.module(x), before)


def test_gradient_reaches_the_input_through_the_early_exit():
    model = hf_fviz.load_model("org/tiny-vit")
    x = _rand(model).requires_grad_(True)
    model.activations(x, "blocks.1.mlp.act")[:, 1:, 3].mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.module.parameters())


# ---------------------------------------------------------------------------- builtins
def _prep(model, img: np.ndarray) -> torch.Tensor:
    pil = Image.fromarray(img).convert("RGB")
    h, w = model.input_size
    scale = 256 / min(pil.size)
    pil = pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.BICUBIC)
    left, top = (pil.width - w) // 2, (pil.height - h) // 2
    pil = pil.crop((left, top, left + w, top + h))
    x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    return model.normalize(x)


@pytest.mark.parametrize("name", ["builtin:mobilenetv2", "builtin:efficientnet-lite0"])
def test_builtin_imagenet_models_recognize_bundled_photos(name):
    skimage_data = pytest.importorskip("skimage.data")
    model = hf_fviz.load_model(name)
    assert model.labels[967] == "espresso" and model.labels[285] == "Egyptian cat"
    with torch.no_grad():
        coffee = model.activations(_prep(model, skimage_data.coffee()), "logits").argmax().item()
        cat = model.activations(_prep(model, skimage_data.chelsea()), "logits").argmax().item()
    assert model.labels[coffee] == "espresso"
    assert 281 <= cat <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_builtin_is_converted_once_to_safetensors_in_the_cache():
    from hf_fviz.hub.builtin import builtin_dir

    folder = builtin_dir("mobilenetv2")
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architecture"] == "mobilenetv2_100"
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert builtin_dir("mobilenetv2") == folder and (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_class_lookup_by_name_synonym_and_index():
    model = hf_fviz.load_model("builtin:mobilenetv2")
    assert model.class_index("Tabby Cat") == 281 and model.class_index("tabby") == 281
    assert model.class_index("285") == 285 and model.class_index(1) == 1
    with pytest.raises(errors.UnknownClass, match="espresso"):
        model.class_index("expresso")
    with pytest.raises(errors.UnitOutOfRange, match="0..999"):
        model.class_index(1000)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("model_id", "error", "words"),
    [
        ("org/does-not-exist", errors.ModelNotFound, "not in the local cache"),
        ("org/pickle-only", errors.UnsafeWeights, "--allow-pickle"),
        ("org/remote-code", errors.RemoteCodeRequired, "--trust-remote-code"),
        ("org/truncated", errors.CorruptWeights, "corrupt or truncated"),
        ("org/unknown-arch", errors.UnsupportedArchitecture, "no_such_architecture_v9"),
        ("not a/valid id", errors.InvalidModelId, "malformed model id"),
        ("org//double", errors.InvalidModelId, "malformed model id"),
        ("org/tiny-resnet@../../etc", errors.InvalidModelId, "malformed revision"),
        ("org/tiny-resnet@no-such-branch", errors.ModelNotFound, "no-such-branch"),
        ("builtin:mobilenet", errors.ModelNotFound, "builtin:mobilenetv2"),
    ],
)
def test_bad_models_raise_one_typed_error(model_id, error, words):
    with pytest.raises(error, match=words) as info:
        hf_fviz.load_model(model_id)
    assert "\n" not in str(info.value)


def test_pickle_loads_only_when_allowed():
    model = hf_fviz.load_model("org/pickle-only", allow_pickle=True)
    assert model.layer("logits").units == 5


def test_unknown_layer_suggests_close_names():
    model = hf_fviz.load_model("org/tiny-resnet")
    with pytest.raises(errors.UnknownLayer, match=r"Did you mean: layer2") as info:
        model.layer("layr2")
    assert "layer2" in str(info.value)
    with pytest.raises(errors.UnknownLayer, match="hf-fviz layers"):
        model.activations(_rand(model), "zzzzzz")


def test_revision_pins_the_commit(hub_repos):
    sha = hub_repos["org/tiny-resnet"]
    model = hf_fviz.load_model(f"org/tiny-resnet@{sha}")
    assert model.revision == sha and model.id == "org/tiny-resnet"


def test_local_directory_in_hub_layout_loads(hub_repos, tmp_root):
    folder = next((tmp_root / "hub" / "models--org--tiny-convnext" / "snapshots").iterdir())
    model = hf_fviz.load_model(str(folder))
    assert model.layer("stages.1").kind == "conv"


# ---------------------------------------------------------------------------- CLI
def test_cli_layers_json_lists_builtin_blocks_and_logits(capsys):
    assert main(["layers", "builtin:mobilenetv2", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)
    assert all(set(item) >= {"name", "kind", "units", "shape"} for item in layers)
    by_name = {item["name"]: item for item in layers}
    assert by_name["logits"]["units"] == 1000 and by_name["logits"]["kind"] == "logits"
    assert by_name["blocks.6"]["shape"] == [320, 7, 7]


def test_cli_layers_table_for_a_tiny_vit(capsys):
    assert main(["layers", "org/tiny-vit"]) == 0
    out = capsys.readouterr().out
    assert "blocks.2.mlp.act" in out and "prefix=1 grid=(4, 4)" in out


def test_cli_bad_input_is_one_line_and_exit_code_2():
    """The real console entry point, in a subprocess: no traceback, one line, exit code 2."""
    proc = subprocess.run([sys.executable, "-m", "hf_fviz.cli", "layers", "org/pickle-only"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hf-fviz: error:") and "Traceback" not in proc.stderr


def test_batch_norm_is_folded_into_convolutions_without_changing_outputs():
    from hf_fviz.hub.fuse import fold_batchnorm

    model = hf_fviz.load_model("builtin:mobilenetv2")
    assert model.folded_norms == 52
    assert not any(type(m).__name__.startswith("BatchNorm") for m in model.module.modules())
    import timm

    unfolded = timm.create_model("mobilenetv2_100")
    from hf_fviz.hub.builtin import builtin_dir
    from safetensors.torch import load_file

    unfolded.load_state_dict(load_file(builtin_dir("mobilenetv2") / "model.safetensors"))
    unfolded.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), unfolded(x), rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(model.activations(x, "blocks.3"), _blocks3(unfolded, x), rtol=1e-3, atol=1e-3)
    # Nothing to fold: the module comes back as it is.
    plain = torch.nn.Sequential(torch.nn.Linear(4, 4))
    assert fold_batchnorm(plain, torch.zeros(1, 4)) == (plain, 0)


class _ConvSeenTwice(torch.nn.Module):
    """conv -> norm, plus the conv's own output added back (a skip taken before the norm): the
    norm's input is exactly the conv's output, yet folding the norm into the conv would also
    rescale the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        with torch.no_grad():  # statistics far from identity, so folding changes the skip a lot
            self.bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
            self.bn.running_var.copy_(torch.tensor([4.0, 0.25, 9.0, 2.0]))
            self.bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_folding_that_would_change_the_output_keeps_the_original_module():
    from hf_fviz.hub.fuse import fold_batchnorm

    module = _ConvSeenTwice().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = module(x)
    weight = module.conv.weight.detach().clone()
    folded, n = fold_batchnorm(module, x)
    assert folded is module and n == 0
    assert isinstance(module.bn, torch.nn.BatchNorm2d) and torch.equal(module.conv.weight, weight)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), before, rtol=0, atol=0)
    # the same conv -> norm without the skip does fold, to the same function
    chain = torch.nn.Sequential(module.conv, module.bn).eval()
    with torch.no_grad():
        want = chain(x)
    fused, n = fold_batchnorm(chain, x)
    assert n == 1 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(x), want, rtol=1e-5, atol=1e-5)


def _blocks3(net, x):
    return net.blocks[:4](net.bn1(net.conv_stem(x)))
