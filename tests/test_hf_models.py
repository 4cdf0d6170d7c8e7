"""transformers adapter: tiny random repos from tests/fixtures_hf.py, loaded from the hub cache."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from functools import cache
from pathlib import Path

import pytest
import torch
from torch import nn

from hf_fviz.errors import CorruptWeights, NotAVisionModel, UnknownLayer, UnsafeWeights, UnsupportedArchitecture
from hf_fviz.hub.hf_models import VisionTower, load_transformers, read_preprocessing
from hf_fviz.hub.vision_model import LOGITS, VisionModel
from tests.fixtures_hf import EXPECTED_INPUT_SIZE, MEAN, ORG, STD

VIT_PREFIX = {  # repo -> CLS + distillation + register tokens
    "tiny-vit-classifier": 1,
    "tiny-vit": 1,
    "tiny-deit": 2,
    "tiny-beit": 1,
    "tiny-dinov2": 1,
    "tiny-dinov2-registers": 5,
    "tiny-clip": 1,
    "tiny-clip-vision": 1,
    "tiny-siglip-vision": 0,
    "tiny-siglip": 0,
}
CNN = ["tiny-convnext", "tiny-resnet", "tiny-regnet", "tiny-timmwrapper"]
SWIN = ["tiny-swin"]
ALL = [*VIT_PREFIX, *CNN, *SWIN]
CLASSIFIERS = {"tiny-vit-classifier", "tiny-deit", "tiny-convnext", "tiny-regnet", "tiny-swin", "tiny-timmwrapper"}


def snapshot(name: str) -> Path:
    """The snapshot folder conftest laid out for `hf-internal/<name>`."""
    snaps = Path(os.environ["HF_HUB_CACHE"]) / f"models--{ORG}--{name}" / "snapshots"
    (folder,) = list(snaps.iterdir())
    return folder


def load_dir(folder: Path, model_id: str = "test/model") -> VisionModel:
    config = json.loads((folder / "config.json").read_text())
    return load_transformers(folder, config, model_id=model_id, revision=None, device=torch.device("cpu"),
                             allow_pickle=False, trust_remote_code=False)


@cache
def _load(name: str) -> VisionModel:
    return load_dir(snapshot(name), f"{ORG}/{name}")


@pytest.fixture
def load(hub_repos):  # noqa: ARG001 - depends on the session cache being built
    return _load


def batch(vm: VisionModel, n: int = 2, *, grad: bool = False) -> torch.Tensor:
    torch.manual_seed(0)
    x = vm.normalize(torch.rand(n, 3, *vm.input_size))
    return x.requires_grad_(grad)


def all_hooks(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


# ------------------------------------------------------------------------------- catalogue
@pytest.mark.parametrize("name", ALL)
def test_catalogue_kinds_and_real_module_paths(load, name):
    vm = load(name)
    layers = vm.layers()
    assert vm.library == "transformers"
    modules = dict(vm.module.named_modules())
    kinds = {layer.kind for layer in layers if layer.name != LOGITS}
    if name in VIT_PREFIX:
        assert vm.family == "vit" and kinds == {"tokens"}
    else:
        assert kinds == {"conv"}
        assert vm.family == ("vit" if name in SWIN else "cnn")
    assert len(layers) >= 4
    for layer in layers:
        if layer.name != LOGITS:
            assert layer.name in modules, layer.name  # a path users see in named_modules()
    assert (layers[-1].name == LOGITS) == (name in CLASSIFIERS)
    assert sum(layer.name == LOGITS for layer in layers) == (name in CLASSIFIERS)


@pytest.mark.parametrize("name", list(VIT_PREFIX))
def test_vit_tokens_prefix_grid_and_mlp_hidden(load, name):
    vm = load(name)
    blocks = [layer for layer in vm.layers() if layer.kind == "tokens" and not layer.name.endswith("activation_fn")]
    mlps = [layer for layer in vm.layers() if layer.name.endswith("mlp.activation_fn")]
    assert len(blocks) == 2 and len(mlps) == 2  # num_hidden_layers=2 in every fixture
    for layer in blocks + mlps:
        assert layer.prefix_tokens == VIT_PREFIX[name]
        assert layer.grid == (4, 4)  # 32 px / patch 8
        assert layer.shape[0] == VIT_PREFIX[name] + 16
    assert all(layer.units == 32 for layer in blocks)  # hidden_size
    assert all(layer.units in (37, 128) for layer in mlps)  # intermediate_size (DINOv2: mlp_ratio 4)
    # the MLP hidden layer is read after the non-linearity: activation(fc1 output)
    modules = dict(vm.module.named_modules())
    act = modules[mlps[1].name]
    fc1 = modules[mlps[1].name.rsplit(".", 1)[0] + ".fc1"]
    seen = []
    handle = fc1.register_forward_hook(lambda _m, _i, out: seen.append(out))
    x = batch(vm)
    try:
        with torch.no_grad():
            vm.module(x)
    finally:
        handle.remove()
    torch.testing.assert_close(vm.activations(x, mlps[1]), act(seen[0]))
    assert not torch.allclose(act(seen[0]), seen[0])


@pytest.mark.parametrize("name", ALL)
def test_activations_match_catalogue_shapes(load, name):
    vm = load(name)
    x = batch(vm)
    for layer in vm.layers():
        out = vm.activations(x, layer)
        assert tuple(out.shape) == (2, *layer.shape), layer.name


@pytest.mark.parametrize("name", ["tiny-vit-classifier", "tiny-deit", "tiny-dinov2-registers", "tiny-clip", "tiny-siglip"])
def test_token_layers_equal_the_models_hidden_states(load, name):
    vm = load(name)
    x = batch(vm)
    with torch.no_grad():
        hidden = vm.module(x, output_hidden_states=True).hidden_states
    blocks = [layer for layer in vm.layers() if layer.kind == "tokens" and not layer.name.endswith("activation_fn")]
    for i, layer in enumerate(blocks):
        torch.testing.assert_close(vm.activations(x, layer), hidden[i + 1])


def test_swin_blocks_are_nchw_in_row_major_order(load):
    """Swin's (N, L, C) tokens reshaped to NCHW equal transformers' own reshaped stage outputs,
    also at an input size that is not the model's (needs the size of the actual input)."""
    vm = load("tiny-swin")
    names = [layer.name for layer in vm.layers()]
    assert names[:2] == ["swin.encoder.layers.0.blocks.0.mlp.activation_fn", "swin.encoder.layers.0.blocks.0"]
    for size in [(32, 32), (40, 56)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            ref = vm.module(x, output_hidden_states=True, output_hidden_states_before_downsampling=True)
        torch.testing.assert_close(vm.activations(x, "swin.encoder.layers.0.blocks.0"), ref.reshaped_hidden_states[1])
        torch.testing.assert_close(vm.activations(x, "swin.encoder.layers.1.blocks.1"), ref.reshaped_hidden_states[2])
    assert vm.layer("swin.encoder.layers.0.blocks.0.mlp.activation_fn").shape == (64, 8, 8)


@pytest.mark.parametrize("name", ["tiny-convnext", "tiny-resnet"])
def test_cnn_catalogue_has_stem_blocks_and_stages(load, name):
    vm = load(name)
    hidden = [layer for layer in vm.layers() if layer.name.endswith(".act")]  # MLP hidden layers (ConvNeXt)
    names = [layer.name for layer in vm.layers() if layer not in hidden]
    base = "convnext." if name == "tiny-convnext" else ""
    if name == "tiny-convnext":  # every block's MLP hidden layer, 4x the block's width, as a map
        assert len(hidden) == 5 and vm.layer(f"{base}encoder.stages.1.layers.1.act").shape == (64, 6, 6)
    stem = f"{base}embeddings" if name == "tiny-convnext" else "embedder"
    assert names[0] == stem
    two_blocks = 1 if name == "tiny-convnext" else 2  # the stage with depth 2
    expected = [f"{base}encoder.stages.{two_blocks}.layers.0", f"{base}encoder.stages.{two_blocks}.layers.1",
                f"{base}encoder.stages.{two_blocks}"]
    i = names.index(expected[0])
    assert names[i:i + 3] == expected
    channels = [vm.layer(f"{base}encoder.stages.{s}").units for s in range(4)]
    assert channels == [8, 16, 32, 64]


def test_timmwrapper_layers_come_from_the_inner_timm_model(load):
    vm = load("tiny-timmwrapper")
    names = [layer.name for layer in vm.layers()]
    assert "timm_model.layer1" in names and "timm_model.layer4" in names
    assert type(vm.module.timm_model).__module__.startswith("timm.")


# ------------------------------------------------------------------------------- running
@pytest.mark.parametrize("name", ["tiny-vit", "tiny-deit", "tiny-clip", "tiny-convnext", "tiny-swin", "tiny-timmwrapper"])
def test_early_exit_stops_the_forward_pass(load, name):
    vm = load(name)
    first = vm.layers()[0].name
    last_module = [layer.name for layer in vm.layers() if layer.name != LOGITS][-1]
    fired: list[str] = []
    handle = dict(vm.module.named_modules())[last_module].register_forward_hook(lambda *a: fired.append("late"))
    try:
        vm.activations(batch(vm), first)
        assert fired == []
        vm.activations(batch(vm), last_module)
        assert fired == ["late"]  # the hook itself works
    finally:
        handle.remove()


@pytest.mark.parametrize("name", ["tiny-vit-classifier", "tiny-swin", "tiny-clip", "tiny-resnet"])
def test_no_hook_survives_a_call(hub_repos, name):
    # A fresh model: transformers v5 itself leaves output-capturing hooks after any call with
    # output_hidden_states=True (other tests here make such calls on the cached models).
    vm = load_dir(snapshot(name))
    assert all_hooks(vm.module) == 0  # loading and probing the catalogue left none
    x = batch(vm, grad=True)
    for layer in vm.layers():
        vm.activations(x, layer).sum().backward()
    with pytest.raises(UnknownLayer):
        vm.activations(x, "no.such.layer")
    assert all_hooks(vm.module) == 0


@pytest.mark.parametrize("name", ["tiny-vit-classifier", "tiny-dinov2", "tiny-siglip", "tiny-swin", "tiny-convnext", "tiny-timmwrapper"])
def test_gradient_reaches_the_input(load, name):
    vm = load(name)
    targets = [vm.layers()[0], [layer for layer in vm.layers() if layer.name != LOGITS][-1]]
    if vm.has_head:
        targets.append(vm.layer(LOGITS))
    for layer in targets:
        x = batch(vm, grad=True)
        vm.activations(x, layer).square().mean().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0, layer.name
    assert not any(p.requires_grad for p in vm.module.parameters())
    assert not vm.module.training


def test_other_input_sizes_work_through_position_interpolation(load):
    for name in ["tiny-vit", "tiny-clip", "tiny-siglip-vision", "tiny-beit"]:
        vm = load(name)
        out = vm.activations(torch.randn(1, 3, 48, 64), vm.layers()[-1])
        assert out.shape[1] == VIT_PREFIX[name] + 6 * 8


# ------------------------------------------------------------------------------- heads and labels
@pytest.mark.parametrize("name", ALL)
def test_logits_and_labels_only_for_classifiers(load, name):
    vm = load(name)
    if name in CLASSIFIERS:
        assert vm.has_head
        assert vm.labels == ["cat", "dog", "fish"]
        logits = vm.activations(batch(vm), LOGITS)
        assert logits.shape == (2, 3)
        assert vm.class_index("Dog") == 1
    else:
        assert not vm.has_head and vm.labels is None
        with pytest.raises(UnknownLayer):
            vm.activations(batch(vm), LOGITS)


def test_deit_logits_are_the_teacher_models_averaged_logits(load):
    vm = load("tiny-deit")
    x = batch(vm)
    with torch.no_grad():
        out = vm.module(x)
    torch.testing.assert_close(vm.activations(x, LOGITS), (out.cls_logits + out.distillation_logits) / 2)


@pytest.mark.parametrize("arch", ["ViTModel", "ViTForMaskedImageModeling"])
def test_backbone_architecture_never_gets_a_head(hub_repos, tmp_path, arch):
    """The same classifier checkpoint declared as a backbone (or a head we do not use) loads as the
    base model with its weights, without a warning (its missing pooler feeds no catalogued layer)."""
    folder = tmp_path / "as-backbone"
    shutil.copytree(snapshot("tiny-vit-classifier"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = [arch]
    (folder / "config.json").write_text(json.dumps(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vm = load_dir(folder)
    assert type(vm.module).__name__ == "ViTModel" and not vm.has_head and vm.labels is None
    assert "classifier" not in dict(vm.module.named_modules())
    ref = _load("tiny-vit-classifier").module.vit.layers[0].mlp.fc1.weight
    torch.testing.assert_close(vm.module.layers[0].mlp.fc1.weight, ref)


def test_random_weights_are_reported(hub_repos, tmp_path):
    """A backbone checkpoint declared as a classifier would get a random head: say so."""
    folder = tmp_path / "fake-classifier"
    shutil.copytree(snapshot("tiny-vit"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["ViTForImageClassification"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match="classifier"):
        load_dir(folder)


# ------------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("name", ALL)
def test_preprocessing_comes_from_the_repo(load, name):
    vm = load(name)
    assert vm.mean == pytest.approx(tuple(MEAN)) and vm.std == pytest.approx(tuple(STD))
    assert vm.input_size == EXPECTED_INPUT_SIZE[name]
    x = vm.normalize(torch.full((1, 3, 2, 2), 0.5))
    assert x[0, :, 0, 0].tolist() == pytest.approx([(0.5 - m) / s for m, s in zip(MEAN, STD)])


def test_preprocessing_without_processor_file_uses_the_model_config(hub_repos, tmp_path):
    folder = tmp_path / "no-processor"
    shutil.copytree(snapshot("tiny-vit"), folder)
    (folder / "preprocessor_config.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    prep = read_preprocessing(folder, config)
    assert prep.input_size == (32, 32)  # config.image_size, not the processor class default 224
    assert prep.mean == (0.5, 0.5, 0.5) and prep.std == (0.5, 0.5, 0.5)  # ViTImageProcessor's defaults
    assert "defaults" in prep.source


def test_preprocessing_do_normalize_false_and_size_forms(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False, "size": 40}))
    prep = read_preprocessing(tmp_path, {"model_type": "vit", "image_size": 32})
    assert prep.mean == (0.0, 0.0, 0.0) and prep.std == (1.0, 1.0, 1.0) and prep.input_size == (40, 40)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.1, 0.2, 0.3], "image_std": [0.3, 0.2, 0.1], "do_center_crop": False,
         "crop_size": {"height": 16, "width": 16}, "size": {"height": 24, "width": 36}}))
    prep = read_preprocessing(tmp_path, {"model_type": "vit"})
    assert prep.input_size == (24, 36) and prep.mean == (0.1, 0.2, 0.3)


# ------------------------------------------------------------------------------- multimodal towers
def test_clip_model_loads_only_its_vision_tower_with_the_checkpoint_weights(load):
    from transformers import CLIPModel

    vm = load("tiny-clip")
    assert isinstance(vm.module, VisionTower)
    names = [n for n, _ in vm.module.named_parameters()]
    assert names and all(n.startswith("vision_model.") for n in names)
    assert not any("text" in n for n in names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = CLIPModel.from_pretrained(str(snapshot("tiny-clip")), local_files_only=True)
    full_modules = dict(full.named_modules())
    for layer in vm.layers():  # layer names are the full CLIPModel's module paths
        assert layer.name in full_modules, layer.name
    torch.testing.assert_close(vm.module.vision_model.encoder.layers[1].mlp.fc2.weight,
                               full.vision_model.encoder.layers[1].mlp.fc2.weight)
    x = batch(vm)
    with torch.no_grad():
        ref = full.vision_model(pixel_values=x).last_hidden_state
    torch.testing.assert_close(vm.module(x).last_hidden_state, ref)


def test_siglip_model_loads_only_its_vision_tower(load):
    vm = load("tiny-siglip")
    assert isinstance(vm.module, VisionTower)
    assert not any("text" in n for n, _ in vm.module.named_parameters())


# ------------------------------------------------------------------------------- refusals
def test_bert_is_not_a_vision_model(hub_repos):
    with pytest.raises(NotAVisionModel) as err:
        load_dir(snapshot("tiny-bert"), f"{ORG}/tiny-bert")
    msg = str(err.value)
    assert "\n" not in msg and "text model" in msg and "BertForMaskedLM" in msg


@pytest.mark.parametrize(("model_type", "arch", "what"), [
    ("whisper", "WhisperForConditionalGeneration", "audio model"),
    ("wav2vec2", "Wav2Vec2ForCTC", "audio model"),
    ("gpt2", "GPT2LMHeadModel", "text model"),
])
def test_text_and_audio_configs_are_refused_before_loading(tmp_path, model_type, arch, what):
    cfg = {"model_type": model_type, "architectures": [arch]}
    with pytest.raises(NotAVisionModel, match=what):
        load_transformers(tmp_path, cfg, model_id="x/y", revision=None, device=torch.device("cpu"),
                          allow_pickle=False, trust_remote_code=False)


def test_model_type_unknown_to_transformers_is_one_line(tmp_path):
    cfg = {"model_type": "no_such_vision_v9", "architectures": ["NoSuchVisionV9ForImageClassification"]}
    with pytest.raises(UnsupportedArchitecture, match="update transformers") as err:
        load_transformers(tmp_path, cfg, model_id="org/future-model", revision=None, device=torch.device("cpu"),
                          allow_pickle=False, trust_remote_code=False)
    assert "no_such_vision_v9" in str(err.value) and "\n" not in str(err.value)


def test_truncated_weights_raise_corrupt_weights(hub_repos, tmp_path):
    folder = tmp_path / "truncated"
    shutil.copytree(snapshot("tiny-vit"), folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.unlink()  # the copy is a symlink into the cache's blobs: never write through it
    weights.write_bytes(data[:3000])
    with pytest.raises(CorruptWeights):
        load_dir(folder)


def test_pickle_only_weights_need_allow_pickle(hub_repos, tmp_path):
    folder = tmp_path / "pickle-only"
    shutil.copytree(snapshot("tiny-vit"), folder)
    (folder / "model.safetensors").unlink()
    ref = _load("tiny-vit").module
    torch.save(ref.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(UnsafeWeights, match="allow"):
        load_dir(folder)
    config = json.loads((folder / "config.json").read_text())
    vm = load_transformers(folder, config, model_id="x/pickle", revision=None, device=torch.device("cpu"),
                           allow_pickle=True, trust_remote_code=False)
    torch.testing.assert_close(vm.module.layers[1].mlp.fc2.weight, ref.layers[1].mlp.fc2.weight)


# ------------------------------------------------------------------------------- through load_model
@pytest.mark.parametrize("name", ["tiny-vit", "tiny-vit-classifier", "tiny-clip", "tiny-swin", "tiny-timmwrapper"])
def test_load_model_by_hub_id(hub_repos, name):
    import hf_fviz

    vm = hf_fviz.load_model(f"{ORG}/{name}", device="cpu")
    assert vm.library == "transformers"
    assert vm.revision == hub_repos[f"{ORG}/{name}"]
    text_side = ["embedding"] if name == "tiny-clip" else []  # load_model adds an image-text repo's embedding (hub/hf_text.py)
    assert [layer.name for layer in vm.layers()] == [layer.name for layer in _load(name).layers()] + text_side


def test_load_model_refuses_bert(hub_repos):
    import hf_fviz

    with pytest.raises(NotAVisionModel):
        hf_fviz.load_model(f"{ORG}/tiny-bert", device="cpu")
