"""The image-set methods, from one place: dual-objective ("The Mind's Eye", Stergiou 2021) and
multifaceted feature visualization (Nguyen, Yosinski & Clune 2016). Both cluster a set of natural
images in a layer's feature space and make one image per cluster, through the one loop setup of
`engine.run`.

    >>> import hf_fviz
    >>> model = hf_fviz.load_model("builtin:mobilenetv2")
    >>> dual = hf_fviz.dual_objective(model, layer="blocks.5", images="samples", k=4)
    >>> facets = hf_fviz.multifaceted(model, unit="tabby cat", images="photos/", k=4)

(the keyword API is hf_fviz/api.py; the engine functions take a VisionModel, loaded images and
checked settings). Where things live (each module has one job; none imports this one):
- `dual`: the dual objective; `facets`: multifaceted visualization.
- `cluster`: PCA and seeded k-means++. Clustering: pooled activations (conv: spatial mean;
  tokens: mean over patch tokens, prefix tokens excluded; logits: as is) -> PCA (torch SVD, at
  most 50 dims) -> k-means++ with a seed.
- `param`: the parametrizations started from images (`ImageMaco`, `ImagePixels`, `PaperPixels`).
- `imageset_common`: what both methods share (the image set they take, pooled features, rows).
The output folder is written by `hf_fviz.output.imagesets.save`; the measured quality is
`hf_fviz.bench.imagesets.quality_imagesets`.
"""

from __future__ import annotations

from ..settings import DualSettings, FacetSettings
from .cluster import cluster, fit_pca, kmeans
from .dual import RECIPES, dual_objective
from .facets import multifaceted
from .imageset_common import ImageBatch, penultimate_layer, pooled_features
from .param import ImageMaco, ImagePixels, PaperPixels

__all__ = [
    "dual_objective",
    "multifaceted",
    "DualSettings",
    "FacetSettings",
    "ImageBatch",
    "ImageMaco",
    "ImagePixels",
    "PaperPixels",
    "RECIPES",
    "cluster",
    "kmeans",
    "fit_pca",
    "pooled_features",
    "penultimate_layer",
]
