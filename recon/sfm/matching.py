"""Matching strategy of ``recon sfm``: which image pairs to match.

* ``exhaustive``: every pair (small sets: at most ``exhaustive_max_images``).
* ``sequential``: each frame with its ``overlap`` successors (videos, ordered sequences), plus
  loop-closure pairs found by retrieval (below) between frames further apart.
* ``spatial``: nearest neighbours by GPS position (when the images carry GPS priors).
* ``retrieval``: for large unordered sets, each image with its ``retrieval_k`` most similar
  images by a global descriptor.

The retrieval here is ours and needs no download: a VLAD descriptor (Jegou et al. 2010) of the
images' own SIFT descriptors over a small k-means vocabulary learnt from this image set,
compared by cosine similarity. pycolmap's vocabulary-tree matcher is never called (it downloads
a vocabulary at run time and aborts the process when it cannot).
"""

from __future__ import annotations

import numpy as np

__all__ = ["retrieval_pairs", "sequential_pairs", "vlad_descriptors"]


def _root_sift(desc: np.ndarray) -> np.ndarray:
    d = desc.astype(np.float32)
    d /= np.maximum(d.sum(1, keepdims=True), 1e-6)
    return np.sqrt(d)


def vlad_descriptors(descriptors: list[np.ndarray], *, k: int = 32, sample: int = 300,
                     seed: int = 0) -> np.ndarray:
    """[n_images, k * 128] L2-normalised VLAD vectors from per-image SIFT descriptors [Ki, 128]."""
    import cv2

    rng = np.random.default_rng(seed)
    rs = [_root_sift(d) if len(d) else np.zeros((0, 128), np.float32) for d in descriptors]
    pool = np.concatenate([r[rng.choice(len(r), min(sample, len(r)), replace=False)] for r in rs if len(r)])
    k = max(2, min(k, len(pool) // 4))
    crit = (cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, 20, 1e-3)
    cv2.setRNGSeed(seed)
    _, _, centres = cv2.kmeans(pool, k, None, crit, 2, cv2.KMEANS_PP_CENTERS)
    out = np.zeros((len(rs), k * 128), np.float32)
    for i, r in enumerate(rs):
        if not len(r):
            continue
        r = r[rng.choice(len(r), min(3000, len(r)), replace=False)]
        d2 = (r * r).sum(1)[:, None] - 2 * r @ centres.T + (centres * centres).sum(1)[None]
        a = d2.argmin(1)
        v = np.zeros((k, 128), np.float32)
        np.add.at(v, a, r - centres[a])
        v = np.sign(v) * np.sqrt(np.abs(v))  # power normalisation
        out[i] = v.ravel() / max(np.linalg.norm(v), 1e-12)
    return out


def retrieval_pairs(vlad: np.ndarray, k: int, *, min_index_distance: int = 0) -> set[tuple[int, int]]:
    """Each image with its ``k`` most similar others (cosine), as sorted index pairs; pairs
    closer than ``min_index_distance`` in index are skipped (already matched sequentially)."""
    sim = vlad @ vlad.T
    n = len(vlad)
    idx = np.arange(n)
    sim[np.abs(idx[:, None] - idx[None]) < max(1, min_index_distance)] = -np.inf
    pairs = set()
    for i in range(n):
        for j in np.argsort(-sim[i])[:k]:
            if np.isfinite(sim[i, j]):
                pairs.add((min(i, int(j)), max(i, int(j))))
    return pairs


def sequential_pairs(n: int, overlap: int) -> set[tuple[int, int]]:
    return {(i, j) for i in range(n) for j in range(i + 1, min(n, i + overlap + 1))}
