"""Image sources by ID: hub datasets from the offline cache, folders, samples; every bad source is one line."""

from __future__ import annotations

import pytest
import torch

from hf_fviz.errors import BadImageSet
from hf_fviz.hub.images import load_images
from hf_fviz.hub.sources import describe, is_hub_dataset, iter_source, load_source
from tests.fixtures_datasets import TEST, TRAIN


def test_hub_dataset_loads_offline_by_id(hub_datasets):
    images = load_images("org/tiny-images", size=(32, 48))
    assert len(images) == TRAIN and images.pixels.shape == (TRAIN, 3, 32, 48) and images.pixels.dtype == torch.uint8
    assert images.names[0] == "org/tiny-images:train[0]" and images.source == "org/tiny-images (train split)"
    assert images.pixels.float().std() > 10  # real photo crops, not a blank
    test = load_images("org/tiny-images", size=32, split="test")
    assert len(test) == TEST and test.names[-1] == f"org/tiny-images:test[{TEST - 1}]"


def test_cap_and_batches_stream_in_order(hub_datasets):
    full = load_source("org/tiny-images", size=(24, 24))
    batches = list(iter_source("org/tiny-images", size=(24, 24), batch_size=8, max_images=20))
    assert [b.start for b in batches] == [0, 8, 16] and sum(len(b.names) for b in batches) == 20
    assert torch.equal(torch.cat([b.pixels for b in batches]), full.pixels[:20])


@pytest.mark.parametrize(
    ("source", "kwargs", "message"),
    [
        ("org/no-images", {}, "org/no-images (train) has no image column (columns: text, label); pass --image-column"),
        ("org/tiny-images", {"image_column": "caption"}, "column 'caption' of dataset org/tiny-images is not an image column"),
        ("org/tiny-images", {"image_column": "photo"}, "has no column 'photo': its columns are image, label, caption"),
        ("org/tiny-images", {"split": "validation"}, "has no split 'validation': its splits are train, test"),
        ("org/missing-dataset", {}, "dataset org/missing-dataset is not in the local hub cache and the hub is offline"),
    ],
)
def test_bad_dataset_sources_are_one_line(hub_datasets, source, kwargs, message):
    with pytest.raises(BadImageSet) as err:
        load_images(source, size=32, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_gated_dataset_is_one_line(monkeypatch, hub_datasets):
    """The hub's answer for a gated dataset (the network call is the only thing replaced)."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub import constants

    def gated(*_a, **_k):
        raise DatasetNotFoundError("Dataset 'org/gated' is a gated dataset on the Hub. You must be authenticated to access it.")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets, "load_dataset", gated)
    with pytest.raises(BadImageSet, match=r"dataset org/gated is gated: accept its conditions on https://huggingface.co/datasets/org/gated"):
        load_images("org/gated", size=32)


def test_local_sources_and_ids_are_told_apart(tmp_path, hub_datasets):
    folder = tmp_path / "org" / "tiny-images"
    folder.mkdir(parents=True)
    assert is_hub_dataset("org/tiny-images") and not is_hub_dataset(str(tmp_path))
    assert describe("org/x", "test") == "org/x (test split)" and describe("photos") == "photos"
    samples = load_source("samples", size=(32, 32), max_images=4)
    assert len(samples) == 4 and samples.names[0] == "skimage:astronaut"
    with pytest.raises(BadImageSet, match="are for hub datasets"):
        load_source("samples", size=(32, 32), split="train")
    with pytest.raises(BadImageSet, match="no such file or folder"):
        load_source(str(tmp_path / "nope"), size=(32, 32))
