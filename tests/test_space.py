"""The Gradio Space (space/app.py): launched on 127.0.0.1 inside the test, driven through its API
with gradio_client and, for the page itself, in headless Debian Chromium with Playwright."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("HF_FVIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def _load_app():
    """The Space's entry module (space/app.py starts it; the parts live in hf_fviz.space)."""
    return importlib.import_module("hf_fviz.space.app")


@pytest.fixture(scope="module")
def app():
    return _load_app()


@pytest.fixture(scope="module")
def caps(app):
    # Small caps so that every run takes a second or two on tiny models.
    return app.Caps(default_steps=8, max_steps=48, default_size=64, max_size=128, min_size=32, crops=2, max_crops=4,
                    max_units=4, queue_size=8, models_in_memory=4, previews=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app, caps, tmp_path_factory):
    os.environ["HF_FVIZ_SPACE_DIR"] = str(tmp_path_factory.mktemp("space-work"))
    demo = app.build_demo(caps, default_model="org/tiny-resnet")
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True,
                           quiet=True, ssr_mode=False)
    try:
        yield url.rstrip("/")
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False, analytics_enabled=False)


# ---------------------------------------------------------------------------- API
def test_api_endpoints_are_the_contract(client):
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/layers" in named and "/visualize" in named
    params = [p["parameter_name"] for p in named["/visualize"]["parameters"]]
    assert len(params) == 6
    assert [p["parameter_name"] for p in named["/layers"]["parameters"]] == ["model_id"]


def test_layers_fills_the_layer_and_class_pickers(client):
    layer, classes, units, summary, gallery, status = client.predict("org/tiny-resnet", api_name="/layers")
    names = [value for _, value in layer["choices"]]
    assert layer["value"] == "logits" and names[-1] == "logits"
    import hf_fviz

    assert names == [layer.name for layer in hf_fviz.load_model("org/tiny-resnet", device="cpu").layers()]
    assert "layer4" in names
    assert [label for label, _ in classes["choices"]][:2] == ["cat (0)", "dog (1)"]
    assert classes["visible"] is True and units["visible"] is False
    assert classes["value"] == ["4"]  # "tabby cat", a preferred default class
    assert "org/tiny-resnet" in summary and "5 classes" in summary
    assert not gallery  # the tiny repo's card has no hf-fviz section
    assert "loaded" in status


def _check_gallery(gallery, *, n_units: int, size: int, words: list[str]):
    assert len(gallery) == 2 * n_units  # each image and its transparency view
    for i, entry in enumerate(gallery):
        with Image.open(entry["image"]) as img:
            assert img.size == (size, size)
            assert img.mode == ("RGBA" if i % 2 else "RGB")
            arr = np.asarray(img)
        assert arr[..., :3].std() > 1.0  # an optimized image, not a flat canvas
        assert ("transparency" in entry["caption"]) == bool(i % 2)
    captions = " ".join(e["caption"] for e in gallery)
    for word in words:
        assert word in captions


def test_visualize_classes_by_name_and_index(client):
    gallery = client.predict("org/tiny-resnet", "logits", "dog, 2", "maco", 8, 64, api_name="/visualize")
    _check_gallery(gallery, n_units=2, size=64, words=["dog (1) · ", "fish (2) · ", "dog · transparency"])


def test_visualize_units_of_a_conv_layer(client):
    gallery = client.predict("org/tiny-resnet", "layer2", "0-1, 5", "fourier", 8, 48, api_name="/visualize")
    _check_gallery(gallery, n_units=3, size=48, words=["layer2:0 · ", "layer2:1 · ", "layer2:5 · "])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("org/does-not-exist", "logits", "1", "maco", 8, 64), "not in the local cache"),
        (("not a model id!", "logits", "1", "maco", 8, 64), "malformed model id"),
        (("org/tiny-resnet", "", "1", "maco", 8, 64), "Choose a layer"),
        (("org/tiny-resnet", "layer9", "1", "maco", 8, 64), "unknown layer 'layer9'"),
        (("org/tiny-resnet", "logits", "", "maco", 8, 64), "Pick at least one class"),
        (("org/tiny-resnet", "logits", "7", "maco", 8, 64), "valid units are 0..4"),
        (("org/tiny-resnet", "logits", "zebra", "maco", 8, 64), "unknown class 'zebra'"),
        (("org/tiny-resnet", "layer1", "a", "maco", 8, 64), "are indices"),
        (("org/tiny-resnet", "logits", "0,1,2,3,4", "maco", 8, 64), "at most 4"),
        (("org/tiny-resnet", "logits", "1", "maco", 4096, 64), "steps must be a whole number in 1..48"),
        (("org/tiny-resnet", "logits", "1", "maco", 8, 4096), "size must be a whole number in 32..128"),
        (("org/tiny-resnet", "logits", "1", "deepdream", 8, 64), "unknown method"),
        (("org/pickle-only", "logits", "1", "maco", 8, 64), "pickle"),
        (("org/tiny-vit-reg", "logits", "1", "maco", 8, 64), "unknown layer 'logits'"),
    ],
)
def test_bad_input_is_a_clear_message(client, args, expected):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, api_name="/visualize")
    message = str(info.value)
    assert expected in message
    assert "Traceback" not in message and "File \"" not in message


def test_bad_model_on_load_is_a_clear_message(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="not in the local cache"):
        client.predict("org/nope", api_name="/layers")
    with pytest.raises(AppError, match="Enter a model ID"):
        client.predict("  ", api_name="/layers")


# ---------------------------------------------------------------------------- caps
def test_model_above_the_parameter_budget_is_refused_after_load(app):
    store = app.ModelStore(app.Caps(max_params=10_000))
    with pytest.raises(app.gr.Error, match="M parameters; this Space visualizes models up to"):
        store.get("org/tiny-resnet")
    assert app.ModelStore(app.Caps()).get("org/tiny-resnet").id == "org/tiny-resnet"


def test_hub_model_above_the_budget_is_refused_before_download(app, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    asked = []

    class Meta:
        parameter_count = {"F32": 300_000_000, "I64": 1}

    def metadata(self, repo_id, revision=None, **kwargs):
        asked.append((repo_id, revision))
        return Meta()

    def no_load(*args, **kwargs):
        raise AssertionError("the model must not be downloaded")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "get_safetensors_metadata", metadata)
    monkeypatch.setattr(app.hf_fviz, "load_model", no_load)
    with pytest.raises(app.gr.Error, match="300 M parameters"):
        app.ModelStore(app.Caps(max_params=100_000_000)).get("big/model@v2")
    assert asked == [("big/model", "v2")]
    # builtin and local models are never looked up on the hub
    assert app.hub_parameter_count("builtin:mobilenetv2") is None


def test_parse_units_and_caps(app, caps):
    assert app.parse_units(" 3, 7 ,, 10-12, 3") == ["3", "7", "10", "11", "12"]
    assert app.parse_units(["tabby cat", "2"]) == ["tabby cat", "2"]
    req = app.make_request(caps, "org/tiny-resnet", "logits", "tabby cat,1", "maco", 16.0, 64)
    assert req.classes == ("tabby cat", "1") and req.units == () and req.steps == 16 and req.crops == caps.crops
    assert req.call_kwargs() == {"layer": "logits", "classes": ["tabby cat", "1"], "steps": 16, "size": 64, "crops": 2, "seed": 0}
    with pytest.raises(app.gr.Error, match="whole number"):
        app.make_request(caps, "org/tiny-resnet", "logits", "1", "maco", 8.5, 64)


def test_env_vars_override_caps(app, monkeypatch):
    monkeypatch.setenv("HF_FVIZ_SPACE_MAX_STEPS", "1000")
    monkeypatch.setenv("HF_FVIZ_SPACE_MAX_UNITS", "2")
    caps = app.Caps.from_env()
    assert caps.max_steps == 1000 and caps.max_units == 2
    monkeypatch.setenv("HF_FVIZ_SPACE_DEFAULT_STEPS", "2000")
    with pytest.raises(ValueError, match="inconsistent"):
        app.Caps.from_env()


# ---------------------------------------------------------------------------- streaming
def test_stream_reports_progress_then_results(app, caps):
    store = app.ModelStore(caps)
    req = app.make_request(caps, "org/tiny-resnet", "logits", "cat", "maco", 6, 32)
    events = list(app.optimize_stream(store, req, preview_every=2))
    ticks, result = events[:-1], events[-1]
    assert [t.step for t in ticks] == [1, 2, 3, 4, 5, 6] and all(t.total == 6 for t in ticks)
    assert all(np.isfinite(t.objective) for t in ticks)
    assert len(result) == 1 and result[0].label == "cat"
    run = app.finish_run(store, req, result, 1.0)
    manifest = (run.folder / "manifest.json").read_text()
    assert '"model": "org/tiny-resnet"' in manifest
    import zipfile

    names = zipfile.ZipFile(run.zip_path).namelist()
    assert any(n.endswith("/manifest.json") for n in names) and any(n.endswith("/grid.png") for n in names)
    assert any(n.endswith("/logits/0.png") for n in names) and any(n.endswith("/logits/0_rgba.png") for n in names)


def test_stop_ends_the_worker(app, caps):
    store = app.ModelStore(caps)
    req = app.make_request(caps, "org/tiny-resnet", "logits", "cat", "maco", 48, 64)
    stream = app.optimize_stream(store, req, preview_every=100)
    first = next(stream)
    assert first.step == 1
    stream.close()  # what Gradio does when the visitor presses Stop
    deadline = time.time() + 20
    while any(t.name == "hf_fviz-run" for t in threading.enumerate()) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "hf_fviz-run" for t in threading.enumerate())


# ---------------------------------------------------------------------------- model card
@pytest.fixture(scope="module")
def carded_repo(app, tmp_path_factory):
    """org/tiny-carded: a tiny resnet whose card got an hf-fviz section from a real run + publish."""
    import hf_fviz
    from hf_fviz import render

    from tests.conftest import HUB_CACHE, _ROOT
    from tests.hub_cache import populate_cache

    tmp = tmp_path_factory.mktemp("carded")
    clone = tmp / "clone"
    shutil.copytree(_ROOT / "src" / "org--tiny-resnet", clone)
    (clone / "README.md").write_text("---\nlicense: mit\n---\n# Tiny\n\nA tiny model.\n")
    populate_cache(HUB_CACHE, "org/tiny-carded", clone)
    model = hf_fviz.load_model("org/tiny-carded", device="cpu")
    vis = hf_fviz.visualize(model, classes=["cat", "dog"], steps=4, size=32, crops=1)
    render.save(vis, tmp / "out", model=model)
    hf_fviz.publish("org/tiny-carded", tmp / "out", local_dir=clone)
    populate_cache(HUB_CACHE, "org/tiny-carded", clone)  # a new commit on main, with the card section
    return clone


def test_card_images_show_at_once_on_load(client, carded_repo):
    layer, classes, units, summary, gallery, status = client.predict("org/tiny-carded", api_name="/layers")
    assert "model card" in status
    captions = [entry["caption"] for entry in gallery]
    assert len(gallery) == 2 and any("cat" in c for c in captions) and any("dog" in c for c in captions)
    published = sorted((carded_repo / "feature_visualizations").rglob("0*.png"))
    shown = sorted(Path(entry["image"]).read_bytes() for entry in gallery)
    assert shown == sorted(p.read_bytes() for p in published)


def test_card_images_from_a_local_folder_and_none_for_plain_cards(app, carded_repo):
    local = app.card_images(str(carded_repo))
    assert len(local) == 2
    assert app.card_images("org/tiny-resnet") == []
    assert app.card_images("builtin:mobilenetv2") == []


def test_card_links_outside_the_asset_folder_are_ignored(app):
    assert app._asset_path("feature_visualizations/maco-logits/000_u1.png", "a/b") == "feature_visualizations/maco-logits/000_u1.png"
    assert app._asset_path("https://huggingface.co/a/b/resolve/main/feature_visualizations/x/grid.png", "a/b") == (
        "feature_visualizations/x/grid.png"
    )
    assert app._asset_path("https://evil.example/a/b/resolve/main/feature_visualizations/x.png", "a/b") is None
    assert app._asset_path("feature_visualizations/../model.safetensors.png", "a/b") is None
    assert app._asset_path("README.md", "a/b") is None


# ---------------------------------------------------------------------------- publish
def test_publish_needs_a_login_and_a_run(app):
    publish = app.friendly(app.publish_to_card)

    class Token:
        token = "hf_visitor"

    with pytest.raises(app.gr.Error, match="Sign in with Hugging Face"):
        publish({"model_id": "org/tiny-resnet", "folder": "/x"}, None)
    with pytest.raises(app.gr.Error, match="Run a visualization first"):
        publish(None, Token())
    with pytest.raises(app.gr.Error, match="not a hub model"):
        publish({"model_id": "builtin:mobilenetv2", "folder": "/x"}, Token())


def test_publish_opens_a_pr_with_the_visitors_token(app, monkeypatch, tmp_path):
    publish = app.friendly(app.publish_to_card)

    class Token:
        token = "hf_visitor"

    calls = []

    class Result:
        url = "https://huggingface.co/org/tiny-resnet/discussions/7"

    def fake_publish(model_id, from_dir, **kwargs):
        calls.append((model_id, from_dir, kwargs))
        return Result()

    last = {"model_id": "org/tiny-resnet@main", "folder": str(tmp_path)}
    # offline, the real publish fails with its own one-line message, shown as such
    with pytest.raises(app.gr.Error) as info:
        publish(last, Token())
    assert "Unexpected" not in str(info.value)
    monkeypatch.setattr(app.hf_fviz, "publish", fake_publish)
    text = publish(last, Token())
    assert calls == [("org/tiny-resnet", str(tmp_path), {"create_pr": True, "token": "hf_visitor"})]
    assert Result.url in text

    class LocalStandIn:
        token = app.MOCK_OAUTH_TOKEN

    publish(last, LocalStandIn())  # Gradio's local stand-in login: the machine's own token is used
    assert calls[-1][2]["token"] is None


# ---------------------------------------------------------------------------- browser
def _screenshot(page, tmp_path: Path, name: str) -> None:
    """Screenshots go to the test's folder, and to HF_FVIZ_SCREENSHOTS when set (to look at them)."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("HF_FVIZ_SCREENSHOTS"):
        Path(os.environ["HF_FVIZ_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(os.environ["HF_FVIZ_SCREENSHOTS"]) / name)


@pytest.mark.browser
def test_page_in_headless_chromium(server, carded_repo, tmp_path):
    """The whole flow a visitor goes through: load a model, pick a class, visualize, see the images
    and the objective curve, download the zip; a model whose card has a section shows it on load."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Debian chromium not found at {CHROMIUM}: `make test` installs it (root), or run "
                    "`apt-get install -y chromium` (never `playwright install`), or set HF_FVIZ_CHROMIUM")
    import zipfile

    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page.goto(server)
            summary = page.locator("#fviz-summary")
            expect(summary).to_contain_text("org/tiny-resnet", timeout=30_000)  # the default model, loaded at once

            box = page.locator("#fviz-model textarea, #fviz-model input").first
            box.fill("org/tiny-mobilenetv2")
            page.get_by_role("button", name="Load", exact=True).click()
            expect(summary).to_contain_text("org/tiny-mobilenetv2", timeout=30_000)

            classes = page.locator("#fviz-classes input").first
            classes.click()
            classes.fill("dog")
            page.get_by_role("option", name="dog (1)").click()
            page.keyboard.press("Escape")
            expect(page.locator("#fviz-classes")).to_contain_text("dog (1)")

            page.get_by_role("button", name="Visualize", exact=True).click()
            status = page.locator("#fviz-status")
            expect(status).to_contain_text("Done in", timeout=60_000)
            images = page.locator("#fviz-gallery img")
            expect(images).to_have_count(4, timeout=10_000)  # 2 classes, each image + transparency view
            for i in range(4):  # decoded images, not broken links
                assert images.nth(i).evaluate("img => img.complete && img.naturalWidth") > 0
            curve = page.locator("#fviz-curve")
            expect(curve.locator("canvas, svg").first).to_be_visible(timeout=10_000)  # the objective curve
            expect(curve).not_to_contain_text("No data")
            page.wait_for_timeout(300)
            _screenshot(page, tmp_path, "space-run.png")

            with page.expect_download(timeout=20_000) as download_info:
                page.locator("#fviz-download").click()
            zip_path = tmp_path / download_info.value.suggested_filename
            download_info.value.save_as(zip_path)
            names = zipfile.ZipFile(zip_path).namelist()
            assert any(n.endswith("/manifest.json") for n in names) and sum(n.endswith(".png") for n in names) >= 4

            # a card with an hf-fviz section: its images are in the gallery as soon as the model loads
            box.fill("org/tiny-carded")
            page.get_by_role("button", name="Load", exact=True).click()
            expect(status).to_contain_text("Shown from the model card", timeout=30_000)
            expect(images).to_have_count(2, timeout=10_000)
            expect(page.locator("#fviz-download")).to_be_hidden()  # the zip was the other model's run
            expect(page.locator("#fviz-gallery")).to_contain_text("cat")
            page.wait_for_timeout(300)
            _screenshot(page, tmp_path, "space-card.png")

            # a bad model id shows a message in the page, not a traceback
            box.fill("org/does-not-exist")
            page.get_by_role("button", name="Load", exact=True).click()
            toast = page.locator(".toast-body").first
            expect(toast).to_contain_text("not in the local cache", timeout=20_000)
            assert "Traceback" not in page.content()

            # the model cards link to ?model=ID: that model is loaded on arrival
            page.goto(server + "/?model=org/tiny-convnext")
            expect(summary).to_contain_text("org/tiny-convnext", timeout=30_000)
        finally:
            browser.close()


def test_login_and_publish_only_where_sign_in_works(app, caps, monkeypatch):
    import gradio as gr

    def kinds(demo):
        return {type(block).__name__ for block in demo.blocks.values()}

    import gradio.oauth

    # Off a Space, Gradio stands in for the login with the machine's own account (needs the hub).
    monkeypatch.setattr(gradio.oauth, "_get_mocked_oauth_info", lambda: {"access_token": app.MOCK_OAUTH_TOKEN, "userinfo": {}})
    with pytest.warns(UserWarning, match="OAuth"):
        with_login = app.build_demo(caps, oauth=True, autoload=False)
    assert "LoginButton" in kinds(with_login)
    publish = [b for b in with_login.blocks.values() if isinstance(b, gr.Button) and b.elem_id == "fviz-publish"]
    assert len(publish) == 1 and publish[0].visible is False  # shown once the visitor is logged in
    without = app.build_demo(caps, oauth=False, autoload=False)
    assert "LoginButton" not in kinds(without)
    assert not app.oauth_available()  # tests run offline with no token


def test_space_card():
    """space/README.md is the card `hf-fviz space export` starts from (requirements are written
    by the export: tests/test_space_deploy.py)."""
    import gradio
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(ROOT / "space" / "README.md")
    data = card.data
    assert data.sdk == "gradio" and data.sdk_version == gradio.__version__  # what the tests ran against
    assert (ROOT / "space" / data.app_file).is_file()
    assert data.models and all("/" in m for m in data.models)
    assert data.to_dict()["hf_oauth"] is True and "write-discussions" in data.to_dict()["hf_oauth_scopes"]


def test_every_endpoint_names_itself_and_its_visibility(app, caps):
    """Gradio 6 conventions: explicit api_name and api_visibility on every event; queued events
    carry a concurrency limit; only the API contract and the agent tools are public."""
    demo = app.build_demo(caps, autoload=False, oauth=False)
    public = set()
    for fn in demo.fns.values():
        assert fn.api_name, fn
        if fn.api_visibility == "public":
            public.add(fn.api_name)
        if fn.queue and fn.fn is not None:
            assert fn.concurrency_limit not in (None, "default"), fn.api_name
    assert public == {"layers", "visualize", "list_layers", "visualize_units", "read_card_visualizations"}


def test_image_methods_are_offered_only_when_importable(app, monkeypatch):
    import hf_fviz
    from hf_fviz import api as imagesets

    assert hf_fviz.multifaceted is imagesets.multifaceted and hf_fviz.dual_objective is imagesets.dual_objective
    assert [v for _, v in app.available_methods()] == ["maco", "fourier", "pixel", "facets", "dual"]
    # an hf_fviz without the image-set methods (an older release): the Space offers the rest
    monkeypatch.delitem(hf_fviz._EXPORTS, "multifaceted")
    assert [v for _, v in app.available_methods()] == ["maco", "fourier", "pixel", "dual"]
    monkeypatch.delitem(hf_fviz._EXPORTS, "dual_objective")
    assert [v for _, v in app.available_methods()] == ["maco", "fourier", "pixel"]


def test_facets_and_dual_run_on_the_bundled_samples(app, caps):
    assert [v for _, v in app.available_methods()][-2:] == ["facets", "dual"]
    store = app.ModelStore(caps)
    with pytest.raises(app.gr.Error, match="exactly one"):
        app.make_request(caps, "org/tiny-resnet", "logits", "cat,dog", "facets", 4, 32)
    for method, units in (("facets", "dog"), ("dual", "")):
        req = app.make_request(caps, "org/tiny-resnet", "layer3" if method == "dual" else "logits", units, method, 4, 32, k=2)
        run = app.run_blocking(store, req)
        assert len(run.gallery) == 4, method  # k=2 images, each with its transparency view
