"""Chunk size chosen by measurement, and the steady heap that makes batches pay on a CPU."""

from __future__ import annotations

import resource

import numpy as np
import pytest
import torch

import hf_fviz
from hf_fviz.engine import chunking, heap


@pytest.fixture(autouse=True)
def _fresh_choices():
    chunking.forget()
    yield
    chunking.forget()


def _costs(table):
    tried = []

    def seconds_per_step(c: int) -> float:
        tried.append(c)
        return table[c]

    return seconds_per_step, tried


def test_pick_chunk_keeps_the_lowest_time_per_unit_and_stops_doubling_once_slower() -> None:
    # per unit: 1 -> 1.0, 2 -> 0.8, 4 -> 0.9, 8 -> 1.2 (15 % worse than 0.8 stops the doubling)
    fn, tried = _costs({1: 1.0, 2: 1.6, 4: 3.6, 8: 9.6, 16: 8.0})
    assert chunking.pick_chunk(fn, units=16, largest=64) == 2
    assert tried == [1, 2, 4, 8]  # 16 never timed


def test_pick_chunk_prefers_the_smallest_size_within_three_percent() -> None:
    fn, _ = _costs({1: 1.0, 2: 1.96, 4: 3.9})  # 1.0, 0.98, 0.975 per unit: all within 3 % of the best
    assert chunking.pick_chunk(fn, units=4, largest=64) == 1
    fn, _ = _costs({1: 1.0, 2: 1.0, 4: 1.2, 8: 1.6, 13: 2.0})  # a GPU: larger keeps paying; the cap is units
    assert chunking.pick_chunk(fn, units=13, largest=64) == 13


def test_pick_chunk_respects_memory_and_remembers_its_choice() -> None:
    fn, tried = _costs({1: 1.0, 2: 1.0, 3: 1.0})
    assert chunking.pick_chunk(fn, units=16, largest=3, key="k") == 3
    assert tried == [1, 2, 3]
    fn2, tried2 = _costs({})
    assert chunking.pick_chunk(fn2, units=2, largest=3, key="k") == 2  # from memory, capped by the units
    assert tried2 == []
    fn3, tried3 = _costs({1: 1.0, 2: 1.0, 4: 1.0, 5: 1.0})
    assert chunking.pick_chunk(fn3, units=5, largest=8, key="k") == 5  # the old choice was capped: measure again
    assert tried3 == [1, 2, 4, 5]
    assert chunking.pick_chunk(lambda c: 1.0, units=1, largest=8) == 1


def test_automatic_batch_gives_the_images_of_single_runs(monkeypatch) -> None:
    model = hf_fviz.load_model("org/tiny-resnet")
    layer = next(x.name for x in model.layers() if x.kind == "conv")
    timed: list[int] = []
    real = chunking.pick_chunk

    def spy(fn, **kw):
        def timed_fn(c):
            timed.append(c)
            return fn(c)

        return real(timed_fn, **kw)

    monkeypatch.setattr(chunking, "pick_chunk", spy)
    kw = dict(layer=layer, steps=3, size=48, crops=2, method="maco")
    auto = hf_fviz.visualize(model, units=[0, 1, 2], **kw)
    assert timed[:2] == [1, 2] and all(c <= 3 for c in timed)  # really measured, never past the units
    single = [hf_fviz.visualize(model, units=[u], batch_size=1, **kw)[0] for u in (0, 1, 2)]
    for a, b in zip(auto, single):
        np.testing.assert_array_equal(a.image, b.image)


@pytest.mark.skipif(not heap.available(), reason="glibc only")
def test_steady_heap_stops_big_blocks_from_page_faulting_every_step() -> None:
    def faults(n_steps: int) -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n_steps):
            x = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB: above glibc's largest mmap threshold
            del x
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    block = 64 * 1024 * 1024 // resource.getpagesize()
    plain = faults(8)
    with heap.steady_heap():
        faults(1)  # the heap grows once
        steady = faults(8)
    assert plain >= 8 * block * 0.9  # each 64 MiB block faulted in anew, every step
    assert steady <= 1.1 * block  # at most one block's worth, however many steps
