"""The one parser of units and classes (hf_fviz.hub.targets), the card reader that inverts the
card writer (hf_fviz.output.card_read) and hub ids (hf_fviz.hub.size): pure functions, plus one
tiny real model from the offline hub cache for `resolve`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hf_fviz.errors import InvalidSettings, UnitOutOfRange, UnknownClass
from hf_fviz.hub import targets
from hf_fviz.hub.size import hub_parameter_count, is_hub_id
from hf_fviz.output.card_meta import END, START, upsert_section
from hf_fviz.output.card_read import asset_path, read_section, section_images


def test_expand_keeps_order_expands_ranges_and_names() -> None:
    assert targets.expand(" 3, 7 ,, 10-12, 3") == ["3", "7", "10", "11", "12"]
    assert targets.expand(["tabby cat", 2, "0 - 1"]) == ["tabby cat", "2", "0", "1"]
    assert targets.expand(None) == [] and targets.expand(" , ") == []
    with pytest.raises(InvalidSettings, match="'5-2' is empty"):
        targets.expand("5-2")
    with pytest.raises(UnitOutOfRange, match="valid units are 0..9"):
        targets.expand("0-10", n_units=10, layer="blocks.1")  # refused before it is expanded
    with pytest.raises(InvalidSettings, match="too wide"):
        targets.expand(f"0-{targets.MAX_RANGE}")


def test_parse_units_every_form_and_every_mistake() -> None:
    assert targets.parse_units("all", 3) == [0, 1, 2]
    assert targets.parse_units("3, 0-2,2", 5) == [3, 0, 1, 2]
    assert targets.parse_units([4, 4, 1], 5) == [4, 1]
    assert targets.parse_units("7", None) == [7]  # no unit count yet: syntax only
    with pytest.raises(InvalidSettings, match="--units takes indices, got 'x'"):
        targets.parse_units("3,x", 5)
    with pytest.raises(InvalidSettings, match="layer 'layer1' takes indices, got 'cat'"):
        targets.parse_units(["cat"], None, flag="layer 'layer1'")
    with pytest.raises(UnitOutOfRange, match="unit -1 is out of range.*not '-1'"):
        targets.parse_units("-1", 5)
    with pytest.raises(UnitOutOfRange, match="unit 5 is out of range for layer 'l': valid units are 0..4"):
        targets.parse_units([5], 5, layer="l")
    with pytest.raises(InvalidSettings, match="--units is empty"):
        targets.parse_units(",", 5)
    with pytest.raises(InvalidSettings, match="all needs"):
        targets.parse_units("all", None)


@given(st.lists(st.integers(0, 49), min_size=1, max_size=20))
def test_parse_units_round_trips_a_comma_list(units: list[int]) -> None:
    assert targets.parse_units(",".join(map(str, units)), 50) == list(dict.fromkeys(units))


def test_resolve_on_a_real_model() -> None:
    import hf_fviz

    model = hf_fviz.load_model("org/tiny-resnet", device="cpu")  # classes cat, dog, fish, bird, tabby cat
    assert targets.resolve(model, classes="dog, 0") == ("logits", [1, 0])
    assert targets.resolve(model, layer="layer1", units="0-2") == ("layer1", [0, 1, 2])
    assert targets.resolve(model) == ("logits", [0, 1, 2, 3])  # neither: the first four of the default layer
    with pytest.raises(InvalidSettings, match="classes are logits; drop --layer layer1"):
        targets.resolve(model, layer="layer1", classes="cat")
    with pytest.raises(InvalidSettings, match="not both"):
        targets.resolve(model, units="0", classes="cat")
    with pytest.raises(UnknownClass):
        targets.resolve(model, classes="zebra")


def test_read_section_inverts_upsert_section() -> None:
    card = "---\nlicense: mit\n---\n# Model\n\ntext\n"
    section = "## Feature visualizations\n\n![tabby cat](feature_visualizations/maco-logits/0.png)\n"
    written = upsert_section(card, section)
    assert START in written and END in written
    assert read_section(written).strip() == section.strip()
    assert read_section(card) is None and read_section(f"{START}\nno end") is None


def test_section_images_only_the_repos_asset_folder() -> None:
    section = ("![a \\[x\\]](feature_visualizations/m-l/0.png) ![grid](https://huggingface.co/o/r/resolve/abc/feature_visualizations/m-l/grid.png)"
               " ![evil](https://evil.example/o/r/resolve/main/feature_visualizations/x.png) ![up](feature_visualizations/../w.png)")
    assert section_images(section, "o/r") == {"feature_visualizations/m-l/0.png": "a [x]", "feature_visualizations/m-l/grid.png": "grid"}
    assert asset_path("README.md", "o/r") is None


def test_hub_ids(tmp_path) -> None:
    assert is_hub_id("org/name") and is_hub_id("org/name@v1")
    assert not is_hub_id("builtin:mobilenetv2") and not is_hub_id(str(tmp_path))
    assert hub_parameter_count("builtin:mobilenetv2") is None and hub_parameter_count(str(tmp_path)) is None
