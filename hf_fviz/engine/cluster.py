"""Grouping an image set: PCA, then seeded k-means++ on the PCA scores.

Both image-set methods cluster pooled activations this way. Our own torch code (float64) keeps
runs deterministic and scikit-learn out of the runtime. The authors' t-SNE step before k-means is
left out: t-SNE is slow, stochastic and does not preserve the distances k-means relies on; k-means
on the PCA scores is the standard replacement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InvalidSettings

PCA_DIMS = 50


@dataclass
class PCA:
    """Principal axes of a feature matrix; `transform` projects new rows."""

    mean: torch.Tensor
    components: torch.Tensor  # (r, D)
    explained: torch.Tensor  # (r,) explained variance ratio

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() - self.mean) @ self.components.T


def fit_pca(x: torch.Tensor, dims: int = PCA_DIMS) -> PCA:
    """PCA by SVD of the centred rows (float64); at most min(dims, N-1, D) components, each
    signed so that its largest entry is positive (a deterministic result)."""
    xd = x.double()
    mean = xd.mean(dim=0)
    centred = xd - mean
    r = max(1, min(dims, x.shape[0] - 1, x.shape[1]))
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    comps = vh[:r]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))
    comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
    var = s.pow(2)
    explained = var[:r] / var.sum().clamp_min(1e-12)
    return PCA(mean, comps, explained)


@dataclass
class KMeans:
    """k-means result: labels (N,), centroids (k, D), inertia (sum of squared distances)."""

    labels: torch.Tensor
    centroids: torch.Tensor
    inertia: float


def _plusplus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn with probability ∝ squared distance."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centres = [x[first]]
    d2 = (x - x[first]).pow(2).sum(dim=1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # fewer distinct points than k: any point not picked yet
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            idx = int(torch.multinomial((d2 / total).float(), 1, generator=gen))
        centres.append(x[idx])
        d2 = torch.minimum(d2, (x - x[idx]).pow(2).sum(dim=1))
    return torch.stack(centres)


def _fill_empty(x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Give every empty cluster the point farthest from its centroid (from a cluster of 2+)."""
    k = centroids.shape[0]
    labels = labels.clone()
    for c in range(k):  # k is small; runs only when a cluster is empty
        counts = torch.bincount(labels, minlength=k)
        if counts[c] > 0:
            continue
        d2 = (x - centroids[labels]).pow(2).sum(dim=1)
        d2[counts[labels] < 2] = -1
        j = int(d2.argmax())
        labels[j] = c
        centroids[c] = x[j]
    return labels


def kmeans(x: torch.Tensor, k: int, *, seed: int = 0, n_init: int = 8, max_iter: int = 100, tol: float = 1e-7) -> KMeans:
    """Lloyd's k-means with k-means++ seeding, best of `n_init` starts; every cluster non-empty."""
    n = x.shape[0]
    if not 1 <= k <= n:
        raise InvalidSettings(f"k must be in 1..{n} for {n} images, got {k}")
    x = x.double()
    gen = torch.Generator().manual_seed(int(seed))
    best: KMeans | None = None
    for _ in range(max(1, n_init)):
        centroids = _plusplus(x, k, gen)
        labels = torch.zeros(n, dtype=torch.long)
        for _ in range(max_iter):
            labels = torch.cdist(x, centroids).argmin(dim=1)
            labels = _fill_empty(x, labels, centroids)
            counts = torch.bincount(labels, minlength=k).clamp_min(1).unsqueeze(1).double()
            new = torch.zeros_like(centroids).index_add_(0, labels, x) / counts
            shift = float((new - centroids).pow(2).sum())
            centroids = new
            if shift <= tol:
                break
        labels = _fill_empty(x, torch.cdist(x, centroids).argmin(dim=1), centroids)
        counts = torch.bincount(labels, minlength=k).clamp_min(1).unsqueeze(1).double()
        centroids = torch.zeros_like(centroids).index_add_(0, labels, x) / counts
        inertia = float((x - centroids[labels]).pow(2).sum())
        if best is None or inertia < best.inertia - 1e-12:
            best = KMeans(labels, centroids, inertia)
    assert best is not None
    return best


@dataclass
class Clusters:
    """Images grouped by k-means on the PCA scores of their features."""

    labels: torch.Tensor  # (N,)
    embedding: torch.Tensor  # (N, r) PCA scores
    centroids: torch.Tensor  # (k, r)
    pca: PCA

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def members(self, c: int) -> torch.Tensor:
        return (self.labels == c).nonzero().flatten()

    def nearest(self, c: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (up to) m members closest to centroid c, closest first, with their distances."""
        idx = self.members(c)
        d = (self.embedding[idx] - self.centroids[c]).norm(dim=1)
        order = torch.argsort(d, stable=True)[:m]
        return idx[order], d[order]


def cluster(features: torch.Tensor, k: int, *, seed: int = 0, pca_dims: int = PCA_DIMS) -> Clusters:
    """PCA to at most `pca_dims`, then seeded k-means++ into k clusters."""
    pca = fit_pca(features, pca_dims)
    emb = pca.transform(features)
    km = kmeans(emb, k, seed=seed)
    return Clusters(km.labels, emb, km.centroids, pca)



__all__ = ["PCA", "fit_pca", "KMeans", "kmeans", "Clusters", "cluster", "PCA_DIMS"]
