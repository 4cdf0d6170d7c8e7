"""Layer discovery by probing: a fast subset of the zoo (a dozen architectures of different kinds,
end to end), the layers every architecture should have, and the one-line refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import hf_fviz
from hf_fviz.errors import UnsupportedArchitecture
from hf_fviz.hub.fuse import fold_batchnorm
from hf_fviz.zoo import check
from hf_fviz.zoo_models import Builder, _hf_build, _timm_build

# A dozen kinds: plain CNN, ViT tokens with prefix, NHWC hierarchical (Swin), token pyramid with
# a spatial-reduction attention (PVT v2), LeViT, MLP-Mixer, two-branch CrossViT, Hiera (unrolled
# tokens), DenseNet (numbered non-digit stacks), Swin V2 / distilled heads / NaFlex in transformers.
FAST_ZOO = [
    Builder("timm", "resnet", "test_resnet", _timm_build("test_resnet")),
    Builder("timm", "vision_transformer", "test_vit", _timm_build("test_vit")),
    Builder("timm", "levit", "levit_128s", _timm_build("levit_128s")),
    Builder("timm", "mlp_mixer", "mixer_s32_224", _timm_build("mixer_s32_224")),
    Builder("timm", "pvt_v2", "pvt_v2_b0", _timm_build("pvt_v2_b0")),
    Builder("timm", "hiera", "hiera_tiny_224", _timm_build("hiera_tiny_224")),
    Builder("transformers", "swinv2", "Swinv2ForImageClassification", _hf_build("swinv2", "Swinv2ForImageClassification")),
    Builder("transformers", "levit", "LevitForImageClassificationWithTeacher",
            _hf_build("levit", "LevitForImageClassificationWithTeacher")),
    Builder("transformers", "siglip2", "Siglip2ForImageClassification", _hf_build("siglip2", "Siglip2ForImageClassification")),
    Builder("transformers", "mobilevit", "MobileViTForImageClassification", _hf_build("mobilevit", "MobileViTForImageClassification")),
    Builder("transformers", "segformer", "SegformerForImageClassification", _hf_build("segformer", "SegformerForImageClassification")),
    Builder("transformers", "cvt", "CvtForImageClassification", _hf_build("cvt", "CvtForImageClassification")),
]


@pytest.mark.parametrize("builder", FAST_ZOO, ids=lambda b: f"{b.library}-{b.family}")
def test_zoo_subset_works_end_to_end(builder, tmp_path):
    """Load, list layers, a 4-step visualize of logits and of a middle layer's channel, images written."""
    row = check(builder, tmp_path)
    assert row.ok, row.reason
    assert row.layers >= 5 and row.middle


def _tiny_timm(name: str, **kwargs) -> hf_fviz.VisionModel:
    import timm

    from hf_fviz.hub.timm_models import wrap_timm

    model = timm.create_model(name, num_classes=5, **kwargs)
    return wrap_timm(model, model_id=name, revision=None, device=torch.device("cpu"))


def _tiny_hf(tmp_path: Path, model_type: str, class_name: str) -> hf_fviz.VisionModel:
    folder = tmp_path / model_type
    folder.mkdir()
    _hf_build(model_type, class_name)(folder)
    return hf_fviz.load_model(str(folder), device="cpu")


@pytest.mark.parametrize("library", ["timm", "transformers"])
def test_swin_v2_blocks_have_mlp_hidden_layers_as_maps(tmp_path, library):
    """Every Swin V2 block's MLP hidden layer (after its activation): a map 4x the block's width,
    equal to act(fc1(norm(x))) laid out on the block's grid."""
    if library == "timm":
        vm = _tiny_timm("swinv2_cr_tiny_ns_224", img_size=64, embed_dim=16, depths=(1, 1), num_heads=(1, 2),
                        window_size=4)
    else:
        vm = _tiny_hf(tmp_path, "swinv2", "Swinv2ForImageClassification")
    blocks = [layer for layer in vm.layers() if layer.name.split(".")[-2:-1] == ["blocks"]]
    hidden = [layer for layer in vm.layers() if layer.name.endswith((".act", "act_fn"))]
    assert hidden and len(hidden) == len(blocks)
    for mlp, block in zip(hidden, blocks):
        assert mlp.kind == block.kind == "conv"
        assert mlp.units == 4 * block.units and mlp.shape[1:] == block.shape[1:]
    assert hidden[0].name.endswith(("mlp.act", "intermediate.intermediate_act_fn"))
    act = dict(vm.module.named_modules())[hidden[0].name]  # the activation module; its output is the hidden layer
    seen = []
    handle = act.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    x = vm.normalize(torch.rand(1, 3, *vm.input_size, generator=torch.Generator().manual_seed(0)))
    try:
        with torch.no_grad():
            vm.module(x)
    finally:
        handle.remove()
    got = vm.activations(x, hidden[0].name)
    expected = seen[0]
    if expected.ndim == 3:  # (N, L, C) tokens of the block's grid, row-major
        expected = expected.transpose(1, 2).reshape(got.shape)
    else:  # NHWC
        expected = expected.permute(0, 3, 1, 2)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, got.clamp_min(0))  # GELU's negative part: read after the activation, not a ReLU


def test_hierarchical_token_maps_follow_the_actual_input_size(tmp_path):
    """PVT v2 blocks hold (N, L, C) tokens of a shrinking grid: they come out NCHW, laid out with
    the grid of the input actually given, not the probe's."""
    vm = _tiny_timm("pvt_v2_b0")
    block = vm.layer("stages.1.blocks.0")
    assert block.kind == "conv" and block.shape[1:] == (28, 28)
    out = vm.activations(torch.randn(1, 3, 96, 128), block)
    assert out.shape[2:] == (12, 16)


def test_vit_tokens_keep_prefix_and_grid_and_the_gated_mlp(tmp_path):
    vm = _tiny_timm("vit_small_patch14_reg4_dinov2", img_size=56, depth=2, embed_dim=48, num_heads=2,
                    mlp_layer=__import__("timm").layers.SwiGLUPacked, act_layer=nn.SiLU)
    hidden = vm.layer("blocks.0.mlp.act")
    assert hidden.kind == "tokens" and hidden.prefix_tokens == 5 and hidden.grid == (4, 4)
    assert hidden.units == vm.module.blocks[0].mlp.fc2.in_features  # after gating (half of fc1's outputs)


def test_distillation_head_logits_are_the_models_own_average(tmp_path):
    vm = _tiny_hf(tmp_path, "levit", "LevitForImageClassificationWithTeacher")
    x = vm.normalize(torch.rand(2, 3, *vm.input_size))
    with torch.no_grad():
        out = vm.module(x)
    torch.testing.assert_close(vm.activations(x, "logits"), (out.cls_logits + out.distillation_logits) / 2)


def test_backbone_without_head_has_no_logits_but_every_other_layer(tmp_path):
    import timm

    from hf_fviz.hub.timm_models import wrap_timm

    vm = wrap_timm(timm.create_model("test_convnext", num_classes=0), model_id="x", revision=None, device=torch.device("cpu"))
    names = [layer.name for layer in vm.layers()]
    assert not vm.has_head and "logits" not in names
    assert names[0] == "stem" and "stages.3" in names and names[-1] == "norm_pre"  # stem ... pre-pool map


def test_dinov2_config_with_out_features_of_another_depth_loads(tmp_path):
    import transformers

    folder = tmp_path / "dinov2"
    folder.mkdir()
    _hf_build("dinov2", "Dinov2ForImageClassification")(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["out_features"], cfg["out_indices"] = ["stage12"], [12]  # a config edited from the 12-layer default
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="out_features"):
        transformers.Dinov2Config.from_pretrained(str(folder))
    vm = hf_fviz.load_model(str(folder), device="cpu")
    assert vm.has_head and len([layer for layer in vm.layers() if layer.kind == "tokens"]) == 4


class _SplitConcat(nn.Module):
    """Two convolutions concatenated and then normalized (MixNet, DenseNet), next to a plain conv+BN."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 1)
        self.bn_cat = nn.BatchNorm2d(8)
        self.c = nn.Conv2d(8, 6, 3, padding=1)
        self.bn_c = nn.BatchNorm2d(6)

    def forward(self, x):
        y = self.bn_cat(torch.cat([self.a(x), self.b(x)], 1))
        return self.bn_c(self.c(y))


def test_batch_norm_after_a_concatenation_is_not_folded_and_folding_is_deterministic():
    torch.manual_seed(0)
    net = _SplitConcat().eval()
    for bn in (net.bn_cat, net.bn_c):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 16, 16)
    results = [fold_batchnorm(net, x) for _ in range(5)]
    assert [n for _, n in results] == [1] * 5
    folded = results[0][0]
    assert isinstance(folded.bn_cat, nn.BatchNorm2d) and isinstance(folded.bn_c, nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-4)


def _config_only_repo(tmp_path: Path, model_type: str, class_name: str) -> Path:
    """A repo with a real config and a (meaningless) safetensors file: the refusal comes before weights."""
    from safetensors.torch import save_file
    from transformers import CONFIG_MAPPING

    folder = tmp_path / model_type
    folder.mkdir()
    cfg = CONFIG_MAPPING[model_type]().to_dict() | {"architectures": [class_name]}
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))
    return folder


@pytest.mark.parametrize(("model_type", "class_name", "words"), [
    ("dinat", "DinatForImageClassification", "needs the package natten"),
    ("imagegpt", "ImageGPTForImageClassification", "does not take pixel values"),
    ("shieldgemma2", "ShieldGemma2ForImageClassification", "needs a text prompt"),
])
def test_what_cannot_work_is_one_line_with_its_reason(tmp_path, model_type, class_name, words):
    folder = _config_only_repo(tmp_path, model_type, class_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UnsupportedArchitecture, match=words) as err:
            hf_fviz.load_model(str(folder), device="cpu")
    assert "\n" not in str(err.value)


def test_cli_refusal_is_one_line_and_exit_code_2(tmp_path):
    folder = _config_only_repo(tmp_path, "dinat", "DinatForImageClassification")
    proc = subprocess.run([sys.executable, "-m", "hf_fviz.cli", "layers", str(folder)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "natten" in lines[0]
