"""Batched random crops and noise: the augmentations that make MACO images robust.

One `grid_sample` call cuts all K crops out of all N images: the K crop grids are stacked into
one tall grid shared by the N images, so the canvases are never copied. Crops and noise depend
only on the seed and the step (the same for every image of a batch), so a batched run of N
units gives exactly the images of N single runs with that seed.

Crop schedule: the authors' PyTorch code (Horama) uses fixed crops of 25-30 % of the canvas;
xplique shrinks the mean crop side linearly from 0.5 to 0.05 of the canvas. Small crops alone
make objects that only work at crop scale (the whole image is then not classified as the class);
we shrink from large to medium crops (default 0.9 -> 0.4, see `CropSettings`) so that the final
image works as a whole and still gets detail, and keep each crop inside the canvas (the model
never sees padding). `visualize` also gives one of the K slots to the whole canvas every step
(`whole_view`): on 20 ImageNet classes of MobileNetV2 that lifted the target's rank on the whole
image to 1 for every class (from 90-95 %) at the same cost. Crops much larger than the model input are cut from an average-pooled
canvas, a cheap antialias so every canvas pixel gets gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CropSettings:
    """Random crop and noise settings.

    `crops`: crops per image per step (0 = the whole canvas resized, no crops).
    `scale`: mean crop side as a fraction of the canvas at the first and last step (linear).
    `scale_jitter`: std of each crop's side around the scheduled mean (clipped to [0.05, 1]).
    `center_std`: std of the crop centre around the canvas centre (fraction of the canvas).
    `noise`: N(0, noise) + U(-noise/2, noise/2) added to each crop in model-input space.
    `whole_view`: the first of the K slots is the whole canvas resized (not a random crop), so
    that the image also works as a whole, as it is seen on a model card or by another model.
    """

    crops: int = 6
    scale: tuple[float, float] = (0.9, 0.4)
    scale_jitter: float = 0.05
    center_std: float = 0.15
    noise: float = 0.05
    whole_view: bool = False


class RandomCrops:
    """Callable `(images (N, 3, S, S), step) -> (N*K, 3, h, w)` crops, grouped per image
    (rows i*K .. i*K+K-1 belong to image i)."""

    attribution_tap: torch.Tensor | None = None
    """After a call with a whole view: the (non-leaf) input of the random crops only, whose gradient is
    the attribution of the random crops (see `optimize`); None otherwise."""

    def __init__(
        self, settings: CropSettings, *, out_size: tuple[int, int], steps: int, seed: int = 0, device: torch.device | str = "cpu"
    ) -> None:
        self.settings = settings
        self.out_size = out_size
        self.steps = max(int(steps), 1)
        self.device = torch.device(device)
        self._cpu_gen = torch.Generator().manual_seed(int(seed))
        self._dev_gen = torch.Generator(device=self.device).manual_seed(int(seed) + 1)

    @property
    def crops(self) -> int:
        return max(self.settings.crops, 1)

    @property
    def random_crops(self) -> int:
        """Random crop slots per step (K, less the whole-view slot)."""
        return self.crops - 1 if self.settings.whole_view and self.settings.crops > 1 else self.crops

    def render_size(self, canvas: int) -> int:
        """The canvas resolution the crops can resolve: the model input over the smallest crop
        side (scheduled minimum less two jitter std), even, at most `canvas`."""
        s = self.settings
        smallest = 1.0 if s.crops == 0 else max(0.05, min(s.scale) - 2 * s.scale_jitter)
        side = math.ceil(max(self.out_size) / smallest / 2) * 2
        return min(canvas, side)

    def boxes(self, step: int) -> torch.Tensor:
        """(K', 3) random crop boxes for a step (K' = `random_crops`): side, centre x, centre y
        (fractions of the canvas)."""
        s = self.settings
        k = self.random_crops
        if s.crops == 0:
            return torch.tensor([[1.0, 0.5, 0.5]])
        t = step / max(self.steps - 1, 1)
        mean = s.scale[0] + (s.scale[1] - s.scale[0]) * t
        draws = torch.randn(k, 3, generator=self._cpu_gen)
        side = (mean + s.scale_jitter * draws[:, 0]).clamp(0.05, 1.0)
        half = side / 2
        centre = (0.5 + s.center_std * draws[:, 1:]).clamp(min=half[:, None], max=1 - half[:, None])
        return torch.cat([side[:, None], centre], dim=1)

    def __call__(self, images: torch.Tensor, step: int) -> torch.Tensor:
        self.attribution_tap = None
        if self.random_crops < self.crops:  # whole view in slot 0 of each image's group
            # The random crops are cut from a view of the canvas whose gradient is theirs alone
            # (the loop reads it for the transparency map); the whole view would otherwise add
            # its |dL/dx| to every pixel and the map would select nothing. A view changes no value:
            # the canvas gradient is still the sum of the same two terms.
            tap = images.view_as(images)
            self.attribution_tap = tap
            crops = self._random_crops(tap, step)
            n = images.shape[0]
            whole = resize_whole(images, self.out_size)[:, None]
            crops = torch.cat([whole, crops.view(n, self.random_crops, *crops.shape[1:])], dim=1).flatten(0, 1)
        else:
            crops = self._random_crops(images, step)
        return self.add_noise(crops, self.crops)

    def _random_crops(self, images: torch.Tensor, step: int) -> torch.Tensor:
        n, c, height, width = images.shape
        h, w = self.out_size
        boxes = self.boxes(step)
        k = boxes.shape[0]
        # Crops much bigger than the model input are cut from a 2x/3x average-pooled canvas
        # (a cheap mipmap-style antialias): every canvas pixel still gets gradient, and the
        # grid_sample backward stays at the output size.
        ratio = float(boxes[:, 0].max()) * max(height / h, width / w)  # canvas px per output px
        factor = min(4, max(1, int(ratio + 0.5)))
        source = F.avg_pool2d(images, factor, ceil_mode=True) if factor > 1 else images
        # The box's longer side is `side` (of the canvas); its aspect follows the model input.
        theta = torch.zeros(k, 2, 3)
        theta[:, 0, 0] = boxes[:, 0] * (w / max(h, w)) * (height / max(height, width))
        theta[:, 1, 1] = boxes[:, 0] * (h / max(h, w)) * (width / max(height, width))
        theta[:, 0, 2] = 2 * boxes[:, 1] - 1
        theta[:, 1, 2] = 2 * boxes[:, 2] - 1
        grid = F.affine_grid(theta, [k, c, h, w], align_corners=False).to(images.device, images.dtype)
        grid = grid.reshape(1, k * h, w, 2).expand(n, -1, -1, -1)
        out = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.view(n, c, k, h, w).transpose(1, 2).reshape(n * k, c, h, w)

    def add_noise(self, crops: torch.Tensor, k: int) -> torch.Tensor:
        """Gaussian plus uniform noise, one draw per crop slot shared across the N images."""
        sigma = self.settings.noise
        if sigma <= 0:
            return crops
        shape = (1, k, *crops.shape[1:])
        noise = torch.randn(shape, generator=self._dev_gen, device=self.device) * sigma
        noise += (torch.rand(shape, generator=self._dev_gen, device=self.device) - 0.5) * sigma
        n = crops.shape[0] // k
        return (crops.view(n, k, *crops.shape[1:]) + noise.to(crops.dtype)).view_as(crops)


def resize_whole(images: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """The uncropped canvas resized to the model input (antialiased), for the final objective."""
    if tuple(images.shape[-2:]) == tuple(out_size):
        return images
    return F.interpolate(images, size=out_size, mode="bilinear", align_corners=False, antialias=True)
