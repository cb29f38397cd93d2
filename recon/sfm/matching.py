"""Matching and mapping strategy of ``recon sfm``: which image pairs to match, and which mapper
places the cameras, chosen by the size and kind of the image set (:func:`choose_strategy`).

Matching:

* ``exhaustive``: every pair (small sets: at most ``exhaustive_max_images``).
* ``sequential``: each frame with its ``overlap`` successors (videos, ordered sequences), plus
  loop-closure pairs found by retrieval (below) between frames further apart.
* ``spatial``: nearest neighbours by GPS position (when the images carry GPS priors).
* ``retrieval``: for large unordered sets, each image with its ``retrieval_k`` most similar
  images by a global descriptor:

  - ``vocabtree``: COLMAP's vocabulary tree (``pycolmap.match_vocabtree``) when its file is on
    disk (``$RECON_VOCAB_TREE``, or where ``recon data download colmap_vocab_tree`` puts it). It
    is never downloaded during a run, and it runs in a child process: pycolmap aborts the whole
    process (SIGABRT) on a file it cannot read, and then recon falls back to ``vlad``.
  - ``vlad``: ours, needing no download: a VLAD descriptor (Jegou et al. 2010) of the images' own
    SIFT descriptors over a small k-means vocabulary learnt from this image set, compared by
    cosine similarity.

Mapping: COLMAP's ``incremental`` mapper up to ``incremental_max_images``; past that, GLOMAP's
``global`` mapper (rotation averaging, global positioning, one bundle adjustment: it does not
pay the incremental mapper's registration-by-registration cost, which grows faster than the
image count) up to ``global_max_images``; past that the ``hierarchical`` mapper (the scene graph
cut into overlapping clusters of at most ``leaf_max_images`` images, each mapped incrementally,
then merged).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["VOCAB_TREE_DATASET", "VOCAB_TREE_ENV", "Strategy", "choose_strategy", "find_vocab_tree",
           "retrieval_pairs", "sequential_pairs", "vlad_descriptors"]

VOCAB_TREE_ENV = "RECON_VOCAB_TREE"
VOCAB_TREE_DATASET = "colmap_vocab_tree"  # the catalog entry (datasets/colmap_vocab_tree.toml)


@dataclass(frozen=True)
class Strategy:
    """What :func:`choose_strategy` picked, and why (recorded in the SfM report)."""

    matching: str  # "exhaustive" | "sequential" | "spatial" | "retrieval"
    retrieval: str | None  # "vocabtree" | "vlad" for retrieval matching, else None
    mapper: str  # "incremental" | "global" | "hierarchical"
    matching_reason: str
    mapper_reason: str
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def find_vocab_tree(path: str | None = None, *, n_images: int = 0) -> Path | None:
    """COLMAP's vocabulary-tree file: ``path`` when given, else ``$RECON_VOCAB_TREE``, else a tree
    that ``recon data download colmap_vocab_tree --scene NAME`` left in recon's cache (the
    smallest of them up to 1,000 images, the largest beyond, as COLMAP advises); None when there
    is none. Nothing is downloaded here."""
    if path:
        return Path(path) if Path(path).is_file() else None
    env = os.environ.get(VOCAB_TREE_ENV)
    if env:
        return Path(env) if Path(env).is_file() else None
    from recon.errors import ReconError

    try:
        from recon.io.catalog import cache_dir, get_dataset

        info = get_dataset(VOCAB_TREE_DATASET)
        found = [f for f in (cache_dir() / info.name / info.url_for(s).rsplit("/", 1)[-1] for s in info.scenes)
                 if f.is_file()]
    except (ImportError, OSError, ValueError, KeyError, ReconError):  # no catalog (stripped install), no cache
        return None
    if not found:
        return None
    return found[0] if n_images <= 1000 else found[-1]


def choose_strategy(n_images: int, *, ordered: bool, gps: bool, matching: str = "auto",
                    mapper: str = "auto", retrieval: str = "auto", vocab_tree: Path | None = None,
                    exhaustive_max_images: int = 30, incremental_max_images: int = 300,
                    global_max_images: int = 2000, sequential_overlap: int = 10,
                    leaf_max_images: int = 500) -> Strategy:
    """Matching and mapper for ``n_images`` images (see the module docstring); explicit choices
    (``matching`` / ``mapper`` / ``retrieval`` other than "auto") are kept, with the reason
    "chosen by the user".

    ordered: the images are a sequence (video frames, numbered names); gps: they carry GPS
    positions; vocab_tree: COLMAP's vocabulary-tree file, or None.
    """
    if n_images < 0:
        raise ValueError(f"n_images: expected >= 0, got {n_images}")
    notes = []
    if matching != "auto":
        m_reason = "chosen by the user"
    elif gps:
        matching, m_reason = "spatial", "the images carry GPS positions: nearest neighbours by position"
    elif n_images <= exhaustive_max_images:
        matching = "exhaustive"
        m_reason = (f"{n_images} images (<= {exhaustive_max_images}): every pair, "
                    f"{n_images * (n_images - 1) // 2} pairs")
    elif ordered:
        matching = "sequential"
        m_reason = (f"{n_images} images in sequence (video frames or numbered names): each with its "
                    f"{sequential_overlap} successors, plus retrieval pairs for loop closure")
    else:
        matching = "retrieval"
        m_reason = (f"{n_images} unordered images (> {exhaustive_max_images}): each with its most similar "
                    "images by retrieval, not all pairs")
    how = None
    if matching == "retrieval":
        if retrieval == "vocabtree" and vocab_tree is None:
            notes.append("the vocabulary tree was asked for but no file was found: VLAD retrieval instead")
            how = "vlad"
        elif retrieval != "auto":
            how = retrieval
        elif vocab_tree is not None:
            how = "vocabtree"
        else:
            how = "vlad"
            notes.append(f"no COLMAP vocabulary tree on disk (${VOCAB_TREE_ENV}, or `recon data download "
                         f"{VOCAB_TREE_DATASET}`): retrieval by recon's VLAD of the images' own SIFT")
        m_reason += " (COLMAP vocabulary tree)" if how == "vocabtree" else " (VLAD of the images' own SIFT)"
    if mapper != "auto":
        p_reason = "chosen by the user"
    elif n_images <= incremental_max_images:
        mapper = "incremental"
        p_reason = f"{n_images} images (<= {incremental_max_images}): COLMAP's incremental mapper, the most robust"
    elif n_images <= global_max_images:
        mapper = "global"
        p_reason = (f"{n_images} images (> {incremental_max_images}): GLOMAP's global mapper, which places all "
                    "cameras at once instead of one registration after another")
    else:
        mapper = "hierarchical"
        p_reason = (f"{n_images} images (> {global_max_images}): the hierarchical mapper, clusters of at most "
                    f"{leaf_max_images} images mapped incrementally and merged")
    return Strategy(matching, how, mapper, m_reason, p_reason, tuple(notes))


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
