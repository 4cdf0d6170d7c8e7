"""Image sets for the dual-objective and multifaceted methods: a folder, a list of files, the
bundled `samples`, or a hub dataset (`org/name`, see `hf_fviz.hub.sources`), loaded once at a
model's input size.

    >>> from hf_fviz.hub.images import load_images
    >>> images = load_images("samples", size=(224, 224))      # 15 freely licensed photos
    >>> images = load_images("photos/", model=model)           # every image file in a folder
    >>> images.float01().shape                                 # (N, 3, 224, 224) in [0, 1]

Preprocessing follows the usual timm/transformers evaluation path: the short side is resized to
the target (antialiased) and the centre is cropped. Pixels stay in [0, 1]; the model's own
mean/std are applied by `VisionModel.normalize` when the images are fed to it. Images are held as
uint8 so that a few thousand of them fit in memory.

Bad input is a user mistake, never a crash: an empty folder, a file that is not an image, a
truncated file, or an image above `max_pixels` (decompression bombs) raise one `BadImageSet` line
naming the file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

from ..errors import BadImageSet

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

    from .vision_model import VisionModel

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
MAX_PIXELS = 50_000_000  # ~7000 x 7000: refuse bigger images before decoding them
MAX_IMAGES = 5000
SAMPLES = "samples"
SAMPLES_INSTALL = "pip install scikit-image scikit-learn matplotlib"

ImagesSpec = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], "ImageSet", torch.Tensor]


@dataclass(frozen=True)
class SampleImage:
    """One bundled sample: where it comes from and its licence (shown in `hf-fviz ... --images samples`)."""

    name: str
    package: str
    licence: str


# Natural photographs (and a few textures/scientific images) shipped inside packages of the dev
# environment, each with a licence that allows any use. Grey images are repeated to RGB.
SAMPLE_IMAGES: tuple[SampleImage, ...] = (
    SampleImage("astronaut", "skimage", "public domain (NASA)"),
    SampleImage("camera", "skimage", "CC0 (Lav Varshney)"),
    SampleImage("chelsea", "skimage", "CC0 (Stefan van der Walt)"),
    SampleImage("coffee", "skimage", "CC0 (Rachel Michetti)"),
    SampleImage("coins", "skimage", "no known copyright restrictions (Brooklyn Museum)"),
    SampleImage("rocket", "skimage", "public domain (SpaceX)"),
    SampleImage("hubble_deep_field", "skimage", "public domain (NASA)"),
    SampleImage("retina", "skimage", "CC0 1.0"),
    SampleImage("immunohistochemistry", "skimage", "no known copyright restrictions"),
    SampleImage("brick", "skimage", "CC0 (CC0Textures)"),
    SampleImage("grass", "skimage", "CC0 (CC0Textures)"),
    SampleImage("gravel", "skimage", "CC0 (CC0Textures)"),
    SampleImage("china.jpg", "sklearn", "CC BY 2.0 (Flickr user danielbuechele)"),
    SampleImage("flower.jpg", "sklearn", "CC BY 2.0 (Flickr user vultilion)"),
    SampleImage("grace_hopper.jpg", "matplotlib", "public domain (US Navy)"),
)


@dataclass
class ImageSet:
    """N images of one size. `pixels` (N, 3, H, W) uint8; `names[i]` says where image i came from
    (a file path, or `skimage:astronaut` for a sample)."""

    pixels: torch.Tensor
    names: list[str]
    source: str
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pixels.dtype != torch.uint8 or self.pixels.ndim != 4 or self.pixels.shape[1] != 3:
            raise ValueError(f"ImageSet pixels must be uint8 (N, 3, H, W), got {tuple(self.pixels.shape)} {self.pixels.dtype}")
        if len(self.names) != self.pixels.shape[0]:
            raise ValueError("one name per image")

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.pixels.shape[2]), int(self.pixels.shape[3])

    def float01(self, index: Sequence[int] | torch.Tensor | None = None, *, device: torch.device | str = "cpu") -> torch.Tensor:
        """Images (or the rows `index`) as float32 in [0, 1] on `device`."""
        px = self.pixels if index is None else self.pixels[torch.as_tensor(index, dtype=torch.long)]
        return px.to(device).float().div_(255.0)

    def subset(self, index: Sequence[int]) -> ImageSet:
        idx = list(index)
        return ImageSet(self.pixels[torch.as_tensor(idx, dtype=torch.long)], [self.names[i] for i in idx], self.source, dict(self.info))

    def require(self, n: int, *, what: str) -> None:
        """Raise `BadImageSet` when the set holds fewer than `n` images (e.g. k clusters)."""
        if len(self) < n:
            raise BadImageSet(
                f"{what} needs at least {n} images but {self.source} holds {len(self)}: add images or lower --k"
            )


# ---------------------------------------------------------------------------- loading
def load_images(
    images: ImagesSpec,
    *,
    size: tuple[int, int] | int | None = None,
    model: VisionModel | None = None,
    max_pixels: int = MAX_PIXELS,
    max_images: int = MAX_IMAGES,
    split: str | None = None,
    image_column: str | None = None,
) -> ImageSet:
    """Load an image set resized to `size` (default: the model's input size).

    `images`: `"samples"` (the bundled photos), a folder (every image file in it, recursively,
    sorted; hidden files and non-image suffixes skipped), one file, a list of files/folders, an
    `ImageSet` (resized if needed), a float tensor (N, 3, H, W) in [0, 1], or a hub dataset
    ID `org/name` (its `split`, default train, and `image_column`, default the first image
    column; the first `max_images` rows).
    Raises `BadImageSet` naming the first file that cannot be read.
    """
    if size is None:
        if model is None:
            raise ValueError("load_images needs size= or model=")
        size = tuple(model.input_size)
    hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if isinstance(images, ImageSet):
        return images if images.size == hw else ImageSet(_resize_batch(images.pixels, hw), list(images.names), images.source, dict(images.info))
    if isinstance(images, torch.Tensor):
        return _from_tensor(images, hw)
    from .sources import is_hub_dataset, load_source

    if isinstance(images, (str, os.PathLike)) and is_hub_dataset(images):
        return load_source(images, size=hw, max_images=max_images, split=split, image_column=image_column)
    if split is not None or image_column is not None:
        raise BadImageSet("split and image_column are for hub datasets (org/name)")
    if isinstance(images, (str, os.PathLike)) and os.fspath(images) == SAMPLES and not Path(SAMPLES).exists():
        return _load_samples(hw)
    paths = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    if not paths:
        raise BadImageSet("no images given")
    files: list[Path] = []
    for p in paths:
        path = Path(os.fspath(p)).expanduser()
        if os.fspath(p) == SAMPLES and not path.exists():
            raise BadImageSet("'samples' cannot be mixed with files; pass it alone")
        if path.is_dir():
            found = _image_files(path)
            if not found:
                raise BadImageSet(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise BadImageSet(f"no such file or folder: {path}")
    if len(files) > max_images:
        raise BadImageSet(f"{len(files)} images is more than the limit of {max_images}; pass a smaller set (or max_images=)")
    source = os.fspath(paths[0]) if len(paths) == 1 else f"{len(paths)} paths"
    arrays = [_to_array(_read_file(f, max_pixels=max_pixels, target=hw), hw) for f in files]
    return ImageSet(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(), [str(f) for f in files], source)


def _image_files(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            out.append(p)
    return out


def open_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> PILImage.Image:
    """Open one image file lazily (header only) and check its size, so that a decompression bomb
    is refused before it is decoded; every failure is a `BadImageSet` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageSet(f"{path} is too large to load safely (over {max_pixels:,} pixels); shrink it first") from None
    except UnidentifiedImageError:
        raise BadImageSet(f"{path} is not an image file PIL can read") from None
    except OSError as err:
        raise BadImageSet(f"cannot open {path}: {err}") from None
    w, h = im.size
    if w * h > max_pixels or w < 1 or h < 1:
        im.close()
        raise BadImageSet(f"{path} is {w}x{h} pixels, over the limit of {max_pixels:,}; shrink it first"
                          if w * h > max_pixels else f"{path} has no pixels")
    return im


def _read_file(path: Path, *, max_pixels: int, target: tuple[int, int]) -> PILImage.Image:
    """Open, check and fully decode one file (RGB); every failure is a `BadImageSet` naming it."""
    from PIL import Image

    with open_image(path, max_pixels=max_pixels) as im:
        w, h = im.size
        try:
            if im.format == "JPEG":  # decode at a reduced scale when the image is much bigger than needed
                scale = min(w / target[1], h / target[0])
                if scale >= 2:
                    im.draft("RGB", (max(target[1], int(w / scale * 2)), max(target[0], int(h / scale * 2))))
            im.load()
            return _rgb(im)
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
            msg = str(err) or type(err).__name__
            raise BadImageSet(f"cannot decode {path} (damaged or truncated image: {msg})") from None


def _rgb(im: PILImage.Image) -> PILImage.Image:
    """Any PIL mode -> RGB: alpha composited on white, 16-bit and float images rescaled to 8 bit."""
    from PIL import Image

    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        im = Image.fromarray(arr.astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def _to_array(im: PILImage.Image, hw: tuple[int, int]) -> np.ndarray:
    """Resize the short side to the target (antialiased), centre-crop; -> (H, W, 3) uint8."""
    from PIL import Image

    th, tw = hw
    w, h = im.size
    scale = max(tw / w, th / h)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=None)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return np.asarray(im.crop((left, top, left + tw, top + th)), dtype=np.uint8)


def _from_tensor(x: torch.Tensor, hw: tuple[int, int]) -> ImageSet:
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise BadImageSet(f"an image tensor must be float (N, 3, H, W) in [0, 1], got {tuple(x.shape)} {x.dtype}")
    if x.shape[0] == 0:
        raise BadImageSet("the image tensor is empty")
    if not torch.isfinite(x).all():
        raise BadImageSet("the image tensor holds NaN or infinite values")
    px = (x.detach().float().cpu().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return ImageSet(_resize_batch(px, hw), [f"tensor[{i}]" for i in range(x.shape[0])], "tensor")


def _resize_batch(px: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(px.shape[-2:]) == hw:
        return px
    from PIL import Image

    arrays = [_to_array(Image.fromarray(p.permute(1, 2, 0).numpy()), hw) for p in px]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------------------- samples
def sample_arrays() -> list[tuple[str, np.ndarray]]:
    """The bundled sample photos as (name, uint8 array (H, W, 3) or (H, W)), imported lazily."""
    missing = []
    for module, pip_name in (("skimage", "scikit-image"), ("sklearn", "scikit-learn"), ("matplotlib", "matplotlib")):
        try:
            __import__(module)
        except ImportError:
            missing.append(pip_name)
    if missing:
        raise BadImageSet(
            f"--images samples uses the free photos bundled with scikit-image, scikit-learn and matplotlib; "
            f"missing: {', '.join(missing)}. Install them with `{SAMPLES_INSTALL}` or pass a folder of your own images"
        )
    import matplotlib
    import skimage.data
    from PIL import Image
    from sklearn.datasets import load_sample_images

    sk = {Path(f).name: arr for f, arr in zip(*_sklearn_samples(load_sample_images))}
    out: list[tuple[str, np.ndarray]] = []
    for s in SAMPLE_IMAGES:
        if s.package == "skimage":
            arr = np.asarray(getattr(skimage.data, s.name)())
        elif s.package == "sklearn":
            arr = np.asarray(sk[s.name])
        else:
            with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / s.name) as im:
                arr = np.asarray(im.convert("RGB"))
        out.append((f"{s.package}:{s.name}", arr))
    return out


def _sklearn_samples(loader: Any) -> tuple[list[str], list[np.ndarray]]:
    data = loader()
    return list(data.filenames), list(data.images)


def _load_samples(hw: tuple[int, int]) -> ImageSet:
    pixels, names = _sample_pixels(hw)
    licences = {f"{s.package}:{s.name}": s.licence for s in SAMPLE_IMAGES}
    return ImageSet(pixels.clone(), list(names), SAMPLES, {"licences": licences})


@lru_cache(maxsize=4)
def _sample_pixels(hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Decoding and resizing the samples takes seconds; done once per size and process."""
    from PIL import Image

    arrays = []
    names = []
    for name, arr in sample_arrays():
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=-1)
        arrays.append(_to_array(Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8), "RGB"), hw))
        names.append(name)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(), tuple(names)


def read_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """One RGB image file -> (3, H, W) float32 in [0, 1]. An unreadable file or one above
    `MAX_PIXELS` (a decompression bomb, refused before it is decoded) raises `BadImageSet`;
    a damaged one raises OSError while decoding."""
    with open_image(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


__all__ = ["ImageSet", "load_images", "sample_arrays", "SAMPLE_IMAGES", "SAMPLES", "MAX_PIXELS", "IMAGE_SUFFIXES", "open_image", "read_image"]
