"""Card text (tag insertion, section upsert), assets and section rendering of hf_fviz.output.card.

The preservation and idempotence properties run over generated cards (hypothesis): any front
matter layout, CRLF or LF, unicode, other tools' HTML comments, with and without a section.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from huggingface_hub import ModelCard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hf_fviz.output.card import (
    END,
    SPACE_URL,
    START,
    TAG,
    AssetLimits,
    add_tag,
    build_grid,
    prepare_assets,
    read_output,
    render_section,
    safe_name,
    update_card,
    upsert_section,
)
from hf_fviz.errors import PublishError

# ---------------------------------------------------------------------------- fake output folders
COLORS = [(220, 30, 30), (30, 200, 40), (20, 40, 230), (240, 200, 10), (120, 0, 160), (0, 180, 180)]
LABELS = ["tabby cat", "goldfish", "espresso", "zebra", "lemon", "kite"]


def make_output(
    root: Path,
    *,
    model: str = "org/tiny-resnet",
    layer: str = "logits",
    method: str = "maco",
    n: int = 3,
    size: int = 64,
    grid: Image.Image | None = None,
    noise: bool = False,
    facets: bool = False,
    revision: str | None = "a" * 40,
) -> Path:
    """An output folder written to the manifest contract (DESIGN.md "Output folder"): item i is a
    solid COLORS[i] square (or noise) of `size` px, with its RGBA twin; grid.png when given."""
    root.mkdir(parents=True, exist_ok=True)
    (root / layer.replace("/", "_")).mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    items: list[dict[str, Any]] = []
    sub = layer.replace("/", "_")
    for i in range(n):
        if noise:
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        else:
            arr = np.broadcast_to(np.array(COLORS[i % len(COLORS)], np.uint8), (size, size, 3)).copy()
        Image.fromarray(arr).save(root / sub / f"{i}.png")
        alpha = np.full((size, size, 1), 200, np.uint8)
        Image.fromarray(np.concatenate([arr, alpha], axis=2), "RGBA").save(root / sub / f"{i}_rgba.png")
        item: dict[str, Any] = {"image": f"{sub}/{i}.png", "rgba": f"{sub}/{i}_rgba.png", "objective": 10.5 + i}
        if facets:  # facets/dual items: members, no unit
            item.update({"facet": i, "members": [f"img{j}.jpg" for j in range(i + 2)], "label": f"facet {i}"})
        else:
            item.update({"unit": 10 + i, "label": LABELS[i % len(LABELS)]})
        items.append(item)
    if grid is not None:
        grid.save(root / "grid.png")
    manifest = {
        "hf_fviz_version": "0.1.0",
        "model": model,
        "revision": revision,
        "library": "timm",
        "method": method,
        "layer": layer,
        "settings": {"steps": 8, "size": size, "crops": 4, "seed": 0, "lr": 1.0},
        "items": items,
        "seconds": 1.5,
        "device": "cpu",
        "extra_key_from_the_future": {"ok": True},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return root


def png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    img.load()
    return img


# ---------------------------------------------------------------------------- tag insertion
TAG_CASES = [
    # (card, expected) -- every expected text differs from the card by one inserted piece
    ("---\nlicense: mit\ntags:\n- a\n- b\n---\nbody\n", "---\nlicense: mit\ntags:\n- a\n- b\n- feature-visualization\n---\nbody\n"),
    ("---\ntags:\n  - a  # keep me\n  - 'b'\nlicense: mit\n---\n", "---\ntags:\n  - a  # keep me\n  - 'b'\n  - feature-visualization\nlicense: mit\n---\n"),
    ("---\ntags: [a, \"b\"]  # flow\n---\n", "---\ntags: [a, \"b\", feature-visualization]  # flow\n---\n"),
    ("---\ntags: []\n---\n", "---\ntags: [feature-visualization]\n---\n"),
    ("---\ntags: [\n  a,\n  b\n]\nlicense: x\n---\n", "---\ntags: [\n  a,\n  b, feature-visualization\n]\nlicense: x\n---\n"),
    ("---\ntags:\nlicense: x\n---\n", "---\ntags:\n- feature-visualization\nlicense: x\n---\n"),
    ("---\nlicense: mit\n---\n# T\n", "---\nlicense: mit\ntags:\n- feature-visualization\n---\n# T\n"),
    ("---\r\nlicense: mit\r\ntags:\r\n- a\r\n---\r\nb\r\n", "---\r\nlicense: mit\r\ntags:\r\n- a\r\n- feature-visualization\r\n---\r\nb\r\n"),
    ("---\r\nlicense: mit\r\n---\r\n", "---\r\nlicense: mit\r\ntags:\r\n- feature-visualization\r\n---\r\n"),
    ("# no front matter\n", "---\ntags:\n- feature-visualization\n---\n# no front matter\n"),
    ("# crlf\r\nno front matter\r\n", "---\r\ntags:\r\n- feature-visualization\r\n---\r\n# crlf\r\nno front matter\r\n"),
    ("", "---\ntags:\n- feature-visualization\n---\n"),
    ("---\ntags: single\n---\n", "---\ntags: [single, feature-visualization]\n---\n"),
    ("---\n# comment kept\nmodel_name: 模型 ✓\ndatasets:\n- x\n---\n", "---\n# comment kept\nmodel_name: 模型 ✓\ndatasets:\n- x\ntags:\n- feature-visualization\n---\n"),
]


@pytest.mark.parametrize(("card", "expected"), TAG_CASES)
def test_add_tag_inserts_textually_and_yaml_agrees(card: str, expected: str) -> None:
    out = add_tag(card)
    assert out == expected
    assert add_tag(out) == out  # never twice
    meta = ModelCard(out).data
    assert meta.tags.count(TAG) == 1
    before = ModelCard(card).data.to_dict() if card else {}
    after = meta.to_dict()
    before.pop("tags", None), after.pop("tags", None)
    assert after == before  # no other metadata changed


@pytest.mark.parametrize(
    "card",
    ["---\ntags:\n- feature-visualization\n---\n", "---\ntags: [a, 'feature-visualization']\n---\nx", "---\ntags: feature-visualization\n---\n"],
)
def test_add_tag_leaves_tagged_cards_alone(card: str) -> None:
    assert add_tag(card) == card


def test_add_tag_ignores_tags_outside_front_matter() -> None:
    card = "---\nlicense: mit\n---\n```yaml\ntags:\n- not-metadata\n```\n"
    out = add_tag(card)
    assert out.endswith("---\n```yaml\ntags:\n- not-metadata\n```\n")
    assert ModelCard(out).data.tags == [TAG]


def test_add_tag_refuses_broken_tags() -> None:
    with pytest.raises(PublishError, match="not closed"):
        add_tag("---\ntags: [a, b\nlicense: mit\n---\n")


@pytest.mark.parametrize("card", ["---\n- a list\n---\nbody\n", "---\nkey: [unclosed\n---\n", "---\n? \n---\n"])
def test_broken_metadata_is_refused_not_edited(card: str) -> None:
    with pytest.raises(PublishError, match="README.md metadata"):
        update_card(card, SECTION)


# ---------------------------------------------------------------------------- section upsert
SECTION = "## Feature visualizations\n\nline one\n\n| a | b |\n|---|---|\n| 1 | 2 |"


def test_upsert_replaces_only_the_section() -> None:
    card = "---\ntags:\n- x\n---\n# T\n\n<!-- other-tool:start -->\nkeep\n<!-- other-tool:end -->\n\n" + START + "\nold\n" + END + "\ntail ✓\n"
    out = update_card(card, SECTION)
    assert out.startswith("---\ntags:\n- x\n- feature-visualization\n---\n# T\n\n<!-- other-tool:start -->\nkeep\n<!-- other-tool:end -->\n\n")
    assert out.endswith(END + "\ntail ✓\n")
    assert "old" not in out and out.count(START) == 1 and SECTION in out


def test_upsert_appends_with_the_cards_line_endings() -> None:
    card = "---\r\nlicense: mit\r\n---\r\n# Title\r\n"
    out = update_card(card, SECTION)
    assert out == "---\r\nlicense: mit\r\ntags:\r\n- feature-visualization\r\n---\r\n# Title\r\n\r\n" + (
        START + "\n" + SECTION + "\n" + END + "\n"
    ).replace("\n", "\r\n")


def test_existing_crlf_section_stays_crlf_in_an_lf_card() -> None:
    card = "---\ntags: [a]\n---\n# T\n\n" + START + "\r\nold\r\n" + END + "\n"
    out = update_card(card, SECTION)
    new_section = out[out.index(START) : out.index(END) + len(END)]
    assert new_section == START + "\r\n" + SECTION.replace("\n", "\r\n") + "\r\n" + END
    assert out.startswith("---\ntags: [a, feature-visualization]\n---\n# T\n\n") and out.endswith(END + "\n")


def test_no_readme_gives_a_minimal_valid_card() -> None:
    out = update_card(None, SECTION, library="timm")
    card = ModelCard(out)
    assert card.data.tags == [TAG] and card.data.library_name == "timm"
    assert card.text == "\n" + START + "\n" + SECTION + "\n" + END + "\n"
    assert update_card(out, SECTION) == out


def test_start_marker_without_end_is_refused() -> None:
    with pytest.raises(PublishError, match="no " + re.escape(END)):
        upsert_section("# T\n" + START + "\nhalf a section\n", SECTION)


# ---------------------------------------------------------------------------- properties
_EOL = st.sampled_from(["\n", "\r\n"])
_META = st.sampled_from(
    [
        "license: mit",
        "library_name: timm",
        "# a comment: with colon",
        "pipeline_tag: image-classification",
        "model_name: 模型 ✓ \"quoted\"",
        "datasets:\n- imagenet-1k\n- 'x: y'",
        "model-index:\n- name: m\n  results: []",
        "base_model: org/base",
    ]
)
_TAGS = st.sampled_from(
    [
        None,
        "tags:\n- a\n- b",
        "tags:\n  - a\n  - 'b'  # note",
        "tags: [a, b]",
        "tags: [ 'a' ,b ]  # flow",
        "tags: []",
        "tags:",
        "tags: [a,\n  b]",
        "tags:\n- feature-visualization",
        "tags: [x, feature-visualization]",
        "tags:  # mine\n- a\n\n- b",
        # ("tags: solo" becomes "tags: [solo, feature-visualization]": two inserted pieces, so it is
        # tested on its own in TAG_CASES rather than by the one-insertion property)
    ]
)
_BODY_PIECE = st.one_of(
    st.sampled_from(
        [
            "# Title",
            "",
            "---",
            "tags:",
            "- not-metadata",
            "<!-- other-tool:start -->",
            "<!-- other-tool:end -->",
            "<!-- hf-fviz:start",  # not our marker (no closing -->)
            "café 模型 🙂 \u200b",
            "```yaml\ntags: [x]\n```",
            "\t  ",
            "| a | b |",
        ]
    ),
    st.text(max_size=25).filter(lambda s: START not in s and END not in s),
)


@st.composite
def cards(draw: st.DrawFn) -> str:
    eol = draw(_EOL)
    body = eol.join(draw(st.lists(_BODY_PIECE, max_size=8)))
    if draw(st.booleans()):  # mixed line endings in the body: must survive as they are
        body += draw(st.sampled_from(["\r\n", "\n", "\r", ""]))
    if not draw(st.booleans()):
        return body
    lines = draw(st.lists(_META, max_size=4, unique=True))
    tags = draw(_TAGS)
    if tags is not None:
        lines.insert(draw(st.integers(0, len(lines))), tags)
    yaml_text = "\n".join(lines).replace("\n", eol)
    return "---" + eol + yaml_text + (eol if lines else "") + "---" + eol + body


def _insertions(old: str, new: str) -> list[tuple[int, str]]:
    """Every (offset, inserted) with new == old[:offset] + inserted + old[offset:] (an insertion can
    often slide, e.g. 'on' + 'X…on' == 'on…X' + 'on'); fails the test when `new` is not `old` plus
    one contiguous insertion."""
    size = len(new) - len(old)
    assert size >= 0, f"text got shorter:\n{old!r}\n{new!r}"
    hi = 0
    while hi < len(old) and old[hi] == new[hi]:
        hi += 1
    lo = hi
    while lo > 0 and old[lo - 1] == new[lo - 1 + size]:
        lo -= 1
    out = [(q, new[q : q + size]) for q in range(lo, hi + 1) if new[q + size :] == old[q:]]
    assert out, f"text changed, not just inserted into:\n{old!r}\n{new!r}"
    return out


def _front_matter_end(text: str) -> int:
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    m = REGEX_YAML_BLOCK.search(text)
    return m.end() if m else 0


def _check_tag_insertion(old: str, new: str) -> None:
    """`new` is `old` with one piece inserted in its front matter, carrying the tag (or nothing,
    when `old` had the tag already)."""
    options = _insertions(old, new)
    if options[0][1] == "":
        assert TAG in ModelCard(old).data.tags
        return
    fm_end = _front_matter_end(new)
    assert any(TAG in piece and q + len(piece) <= fm_end for q, piece in options), (old, new)


def _valid_metadata(card: str) -> bool:
    try:
        ModelCard(card)
    except Exception:  # yaml errors, non-mapping metadata, non-string keys
        return False
    return True


def _section_span(text: str) -> tuple[int, int]:
    start = text.index(START, _front_matter_end(text))
    return start, text.index(END, start) + len(END)


_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(card=cards())
def test_property_append_preserves_everything_and_is_idempotent(card: str) -> None:
    try:
        out = update_card(card, SECTION)
    except PublishError:  # only for metadata that was not valid to begin with
        assert not _valid_metadata(card), card
        return
    assert update_card(out, SECTION) == out  # idempotent
    start, end = _section_span(out)
    eol = "\r\n" if "\r\n" in out[start:end] else "\n"
    assert out[end:] == eol  # nothing after the new section but its line ending
    before = out[:start]
    ok = []
    for sep in ("", eol, eol * 2):
        if before.endswith(sep):
            try:
                _check_tag_insertion(card, before[: len(before) - len(sep)])
                ok.append(sep)
            except AssertionError:
                pass
    assert ok, f"text outside the section changed:\n{card!r}\n{out!r}"
    meta = ModelCard(out).data
    assert meta.tags.count(TAG) == 1
    # rerunning with another section replaces it, adds nothing twice
    assert update_card(update_card(out, "## other"), SECTION) == out


@_SETTINGS
@given(card=cards(), old_body=st.text(max_size=30).filter(lambda s: END not in s), crlf=st.booleans(), split=st.integers(0, 10**6))
def test_property_replace_preserves_everything_and_keeps_section_eol(card: str, old_body: str, crlf: bool, split: int) -> None:
    body_at = _front_matter_end(card)
    at = body_at + split % (len(card) - body_at + 1)
    eol = "\r\n" if crlf else "\n"
    old_section = START + eol + old_body + eol + END
    if START in card[at:] or START in card[body_at:at] or END in card[body_at:at] or card[at - 1 : at + 1] == "\r\n":
        return  # keep our section the first one and don't split a CRLF pair
    with_section = card[:at] + old_section + card[at:]
    if _front_matter_end(with_section) != body_at or not _valid_metadata(card):
        return  # the insert point changed the front matter, or the metadata was broken already
    out = update_card(with_section, SECTION)
    assert update_card(out, SECTION) == out
    start, end = _section_span(out)
    assert out[end:] == card[at:]  # everything after the section: byte for byte
    _check_tag_insertion(card[:at], out[:start])  # everything before: only the tag added
    assert out[start:end] == START + eol + SECTION.replace("\n", eol) + eol + END


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=60))
def test_property_safe_name(name: str) -> None:
    out = safe_name(name)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", out)
    assert ".." not in out and not out.startswith(".") and "/" not in out
    assert len(out) <= 80


# ---------------------------------------------------------------------------- output folder + assets
def test_read_output_tolerates_facets_items_and_extra_keys(tmp_path: Path) -> None:
    out = read_output(make_output(tmp_path / "o", facets=True, method="multifaceted"))
    assert [i.unit for i in out.items] == [None, None, None]
    assert [i.caption for i in out.items] == ["facet 0 · 2 images", "facet 1 · 3 images", "facet 2 · 4 images"]
    assert out.settings["steps"] == 8 and out.revision == "a" * 40 and out.grid is None


@pytest.mark.parametrize(
    ("manifest", "match"),
    [
        ({"foo": 1}, "not an hf-fviz manifest"),
        ([1, 2], "not an hf-fviz manifest"),
        ({"model": "org/m", "method": "maco", "layer": "l", "items": []}, "no images"),
        ({"model": "org/m", "method": "maco", "layer": "l", "items": [{"unit": 1}]}, "no 'image'"),
        ({"model": "org/m", "method": "maco", "layer": "l", "items": [{"image": "../secret.png"}]}, "outside the output folder"),
        ({"model": "org/m", "method": "maco", "layer": "l", "items": [{"image": "gone.png"}]}, "missing"),
    ],
)
def test_read_output_refuses_foreign_or_broken_manifests(tmp_path: Path, manifest: Any, match: str) -> None:
    (tmp_path / "secret.png").write_bytes(b"x")
    folder = tmp_path / "o"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PublishError, match=match):
        read_output(folder)


def test_read_output_refuses_missing_folder_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="no such folder"):
        read_output(tmp_path / "nope")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(PublishError, match="not valid JSON"):
        read_output(tmp_path)


def test_grid_is_built_from_items_when_absent(tmp_path: Path) -> None:
    out = read_output(make_output(tmp_path / "o", n=5, size=40))
    assets = prepare_assets(out)
    grid = np.asarray(png(assets.grid.data).convert("RGB"))
    side = 40 + 4  # cell + gap; 5 items -> 3 columns, 2 rows
    assert grid.shape == (2 * side, 3 * side, 3)
    for i in range(5):
        r, c = divmod(i, 3)
        assert tuple(grid[r * side + side // 2, c * side + side // 2]) == COLORS[i]
    assert tuple(grid[side + side // 2, 2 * side + side // 2]) == (255, 255, 255)  # empty cell


def test_build_grid_layout() -> None:
    imgs = [Image.new("RGB", (10, 10), c) for c in COLORS[:4]]
    grid = np.asarray(build_grid(imgs, cell=10, gap=0))
    assert grid.shape == (20, 20, 3)
    assert tuple(grid[15, 5]) == COLORS[2] and tuple(grid[5, 15]) == COLORS[1]


def test_large_assets_are_shrunk(tmp_path: Path) -> None:
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (1100, 1100, 3), dtype=np.uint8))
    out = read_output(make_output(tmp_path / "o", n=2, size=700, noise=True, grid=noise))
    assert (tmp_path / "o" / "grid.png").stat().st_size > 3_000_000  # the input is far over the limit
    assets = prepare_assets(out)
    assert len(assets.grid.data) <= 1_000_000
    assert 256 < max(png(assets.grid.data).size) < 1100
    for asset in assets.items:
        assert max(png(asset.data).size) == 512
    small = prepare_assets(out, limits=AssetLimits(max_grid_bytes=50_000, max_image_px=100, max_units=1))
    assert len(small.grid.data) <= 50_000 and len(small.items) == 1 and small.omitted == 1
    assert max(png(small.items[0].data).size) == 100


def test_asset_names_are_safe(tmp_path: Path) -> None:
    out = read_output(make_output(tmp_path / "o", layer="../../evil/.hidden layer:0"))
    paths = [a.path_in_repo for a in prepare_assets(out).all]
    for path in paths:
        head, folder, name = path.split("/")
        assert head == "feature_visualizations"
        for part in (folder, name):
            assert re.fullmatch(r"[A-Za-z0-9._-]+", part) and ".." not in part and not part.startswith(".")
    assert len(set(paths)) == len(paths)


# ---------------------------------------------------------------------------- section rendering
def test_render_section_contents(tmp_path: Path) -> None:
    out = read_output(make_output(tmp_path / "o"))
    assets = prepare_assets(out)
    text = render_section(out, assets, repo_id="org/tiny-resnet")
    assert text.startswith("## Feature visualizations\n\nThese images were synthesized from noise with MACO")
    assert "![Feature visualizations of layer logits](feature_visualizations/maco-logits/grid.png)" in text
    for i, asset in enumerate(assets.items):
        assert f"![unit {10 + i} · {LABELS[i]}]({asset.path_in_repo})" in text
    assert "| unit 10 · tabby cat | unit 11 · goldfish | unit 12 · espresso |" in text
    for row in ("| method | `maco` |", "| layer | `logits` |", "| units | 10, 11, 12 |", "| steps | 8 |", "| size | 64 px |", "| seed | 0 |"):
        assert row in text
    assert "hf_fviz 0.1.0" in text
    assert f"[`{'a' * 12}`](https://huggingface.co/org/tiny-resnet/commit/{'a' * 40})" in text
    assert f"({SPACE_URL}?model=org/tiny-resnet)" in text
    assert START not in text and END not in text and "\r" not in text


def test_render_section_absolute_urls(tmp_path: Path) -> None:
    out = read_output(make_output(tmp_path / "o"))
    text = render_section(out, prepare_assets(out), repo_id="org/tiny-resnet", absolute_urls=True, url_revision="refs/pr/3")
    links = re.findall(r"!\[[^\]]*\]\(([^)]*)\)", text)
    assert len(links) == 4
    assert all(link.startswith("https://huggingface.co/org/tiny-resnet/resolve/refs%2Fpr%2F3/feature_visualizations/") for link in links)


def test_hostile_labels_cannot_break_the_card(tmp_path: Path) -> None:
    folder = make_output(tmp_path / "o")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["items"][0]["label"] = f"x {END} | ![img](http://evil) <script>\r\n# heading"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    out = read_output(folder)
    text = render_section(out, prepare_assets(out), repo_id="org/tiny-resnet")
    assert END not in text and "<script>" not in text
    assert "\\!\\[img\\](http://evil)" in text and not re.search(r"(?<!\\)\]\(http://evil", text)  # escaped: no link
    card = update_card("# T\n", text)
    assert card.count(END) == 1 and update_card(card, text) == card
