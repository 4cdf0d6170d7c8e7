"""OpenCLIP repos by hub id and the text objective, on tiny random image-text models in the
offline hub cache (tests/fixtures_openclip.py): OpenCLIP ViT and ConvNeXt towers, transformers
CLIP and SigLIP full models with their tokenizers."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

import hf_fviz
from hf_fviz import errors
from hf_fviz import objectives as obj
from hf_fviz.cli import main
from hf_fviz.engine.transforms import resize_whole
from tests.fixtures_openclip import MEAN, ORG, STD

VIT, CONVNEXT = f"{ORG}/tiny-openclip-vit", f"{ORG}/tiny-openclip-convnext"
TIMM_VIT, RESNET = f"{ORG}/tiny-openclip-timm-vit", f"{ORG}/tiny-openclip-rn"
CLIP, SIGLIP = f"{ORG}/tiny-clip-text", f"{ORG}/tiny-siglip-text"
IMAGE_TEXT = [VIT, CONVNEXT, CLIP, SIGLIP]
FAST = {"steps": 4, "size": 64, "crops": 1}


def _snapshot(hub_repos, repo: str) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo, revision=hub_repos[repo]))


def _open_clip_reference(hub_repos, repo: str):
    """The same repo built by open_clip alone (its own loading of the local folder)."""
    import open_clip

    folder = _snapshot(hub_repos, repo)
    model = open_clip.create_model(f"local-dir:{folder}").eval()
    return model, open_clip.get_tokenizer(f"local-dir:{folder}")


# ------------------------------------------------------------------------------------ loading
def test_openclip_vit_tower_by_id(hub_repos):
    vm = hf_fviz.load_model(VIT, device="cpu")
    assert vm.library == "open_clip" and vm.family == "vit" and vm.revision == hub_repos[VIT]
    assert vm.input_size == (32, 32) and vm.mean == pytest.approx(MEAN) and vm.std == pytest.approx(STD)
    assert vm.labels is None and not vm.has_head and vm.embedding_layer == "embedding"
    names = [layer.name for layer in vm.layers()]
    assert names == ["visual.transformer.resblocks.0.mlp.gelu", "visual.transformer.resblocks.0",
                     "visual.transformer.resblocks.1.mlp.gelu", "visual.transformer.resblocks.1", "embedding"]
    for layer in vm.layers()[:-1]:
        assert layer.kind == "tokens" and layer.prefix_tokens == 1 and layer.grid == (4, 4)
    assert vm.layer("visual.transformer.resblocks.0.mlp.gelu").units == 4 * vm.layer("visual.transformer.resblocks.0").units
    assert vm.layer("embedding").shape == (16,) and vm.default_layer == "embedding"
    assert not any("text" in n or "token_embedding" in n for n, _ in vm.module.named_parameters())


def test_openclip_convnext_tower_by_id():
    vm = hf_fviz.load_model(CONVNEXT, device="cpu")
    assert vm.library == "open_clip" and vm.family == "cnn" and vm.input_size == (64, 64)
    layers = {layer.name: layer for layer in vm.layers()}
    block, hidden = layers["visual.trunk.stages.1.blocks.1"], layers["visual.trunk.stages.1.blocks.1.mlp.act"]
    assert block.kind == hidden.kind == "conv"
    assert block.shape == (32, 8, 8) and hidden.shape == (128, 8, 8)  # channels-last MLP turned to N, C, H, W
    assert list(layers)[-1] == "embedding" and layers["embedding"].units == 16
    # The hidden read is GELU(fc1(x)) of the block's own (channels-last) input, in N, C, H, W.
    trunk_block = vm.module.visual.trunk.stages[1].blocks[1]
    seen = {}
    handle = trunk_block.mlp.fc1.register_forward_hook(lambda _m, _i, o: seen.setdefault("fc1", o.detach().clone()))
    x = vm.normalize(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    try:
        got = vm.activations(x, hidden.name)
    finally:
        handle.remove()
    torch.testing.assert_close(got, trunk_block.mlp.act(seen["fc1"]).permute(0, 3, 1, 2))


@pytest.mark.parametrize(("repo", "family", "first", "kind"), [
    (TIMM_VIT, "vit", "visual.trunk.blocks.0.mlp.act", "tokens"),
    (RESNET, "cnn", "visual.layer1.0", "conv"),
])
def test_other_openclip_towers_by_id(repo, family, first, kind):
    vm = hf_fviz.load_model(repo, device="cpu")
    layers = vm.layers()
    assert vm.family == family and layers[0].name == first and layers[-1].name == "embedding"
    assert all(layer.kind == kind for layer in layers[:-1])
    if kind == "tokens":  # timm's own count: test_vit has a class token, 160 px / 16 px patches
        assert {(layer.prefix_tokens, layer.grid) for layer in layers[:-1]} == {(1, (10, 10))}


@pytest.mark.parametrize("repo", [VIT, CONVNEXT, TIMM_VIT, RESNET])
def test_openclip_embeddings_equal_open_clips_own(hub_repos, repo):
    """The weights are the checkpoint's: image and text embeddings equal open_clip's own model."""
    vm = hf_fviz.load_model(repo, device="cpu")
    ref, tokenizer = _open_clip_reference(hub_repos, repo)
    x = vm.normalize(torch.rand(2, 3, *vm.input_size, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        torch.testing.assert_close(vm.activations(x, "embedding"), ref.encode_image(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(vm.embed_text(["a red apple", "a dog"]), ref.encode_text(tokenizer(["a red apple", "a dog"])))
    assert all(not m._forward_hooks for m in vm.module.modules())


@pytest.mark.parametrize("repo", [CLIP, SIGLIP])
def test_transformers_image_text_embeddings_equal_the_full_models(hub_repos, repo):
    import transformers as tf

    vm = hf_fviz.load_model(repo, device="cpu")
    assert vm.library == "transformers" and vm.layers()[-1].name == "embedding"
    assert not any("text" in n for n, _ in vm.module.named_parameters())  # the text tower stays outside
    folder = _snapshot(hub_repos, repo)
    siglip = repo == SIGLIP
    full = (tf.SiglipModel if siglip else tf.CLIPModel).from_pretrained(str(folder), local_files_only=True).eval()
    tok = tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    x = vm.normalize(torch.rand(2, 3, *vm.input_size, generator=torch.Generator().manual_seed(2)))
    texts = ["a red apple", "a dog"]
    batch = tok(texts, padding="max_length" if siglip else True, truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        image = full.get_image_features(pixel_values=x)
        text = full.get_text_features(**({"input_ids": batch["input_ids"]} if siglip else batch))
    image, text = getattr(image, "pooler_output", image), getattr(text, "pooler_output", text)
    torch.testing.assert_close(vm.activations(x, "embedding"), image, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(vm.embed_text(texts), text, rtol=1e-4, atol=1e-5)


def test_vision_only_and_classifier_models_have_no_text_tower():
    for repo in ("org/tiny-resnet", "hf-internal/tiny-clip-vision"):
        vm = hf_fviz.load_model(repo, device="cpu")
        assert vm.text_encoder is None and "embedding" not in [layer.name for layer in vm.layers()]
        with pytest.raises(errors.NoTextTower, match="has no text tower"):
            vm.embed_text(["a dog"])


# ------------------------------------------------------------------------------------ text objective
def _similarities(vm, vis, texts) -> torch.Tensor:
    """cos(image i's embedding, text j's embedding) for the final images, as the model sees them."""
    images = torch.stack([torch.from_numpy(v.image).permute(2, 0, 1) for v in vis])
    with torch.no_grad():
        emb = vm.activations(vm.normalize(resize_whole(images, vm.input_size)), "embedding")
    return torch.nn.functional.cosine_similarity(emb[:, None, :], vm.embed_text(texts)[None, :, :], dim=-1)


@pytest.mark.parametrize("repo", IMAGE_TEXT)
def test_text_objective_raises_the_similarity_to_its_own_text(repo):
    """A text run ends far closer to its text than it started. Random tiny text towers give
    correlated embeddings (cos 0.75-0.97 between these two texts), so the text itself is checked
    with the contrast A - B against B - A: the first image must lean to A, relative to B, by much
    more than the second. A text objective that ignored its text, or pushed the wrong way, fails."""
    vm = hf_fviz.load_model(repo, device="cpu")
    a, b = "a red apple", "a dog"
    vis = hf_fviz.visualize(vm, objectives=[obj.text(a) - obj.text(b), obj.text(b) - obj.text(a), obj.text(a)],
                            steps=24, size=64, crops=2, seed=0)
    sims = _similarities(vm, vis, [a, b])
    lean_to_a = sims[:, 0] - sims[:, 1]
    assert lean_to_a[0] > lean_to_a[1] + 0.1
    assert vis[0].objective == pytest.approx(float(lean_to_a[0]), abs=1e-4)  # the reported value is this contrast
    plain = vis[2]
    assert plain.layer == "embedding" and plain.label == "text('a red apple')" and plain.unit is None
    assert plain.objective == pytest.approx(float(sims[2, 0]), abs=1e-4)  # the cosine, on the final image
    assert plain.objective > float(plain.history[0]) + 0.05  # vs the start image


def test_text_objectives_compose_and_need_a_model():
    vm = hf_fviz.load_model(VIT, device="cpu")
    combo = (obj.text("a red apple") - 0.5 * obj.text("a dog")).bind(vm)
    emb = torch.randn(3, 16, generator=torch.Generator().manual_seed(3))
    a, d = vm.embed_text(["a red apple", "a dog"])
    cos = torch.nn.functional.cosine_similarity
    torch.testing.assert_close(combo(emb), cos(emb, a[None], dim=-1) - 0.5 * cos(emb, d[None], dim=-1))
    assert combo.layers() == ("embedding",)
    with pytest.raises(errors.InvalidSettings, match="not bound"):
        obj.text("a dog")(emb)
    with pytest.raises(errors.InvalidSettings):
        obj.text("   ")
    with pytest.raises(errors.NoTextTower):
        hf_fviz.visualize("org/tiny-resnet", objectives=[obj.text("a dog")], **FAST)


# ------------------------------------------------------------------------------------ command line
def test_cli_layers_and_channel_of_an_openclip_block(tmp_path, capsys):
    assert main(["layers", VIT]) == 0
    listing = capsys.readouterr().out
    assert "open_clip" in listing and "visual.transformer.resblocks.1.mlp.gelu" in listing and "embedding" in listing
    out = tmp_path / "vit"
    assert main(["visualize", CONVNEXT, "--layer", "visual.trunk.stages.2.blocks.1", "--units", "5",
                 "--out", str(out), "--steps", "4", "--size", "64", "--crops", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["library"] == "open_clip" and manifest["items"][0]["unit"] == 5
    assert (out / manifest["items"][0]["image"]).is_file()


def test_cli_text_writes_one_image_per_text(tmp_path):
    out = tmp_path / "text"
    assert main(["visualize", VIT, "--text", "a red apple", "--text", "a dog", "--out", str(out),
                 "--steps", "4", "--size", "64", "--crops", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layer"] == "embedding"
    assert [item["label"] for item in manifest["items"]] == ["text('a red apple')", "text('a dog')"]
    assert all((out / item["image"]).is_file() and -1 <= item["objective"] <= 1 for item in manifest["items"])


@pytest.mark.parametrize(("args", "message"), [
    (["org/tiny-resnet", "--text", "a dog"], "org/tiny-resnet has no text tower"),
    (["hf-internal/tiny-clip", "--text", "a dog"], "has no tokenizer files"),  # a CLIP repo saved without one
    ([VIT, "--text", "a dog", "--layer", "visual.transformer.resblocks.0"], "drop --layer"),
    ([VIT, "--text", " "], "non-empty text"),
    ([VIT, "--text", "a dog", "--units", "1"], "not allowed with argument"),
])
def test_cli_text_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    code = main(["visualize", *args, "--out", str(out), "--steps", "2", "--size", "32", "--crops", "1"]) \
        if "--units" not in args else _argparse_exit(["visualize", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def _argparse_exit(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return int(stop.value.code)


def test_missing_open_clip_package_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # `import open_clip` now raises ImportError
    with pytest.raises(errors.MissingDependency, match=r"hf-fviz\[open_clip\]"):
        hf_fviz.load_model(VIT)
    assert main(["layers", VIT]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'hf-fviz[open_clip]'" in err


# ------------------------------------------------------------------------------------ repo detection and safety
def test_pickle_only_openclip_repo_needs_allow_pickle(hub_repos, tmp_path):
    from safetensors.torch import load_file

    src = _snapshot(hub_repos, VIT)
    folder = tmp_path / "pickle-only"
    folder.mkdir()
    shutil.copy(src / "open_clip_config.json", folder)
    torch.save(load_file(src / "open_clip_model.safetensors"), folder / "open_clip_pytorch_model.bin")
    with pytest.raises(errors.UnsafeWeights, match="allow-pickle"):
        hf_fviz.load_model(str(folder))
    vm = hf_fviz.load_model(str(folder), allow_pickle=True, device="cpu")
    assert vm.library == "open_clip" and vm.layer("embedding").units == 16


def test_hub_repo_with_both_configs_follows_its_card():
    vm = hf_fviz.load_model(f"{ORG}/tiny-clip-dual", device="cpu")  # its card says library_name: open_clip
    assert vm.library == "open_clip" and vm.layers()[0].name == "visual.transformer.resblocks.0.mlp.gelu"


@pytest.mark.parametrize(("card", "library"), [("---\nlibrary_name: open_clip\n---\n", "open_clip"),
                                               ("---\nlibrary_name: transformers\n---\n", "transformers"),
                                               (None, "transformers")])
def test_repo_with_both_configs_follows_its_card(hub_repos, tmp_path, card, library):
    """LAION's repos carry a transformers copy (config.json) beside the OpenCLIP files."""
    folder = tmp_path / "both"
    shutil.copytree(_snapshot(hub_repos, CLIP), folder)
    vit = _snapshot(hub_repos, VIT)
    for name in ("open_clip_config.json", "open_clip_model.safetensors"):
        shutil.copy(vit / name, folder / name)
    if card is not None:
        (folder / "README.md").write_text(card + "# model\n")
    vm = hf_fviz.load_model(str(folder), device="cpu")
    assert vm.library == library and vm.layers()[-1].name == "embedding"


def test_damaged_openclip_config_is_one_line(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"preprocess_cfg": {}}))
    (folder / "open_clip_model.safetensors").write_bytes(b"")
    with pytest.raises(errors.UnsupportedArchitecture, match="no model_cfg"):
        hf_fviz.load_model(str(folder))


@pytest.mark.parametrize("damage", ["truncated", "other model"])
def test_damaged_openclip_weights_are_one_line(hub_repos, tmp_path, damage):
    src = _snapshot(hub_repos, VIT)
    folder = tmp_path / "damaged"
    folder.mkdir()
    shutil.copy(src / "open_clip_config.json", folder)
    if damage == "truncated":
        data = (src / "open_clip_model.safetensors").read_bytes()
        (folder / "open_clip_model.safetensors").write_bytes(data[: len(data) // 3])
    else:  # the weights of another architecture under this config
        shutil.copy(_snapshot(hub_repos, RESNET) / "open_clip_model.safetensors", folder)
    with pytest.raises(errors.CorruptWeights, match="open_clip_model.safetensors") as err:
        hf_fviz.load_model(str(folder))
    assert "\n" not in str(err.value)


def test_text_side_only_for_full_image_text_checkpoints(hub_repos):
    """A classifier fine-tuned from CLIP keeps `text_config` but has no projection to compare in."""
    from hf_fviz.hub.hf_text import add_text_side

    vm = hf_fviz.load_model("org/tiny-resnet", device="cpu")
    folder = _snapshot(hub_repos, CLIP)
    config = json.loads((folder / "config.json").read_text())
    assert add_text_side(vm, folder, {**config, "architectures": ["CLIPForImageClassification"]}, allow_pickle=False) is vm
    assert add_text_side(vm, folder, {**config, "model_type": "clip_vision_model"}, allow_pickle=False) is vm
