"""Parametrizations, spectrum, transforms and objectives on plain tensors (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_fviz.api import build_spectrum
from hf_fviz.engine import objectives as obj
from hf_fviz.engine.param import FourierImage, MacoImage, PixelImage, standardize
from hf_fviz.engine.spectrum import (
    COLOR_CORRELATION,
    DEFAULT_SPECTRUM,
    decorrelate,
    load_spectrum,
    periodic_rfft2,
    recorrelate,
    save_spectrum,
)
from hf_fviz.engine.transforms import CropSettings, RandomCrops, resize_whole
from hf_fviz.errors import BadImageSet, InvalidSettings
from hf_fviz.hub.vision_model import Layer


# ---------------------------------------------------------------------------- spectrum
def test_shipped_spectrum_is_small_natural_and_resizes():
    assert DEFAULT_SPECTRUM.stat().st_size < 1_000_000
    spec = load_spectrum(size=512)
    assert spec.shape == (3, 512, 257) and spec.dtype == torch.float32
    # natural images: energy falls with frequency (low band >> high band), roughly 1/f^1.3
    fy = torch.fft.fftfreq(512)[:, None]
    fx = torch.fft.rfftfreq(512)[None]
    f = (fx**2 + fy**2).sqrt()
    low = spec[:, (f > 0.01) & (f < 0.02)].mean()
    high = spec[:, (f > 0.2) & (f < 0.4)].mean()
    assert low > 30 * high
    assert load_spectrum(size=96).shape == (3, 96, 49)


def test_periodic_spectrum_drops_the_border_cross_and_keeps_periodic_images():
    n = 64
    y, x = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    ramp = (x / n)[None]  # not periodic: a plain FFT puts its border jump on the fx axis
    plain, periodic = torch.fft.rfft2(ramp).abs(), periodic_rfft2(ramp).abs()
    assert plain[0, 0, 10:].mean() > 0.05 and periodic[0, 0, 10:].mean() < 0.05 * plain[0, 0, 10:].mean()
    waves = (torch.sin(2 * math.pi * 3 * x / n) + torch.cos(2 * math.pi * 5 * y / n))[None]  # periodic
    energy = periodic_rfft2(waves).abs().pow(2)[0]
    assert energy[0, 3] + energy[5, 0] + energy[n - 5, 0] > 0.99 * energy.sum()  # its two waves stay


def test_shipped_spectrum_has_no_axis_cross():
    spec = load_spectrum(size=512)[0]
    # at high frequencies the axes carry no more energy than their diagonal-free neighbours
    axis = spec[100:200, 0].mean()
    beside = spec[100:200, 3:6].mean()
    assert axis < 1.3 * beside


def test_colour_decorrelation_inverts_recorrelation():
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(recorrelate(decorrelate(x)), x, atol=1e-5)
    # per pixel row vector times the matrix
    assert torch.allclose(recorrelate(x)[0, :, 0, 0], x[0, :, 0, 0] @ COLOR_CORRELATION, atol=1e-6)


def test_build_spectrum_from_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    spec, prov = build_spectrum(tmp_path, crops=8, size=32)
    assert spec.shape == (3, 32, 17) and prov.images == 2 and prov.crops == 8
    out = save_spectrum(spec, tmp_path / "s.npy")
    assert load_spectrum(out, size=64).shape == (3, 64, 33)
    with pytest.raises(BadImageSet):
        build_spectrum(tmp_path / "missing")
    np.save(tmp_path / "bad.npy", np.zeros((3, 4, 4), np.float32))
    with pytest.raises(InvalidSettings, match="expected float"):
        load_spectrum(tmp_path / "bad.npy", size=8)


# ---------------------------------------------------------------------------- parametrizations
@pytest.mark.parametrize("cls", [MacoImage, FourierImage, PixelImage])
def test_param_range_shape_and_seed(cls):
    a = cls(3, 32, seeds=[5, 5, 6])
    img = a().detach()
    assert img.shape == (3, 3, 32, 32)
    assert float(img.min()) >= 0 and float(img.max()) <= 1
    assert torch.equal(img[0], img[1]) and not torch.equal(img[0], img[2])
    assert torch.equal(cls(1, 32, seeds=[5])()[0], img[0])


def test_maco_keeps_magnitude_fixed_and_is_per_image():
    p = MacoImage(2, 32, seeds=[0, 1])
    params = list(p.parameters())
    assert [t.shape for t in params] == [(2, 3, 32, 17)]  # only the phase is free
    img = p()
    img[0].sum().backward()
    assert p.phase.grad[1].abs().sum() == 0  # image 1 does not depend on image 0's phase


def test_smooth_sizes_have_only_small_prime_factors():
    from hf_fviz.engine.transforms import smooth_size

    assert [smooth_size(s) for s in (748, 750, 384, 385, 2, 1)] == [750, 750, 384, 400, 2, 2]


def test_band_of_standardized_values_and_gradient_inside_the_band_only():
    """The fused band cut gives the values of low_band(standardize(x) * scale, side) and, inside
    the band, the written-out gradient; the frequencies outside the band get none (a step that
    does not render them leaves their phase alone)."""
    import math

    from hf_fviz.engine.param import band_of_standardized, low_band

    x = torch.randn(3, 3, 64, 33, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 3, 40, 21, dtype=torch.float64)
    (low_band(standardize(x) * math.pi, 40) * w).sum().backward()
    expected = x.grad.clone()
    x.grad = None
    fused = band_of_standardized(x, 40, math.pi)
    (fused * w).sum().backward()
    assert torch.allclose(fused, low_band(standardize(x) * math.pi, 40), atol=1e-12)
    inside = torch.zeros_like(x, dtype=torch.bool)
    inside[..., :20, :21] = True
    inside[..., 44:, :21] = True
    assert torch.allclose(x.grad[inside], expected[inside], atol=1e-12)
    assert x.grad[~inside].abs().max() == 0 and expected[~inside].abs().min() > 0


def test_maco_optimizer_holds_only_the_band_a_step_can_render():
    """With a render size below the canvas, the phase parameter is that band alone: the final
    image is bitwise the full-grid one, training renders and band gradients match it (the
    standardization still over the whole grid), and the frequencies outside never move."""
    from hf_fviz.engine.optimize import LoopSettings, optimize
    from hf_fviz.engine.param import low_band

    full = MacoImage(2, 256, seeds=[0, 1])
    band = MacoImage(2, 256, seeds=[0, 1], render_size=150)
    assert band.phase.shape == (2, 3, 150, 76) and full.phase.shape == (2, 3, 256, 129)
    full.eval(), band.eval()
    assert torch.equal(full(), band())
    for m in (full, band):
        m.train()
        m.render_size = 100
    a, b = full(), band()
    assert torch.allclose(a, b, atol=1e-6)
    w = torch.randn_like(a)
    (a * w).sum().backward()
    (b * w).sum().backward()
    assert torch.allclose(low_band(full.phase.grad, 150), band.phase.grad, rtol=1e-4, atol=1e-4)
    band.render_size = 300  # never above the band it holds
    assert band().shape[-1] == 150
    outer = band.outer_phase.clone()
    start = band.full_phase().detach().clone()
    optimize(band, lambda x: x.mean(dim=(1, 2, 3)), transforms=lambda x, step: x, normalize=lambda x: x,
             settings=LoopSettings(steps=3, lr=0.3))
    assert torch.equal(band.outer_phase, outer)
    moved = (band.full_phase().detach() - start).abs() > 0
    assert moved[..., :75, :76].any() and not moved[..., 75:181, :].any() and not moved[..., :, 76:].any()


def test_fused_colour_standardization_and_polar_match_the_written_out_ops():
    from hf_fviz.engine.param import polar, standardized_colours

    x = torch.randn(2, 3, 20, 24, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 20, 24, dtype=torch.float64)
    (recorrelate(standardize(x)) * w).sum().backward()
    expected = x.grad.clone()
    x.grad = None
    out = standardized_colours(x)
    (out * w).sum().backward()
    assert torch.allclose(out, recorrelate(standardize(x)), atol=1e-12) and torch.allclose(x.grad, expected, atol=1e-12)

    phase = torch.randn(2, 3, 10, 6, dtype=torch.float64, requires_grad=True)
    magnitude = torch.rand(3, 10, 6, dtype=torch.float64)
    written = torch.complex(torch.cos(phase) * magnitude, torch.sin(phase) * magnitude)
    torch.fft.irfft2(written, s=(10, 10)).pow(2).sum().backward()
    expected = phase.grad.clone()
    phase.grad = None
    z = polar(magnitude, phase)
    torch.fft.irfft2(z, s=(10, 10)).pow(2).sum().backward()
    assert torch.allclose(z, written, atol=1e-12) and torch.allclose(phase.grad, expected, atol=1e-12)


def test_standardize_per_image():
    x = torch.randn(2, 3, 4, 4) * torch.tensor([1.0, 10.0]).view(2, 1, 1, 1)
    s = standardize(x)
    assert torch.allclose(s.flatten(1).std(1), torch.ones(2), atol=1e-3)


# ---------------------------------------------------------------------------- transforms
def test_crops_shape_grouping_and_determinism():
    imgs = torch.stack([torch.full((3, 64, 64), float(i)) for i in range(3)])
    t1 = RandomCrops(CropSettings(crops=4, noise=0.0), out_size=(16, 16), steps=10, seed=1)
    out = t1(imgs, 0)
    assert out.shape == (12, 3, 16, 16)
    # rows i*K..i*K+K-1 come from image i (crops stay inside the canvas: no zero padding)
    assert torch.allclose(out.view(3, 4, -1).mean(-1), torch.tensor([0.0, 1.0, 2.0])[:, None].expand(3, 4), atol=1e-5)
    t2 = RandomCrops(CropSettings(crops=4, noise=0.1), out_size=(16, 16), steps=10, seed=1)
    t3 = RandomCrops(CropSettings(crops=4, noise=0.1), out_size=(16, 16), steps=10, seed=1)
    g = torch.rand(2, 3, 64, 64)
    a, b = t2(g, 3), t3(g[:1], 3)  # batch of 2 vs single: same crops and noise for image 0
    assert torch.equal(a[:4], b)


def test_crop_schedule_shrinks_and_crop_content_is_right():
    t = RandomCrops(CropSettings(crops=64, scale=(0.9, 0.3), scale_jitter=0.0, center_std=0.0, noise=0.0), out_size=(8, 8), steps=5)
    assert torch.allclose(t.boxes(0)[:, 0], torch.full((64,), 0.9))
    assert torch.allclose(t.boxes(4)[:, 0], torch.full((64,), 0.3))
    # a centred crop of half the canvas of a horizontal ramp spans the middle half of the ramp
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).contiguous()
    t = RandomCrops(CropSettings(crops=1, scale=(0.5, 0.5), scale_jitter=0.0, center_std=0.0, noise=0.0), out_size=(32, 32), steps=1)
    crop = t(ramp, 0)[0, 0, 0]
    assert abs(float(crop[0]) - 0.25) < 0.03 and abs(float(crop[-1]) - 0.75) < 0.03


def test_whole_view_takes_slot_zero_of_each_image():
    g = torch.rand(2, 3, 64, 64)
    settings = dict(crops=4, noise=0.0, scale=(0.5, 0.5), scale_jitter=0.0)
    t = RandomCrops(CropSettings(**settings, whole_view=True), out_size=(16, 16), steps=4, seed=3)
    plain = RandomCrops(CropSettings(**settings), out_size=(16, 16), steps=4, seed=3)
    assert t.crops == 4 and t.random_crops == 3 and t.boxes(0).shape == (3, 3)
    out = t(g, 0).view(2, 4, 3, 16, 16)
    assert torch.allclose(out[:, 0], resize_whole(g, (16, 16)))
    # the other slots are random crops of half the canvas: not the whole view
    assert (out[:, 1:] - out[:, :1]).abs().mean() > 0.05
    assert plain(g, 0).shape == (8, 3, 16, 16) and not torch.allclose(plain(g, 1).view(2, 4, 3, 16, 16)[:, 0], out[:, 0])


def test_resized_boxes_match_slices_and_interpolate_values_and_gradients():
    import torch.nn.functional as F

    from hf_fviz.engine.transforms import _ResizedBoxes

    src = torch.rand(2, 3, 50, 40, dtype=torch.float64, requires_grad=True)
    head = torch.rand(2, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    boxes = [(0, 30, 5, 35), (10, 50, 0, 40), (20, 36, 20, 36)]
    out = _ResizedBoxes.apply(src, boxes, (16, 16), head)
    written = torch.stack([head] + [F.interpolate(src[..., a:b, c:d], size=(16, 16), mode="bilinear", align_corners=False)
                                    for a, b, c, d in boxes], dim=1)
    assert out.shape == (2, 4, 3, 16, 16) and torch.allclose(out, written, atol=1e-12)
    w = torch.randn_like(out)
    (written * w).sum().backward()
    expected = (src.grad.clone(), head.grad.clone())
    src.grad = head.grad = None
    (out * w).sum().backward()
    assert torch.allclose(src.grad, expected[0], atol=1e-12) and torch.equal(head.grad, expected[1])


@pytest.mark.parametrize("shape,size", [((2, 3, 384, 384), (224, 224)), ((1, 3, 750, 750), (224, 224)),
                                        ((3, 3, 250, 300), (224, 200)), ((1, 3, 100, 120), (224, 224)),
                                        ((1, 1, 17, 33), (5, 40))])
def test_whole_view_resize_has_interpolate_values_and_its_gradient_from_the_banded_backward(shape, size):
    import torch.nn.functional as F

    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1), requires_grad=True)
    g = torch.randn(shape[0], shape[1], *size, generator=torch.Generator().manual_seed(2))
    ours = resize_whole(x, size)
    assert ours.grad_fn is not None and "AntialiasedResize" in type(ours.grad_fn).__name__  # the banded backward ran
    (got,) = torch.autograd.grad(ours, x, g)
    theirs = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    (expected,) = torch.autograd.grad(theirs, x, g)
    assert torch.equal(ours, theirs)
    assert torch.allclose(got, expected, atol=2e-6 * float(expected.abs().max()), rtol=0)


def test_banded_backward_passes_gradcheck_in_float64():
    from hf_fviz.engine import resample

    x64 = torch.rand(1, 2, 40, 37, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: resample.antialiased_resize(t, (24, 30)), (x64,))


def test_noise_is_a_shifted_field_with_the_set_distribution():
    """Each step's noise is the run's field shifted circularly (same values, other places): the
    same distribution every step (N(0, s) + U(-s/2, s/2)) and uncorrelated between steps."""
    t = RandomCrops(CropSettings(crops=2, noise=0.1), out_size=(64, 64), steps=4, seed=0)
    zeros = torch.zeros(2, 3, 64, 64)
    a, b = t.add_noise(zeros, 2), t.add_noise(zeros, 2)
    assert not torch.equal(a, b)
    assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)  # a permutation
    assert abs(float(a.std()) - 0.1 * math.sqrt(1 + 1 / 12)) < 0.003 and abs(float(a.mean())) < 0.003
    assert abs(float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])) < 0.03
    again = RandomCrops(CropSettings(crops=2, noise=0.1), out_size=(64, 64), steps=4, seed=0)
    assert torch.equal(again.add_noise(zeros, 2), a)  # seed and step decide it


def test_crops_are_differentiable_to_the_canvas():
    imgs = torch.rand(2, 3, 48, 48, requires_grad=True)
    t = RandomCrops(CropSettings(crops=3), out_size=(24, 24), steps=4)
    t(imgs, 0).sum().backward()
    assert imgs.grad.shape == imgs.shape and imgs.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- objectives
def test_channel_neuron_layer_on_conv():
    act = torch.zeros(2, 4, 3, 3)
    act[0, 1] = 2.0
    act[1, 1, 1, 1] = 9.0
    assert torch.allclose(obj.channel("c", 1)(act), torch.tensor([2.0, 1.0]))
    assert torch.allclose(obj.neuron("c", 1)(act), torch.tensor([2.0, 9.0]))  # centre by default
    assert torch.allclose(obj.neuron("c", 1, (0, 0))(act), torch.tensor([2.0, 0.0]))
    assert torch.allclose(obj.deepdream("c")(act), act.pow(2).flatten(1).mean(1))


def test_token_objectives_exclude_prefix_tokens():
    info = {"t": Layer("t", "tokens", 2, (5, 2), prefix_tokens=1, grid=(2, 2))}
    act = torch.zeros(1, 5, 2)
    act[0, 0, 0] = 100.0  # CLS: ignored
    act[0, 1:, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert float(obj.channel("t", 0)(act, info)) == pytest.approx(2.5)
    assert float(obj.neuron("t", 0, (1, 0))(act, info)) == pytest.approx(3.0)
    assert float(obj.neuron("t", 0, 1)(act, info)) == pytest.approx(2.0)
    assert float(obj.neuron("t", 0)(act, info)) == pytest.approx(4.0)  # centre of a 2x2 grid: (1, 1)


def test_logit_direction_and_algebra():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    assert float(obj.class_logit(2)({"logits": logits})) == 3.0
    combo = obj.class_logit(2) - 2 * obj.class_logit(0) + obj.class_logit(1) * 0.5
    assert float(combo({"logits": logits})) == pytest.approx(3 - 2 + 1)
    d = obj.direction("logits", [0.0, 0.0, 1.0], cossim_pow=0)
    assert float(d({"logits": logits})) == pytest.approx(3.0)
    d2 = obj.direction("logits", [0.0, 0.0, 1.0])  # dot * cos^2
    cos = 3 / logits.norm()
    assert float(d2({"logits": logits})) == pytest.approx(float(3 * cos**2), rel=1e-5)


def test_batch_objective_vectorized_equals_per_image():
    acts = {"c": torch.randn(6, 5, 4, 4)}  # 3 images x 2 crops
    objs = [obj.channel("c", u) for u in (4, 0, 2)]
    batch = obj.BatchObjective(objs, {}, crops=2)
    assert batch.vectorized
    expected = torch.stack([objs[i](acts["c"][2 * i : 2 * i + 2]).mean() for i in range(3)])
    assert torch.allclose(batch(acts), expected)
    mixed = obj.BatchObjective([obj.channel("c", 1), obj.neuron("c", 1), obj.deepdream("c")], {}, crops=2)
    assert not mixed.vectorized
    assert mixed(acts).shape == (3,)
    assert float(mixed(acts)[2]) == pytest.approx(float(acts["c"][4:6].pow(2).mean()), rel=1e-5)


def test_training_render_keeps_only_the_frequencies_the_crops_can_see():
    """At a large canvas MACO renders a band-limited, smaller image while optimizing; it is the
    full image seen at that resolution, and the final (eval) render is full size."""
    import torch.nn.functional as F

    from hf_fviz.engine.param import MacoImage
    from hf_fviz.engine.transforms import CropSettings, RandomCrops, resize_whole

    crops = RandomCrops(CropSettings(crops=4, scale=(0.9, 0.4)), out_size=(224, 224), steps=10)
    side = crops.render_size(1280)
    assert side == 750 and crops.render_size(384) == 384  # 224 / 0.3 = 747 px, rounded up to 2 * 3 * 5^3
    param = MacoImage(1, 1280, seeds=[3])
    param.render_size = side
    param.train()
    small = param()
    param.eval()
    full = param()
    assert small.shape == (1, 3, side, side) and full.shape == (1, 3, 1280, 1280)
    seen = F.interpolate(full, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    corr = torch.corrcoef(torch.stack([seen.flatten(), small.detach().flatten()]))[0, 1]
    assert corr > 0.97, corr


def test_render_side_follows_the_crops_coarse_to_fine():
    """Each step renders the canvas at the side its smallest crop can resolve: small early (big
    crops), up to `render_size` late; the loop uses it and still returns full-canvas maps."""
    from hf_fviz.engine.optimize import LoopSettings, optimize
    from hf_fviz.engine.param import MacoImage

    t = RandomCrops(CropSettings(crops=4, scale=(0.9, 0.4), whole_view=True), out_size=(224, 224), steps=10, seed=0)
    sides = []
    for s in range(10):  # as the loop does: the side first, then the crops of the same boxes
        sides.append(t.render_side(s, 1280))
        assert t.boxes(s) is t.boxes(s)  # drawn once per step
        assert 224 / float(t.boxes(s)[:, 0].min()) <= sides[-1]  # every crop gets at least 224 px of canvas
    assert sides[0] < 300 and sides[-1] >= 560 and max(sides) <= t.render_size(1280) == 750

    crops = RandomCrops(CropSettings(crops=3, scale=(0.9, 0.4), whole_view=True), out_size=(32, 32), steps=8, seed=1)
    param = MacoImage(2, 256, seeds=[0, 1], render_size=crops.render_size(256))
    asked: list[int] = []
    side_of = crops.render_side
    crops.render_side = lambda step, canvas: asked.append(side_of(step, canvas)) or asked[-1]
    seen: list[int] = []
    res = optimize(param, lambda x: x.view(2, 3, -1).mean(dim=(1, 2)), transforms=crops, normalize=lambda x: x,
                   settings=LoopSettings(steps=8, lr=0.3), progress=lambda s, n, info: seen.append(info["images"]().shape[-1]))
    assert seen == asked and len(seen) == 8 and seen[0] < seen[-1]
    assert res.images.shape == (2, 3, 256, 256) and res.transparency.shape == (2, 256, 256)
    assert float(res.transparency.min()) >= 0 and float(res.transparency.sum()) > 0
