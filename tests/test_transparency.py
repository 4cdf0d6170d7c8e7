"""Selective transparency: the map sums the random crops' gradient only; the images are unchanged."""

from __future__ import annotations

import numpy as np
import torch

from hf_fviz import load_model
from hf_fviz.engine import objectives as obj
from hf_fviz.engine.optimize import LoopSettings, model_score, optimize
from hf_fviz.engine.param import make_param
from hf_fviz.engine.transforms import CropSettings, RandomCrops, resize_whole
from hf_fviz.bench.insertion import insertion_test


class AllViewsCrops(RandomCrops):
    """The crops as they were before: random crops cut from the canvas itself, no attribution tap."""

    def __call__(self, images: torch.Tensor, step: int) -> torch.Tensor:
        crops = self._random_crops(images, step)
        n = images.shape[0]
        whole = resize_whole(images, self.out_size)[:, None]
        crops = torch.cat([whole, crops.view(n, self.random_crops, *crops.shape[1:])], dim=1).flatten(0, 1)
        return self.add_noise(crops, self.crops)


def _run(model, crops_class):
    info = {lay.name: lay for lay in model.layers()}
    transforms = crops_class(CropSettings(crops=3, whole_view=True), out_size=model.input_size, steps=6, seed=3)
    param = make_param("maco", 2, 96, seeds=[3, 3])
    param.render_size = transforms.render_size(96)
    batch = obj.BatchObjective([obj.class_logit(1), obj.class_logit(2)], info, crops=transforms.crops)
    return optimize(param, model_score(model, batch, ("logits",)), transforms=transforms, normalize=model.normalize,
                    settings=LoopSettings(steps=6, lr=0.3))


def test_images_bitwise_unchanged_and_map_from_the_crops_only():
    model = load_model("org/tiny-resnet", device="cpu")
    before, after = _run(model, AllViewsCrops), _run(model, RandomCrops)
    assert torch.equal(before.images, after.images)  # the optimizer saw the same gradient
    assert torch.equal(before.transparency, after.transparency_all)  # the old map is still there
    assert not torch.allclose(after.transparency, after.transparency_all)
    # the whole view's share is gone: less gradient in total, and more contrast between pixels
    assert float(after.transparency.sum()) < float(after.transparency_all.sum())
    cv = [float(t.std() / t.mean()) for t in (after.transparency, after.transparency_all)]
    assert cv[0] > cv[1]


def test_insertion_rewards_a_map_that_points_at_the_object():
    """A cat photo in one quadrant of a grey canvas and the 'tabby cat' logit: revealing the
    cat's quadrant first beats random order, which beats revealing the grey first."""
    from types import SimpleNamespace

    from hf_fviz.hub.images import load_images

    model = load_model("builtin:mobilenetv2", device="cpu")
    photo = load_images("samples", size=(112, 112))
    canvas = np.full((224, 224, 3), 0.5, dtype=np.float32)
    canvas[:112, :112] = photo.float01([photo.names.index("skimage:chelsea")])[0].permute(1, 2, 0).numpy()
    where = np.zeros((224, 224), dtype=np.float32)
    where[:112, :112] = 1.0
    where += np.linspace(0, 0.1, 224 * 224, dtype=np.float32).reshape(224, 224)  # a fixed order inside each part
    vis = SimpleNamespace(image=canvas, transparency=where, layer="logits", unit=model.class_index("tabby cat"))
    good = insertion_test(model, vis, slices=8, random_orders=1)
    bad = insertion_test(model, vis, transparency=-where, slices=8, random_orders=1)
    assert good.alpha_auc > good.random_auc > bad.alpha_auc and good.ratio > 1 > bad.ratio
    with torch.no_grad():
        full = model.activations(model.normalize(torch.from_numpy(canvas).permute(2, 0, 1)[None]), "logits")[0, vis.unit]
    assert abs(good.curve[-1] - float(full)) < 1e-3 and good.curve[0] == bad.curve[0] and len(good.curve) == 9
