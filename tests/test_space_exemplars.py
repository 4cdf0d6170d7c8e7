"""Natural exemplars and the sanity check in the Space (issue 17): a run that names an image source
shows each unit's visualization beside its top exemplars, with its sanity score; the handlers are
called directly, and the page is driven in headless Chromium."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from hf_fviz.space.exemplar_view import DEFAULT_TOP, exemplar_request, exemplar_view
from tests.test_space import CHROMIUM, CHROMIUM_ARGS, _screenshot, app, caps  # noqa: F401  (fixtures)


def _run(app, caps, source: str | None, top: int = 3):  # noqa: F811
    """A whole Space run of two classes, as the page's handler does it: optimize, exemplars, write."""
    from hf_fviz.space.exemplar_view import add_exemplars

    store = app.ModelStore(caps)
    req = app.make_request(caps, "org/tiny-resnet", "logits", "cat,dog", "maco", 4, 32)
    vis = list(app.optimize_stream(store, req, preview_every=100))[-1]
    ask = exemplar_request(source, top)
    if ask:
        add_exemplars(store.get(req.model_id), vis, ask)
    return store.get(req.model_id), vis, app.finish_run(store, req, vis, 1.0)


def test_exemplars_are_shown_beside_each_visualization_with_its_sanity_score(app, caps):  # noqa: F811
    from hf_fviz.exemplars import find_exemplars
    from hf_fviz.engine.sanity import sanity_check

    model, vis, run = _run(app, caps, "samples", top=3)
    gallery, table = exemplar_view({"model_id": "org/tiny-resnet", "folder": str(run.folder)})
    assert gallery["visible"] and table["visible"] and gallery["columns"] == 4  # the visualization + 3 exemplars
    entries = gallery["value"]
    assert len(entries) == 2 * 4
    found = find_exemplars(model, layer="logits", units=[v.unit for v in vis], source="samples", top=3)  # recomputed
    for row, v in enumerate(vis):
        first, *exemplars = entries[4 * row: 4 * row + 4]
        check = sanity_check(model, v.image, "logits", found.top[v.unit], found.random)
        assert first[0] == str(run.folder / "logits" / f"{v.unit}.png")
        assert first[1] == f"{v.label} · sanity {check.score:.2f}" + (" ⚠ flagged" if check.flag else "")
        assert [caption for _, caption in exemplars] == [f"{e.name} · {e.activation:.3g}" for e in found.top[v.unit]]
        assert all(Path(path).is_file() and Path(path).parent == run.folder / "logits" / f"{v.unit}_exemplars"
                   for path, _ in exemplars)
        assert f"| {v.label} | {check.score:.2f} | {'yes ⚠' if check.flag else 'no'} |" in table["value"]
    assert "samples" in table["value"]


def test_no_source_no_exemplars_and_bad_sources_are_one_message(app, caps):  # noqa: F811
    _, _, run = _run(app, caps, None)
    gallery, table = exemplar_view({"model_id": "org/tiny-resnet", "folder": str(run.folder)})
    assert gallery["visible"] is False and table["visible"] is False
    assert exemplar_view(None)[0]["visible"] is False
    assert exemplar_request("  ", 4) is None
    assert exemplar_request("org/pets", "5").top == 5
    for source, top, expected in (("/etc", 4, "use samples or a hub dataset ID"), ("not a dataset", 4, "use samples"),
                                  ("samples", 1, "2..8"), ("samples", 2.5, "2..8"), ("samples", "x", "2..8")):
        with pytest.raises(app.gr.Error, match=expected):
            exemplar_request(source, top)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
def test_page_shows_exemplars_and_sanity_when_asked(app, caps, tmp_path, tmp_path_factory):  # noqa: F811
    """A visitor opens "Natural exemplars and sanity check", names the bundled samples, visualizes:
    the exemplar gallery shows the visualization and its exemplars, and the sanity table its score."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Debian chromium not found at {CHROMIUM}: `make test` installs it (root), or set HF_FVIZ_CHROMIUM")
    from playwright.sync_api import expect, sync_playwright

    os.environ["HF_FVIZ_SPACE_DIR"] = str(tmp_path_factory.mktemp("space-exemplars"))
    demo = app.build_demo(caps, default_model="org/tiny-resnet", oauth=False, mcp_tools=False)
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True,
                           quiet=True, ssr_mode=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(url)
                expect(page.locator("#fviz-summary")).to_contain_text("org/tiny-resnet", timeout=30_000)
                expect(page.locator("#fviz-classes")).to_contain_text("(", timeout=10_000)  # a default class is picked
                expect(page.locator("#fviz-exemplars")).to_be_hidden()
                page.get_by_text("Natural exemplars and sanity check").click()
                page.locator("#fviz-ex-source textarea, #fviz-ex-source input").first.fill("samples")
                page.get_by_role("button", name="Visualize", exact=True).click()
                expect(page.locator("#fviz-status")).to_contain_text("Natural exemplars and the sanity check are below",
                                                                     timeout=90_000)
                images = page.locator("#fviz-exemplars img")
                expect(images).to_have_count(1 + DEFAULT_TOP, timeout=20_000)  # one class: its visualization + its exemplars
                for i in range(1 + DEFAULT_TOP):
                    assert images.nth(i).evaluate("img => img.complete && img.naturalWidth") > 0
                expect(page.locator("#fviz-exemplars")).to_contain_text("sanity")
                expect(page.locator("#fviz-sanity")).to_contain_text("sanity score")
                expect(page.locator("#fviz-sanity")).to_contain_text("samples")
                _screenshot(page, tmp_path, "space-exemplars.png")
            finally:
                browser.close()
    finally:
        demo.close()
