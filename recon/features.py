"""Local features and descriptor matching (OpenCV SIFT / RootSIFT / affine-simulated ASIFT / ORB).

Pixel convention: OpenCV's ``KeyPoint.pt`` already puts (0, 0) at the CENTRE of the top-left
pixel (an integer coordinate is a pixel centre), which is our convention (docs/conventions.md),
so no shift is applied here. One catch: OpenCV's SIFT by default reports keypoints 0.25 px too
far right and down (its upscaled first octave); we create it with ``enable_precise_upscale=True``,
which removes that bias (see ``detect_features``).
COLMAP / pycolmap keypoints use (0.5, 0.5) for that centre: ``recon.io`` shifts them at the edge.

The functional API::

    feats1 = detect_features(image1, method="sift")
    feats2 = detect_features(image2, method="sift")
    matches = match_features(feats1, feats2, ratio=0.8, mutual=True)
    uv1, uv2 = feats1.keypoints[matches.idx1], feats2.keypoints[matches.idx2]

OpenCV is imported inside the functions (``import recon.features`` stays light).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Features",
    "Matches",
    "detect_features",
    "match_descriptors",
    "match_features",
    "to_gray_uint8",
]

_METHODS = ("sift", "rootsift", "asift", "orb")
ASIFT_TILT_STEPS = 3
"""Simulated tilts of method="asift": sqrt(2)^k for k = 0..ASIFT_TILT_STEPS (1, 1.4, 2, 2.8; Morel
& Yu 2009 go to 5.7), 18 views whose pixels add up to about 9x the image's: detection about 9x
plain SIFT's time."""


@dataclass(frozen=True)
class Features:
    """Keypoints and descriptors of one image.

    keypoints:   [K, 2] float64 pixels (u, v), (0, 0) = centre of the top-left pixel.
    scales:      [K] float64 keypoint diameter in pixels (OpenCV ``KeyPoint.size``).
    orientations:[K] float64 degrees in [0, 360) (OpenCV ``KeyPoint.angle``; -1 if none).
    responses:   [K] float64 detector response (larger = stronger).
    descriptors: [K, D] float32 (SIFT / RootSIFT, D = 128) or uint8 (ORB, D = 32 bytes).
    method:      "sift", "rootsift", "asift" or "orb".
    image_size:  (width, height) of the image the features came from.
    """

    keypoints: np.ndarray
    scales: np.ndarray
    orientations: np.ndarray
    responses: np.ndarray
    descriptors: np.ndarray
    method: str
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def binary(self) -> bool:
        """True for binary descriptors (Hamming distance), False for float (L2)."""
        return self.descriptors.dtype == np.uint8


@dataclass(frozen=True)
class Matches:
    """Putative correspondences between two feature sets.

    idx1, idx2: [M] int64 indices into ``features1`` / ``features2``.
    distance:   [M] float64 descriptor distance of each match (L2 or Hamming).
    ratio:      [M] float64 best / second-best distance (Lowe's ratio; 0 when unknown).
    """

    idx1: np.ndarray
    idx2: np.ndarray
    distance: np.ndarray
    ratio: np.ndarray

    def __len__(self) -> int:
        return int(self.idx1.shape[0])

    def points(self, features1: Features, features2: Features) -> tuple[np.ndarray, np.ndarray]:
        """Matched pixel coordinates ([M, 2], [M, 2])."""
        return features1.keypoints[self.idx1], features2.keypoints[self.idx2]


def to_gray_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """[H, W] or [H, W, 1|3|4] (RGB order) uint8 / uint16 / float in [0, 1] -> [H, W] uint8 grey.

    Colour is RGB (our convention), not OpenCV's BGR.
    """
    img = np.asarray(image)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype.kind == "f":
        img = np.rint(np.clip(img * 255.0, 0, 255)).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise TypeError(f"{name}: unsupported dtype {img.dtype} (expected uint8, uint16 or float in [0, 1])")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] in (3, 4):
        rgb = img[..., :3].astype(np.float32)
        img = np.rint(rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    if img.ndim != 2 or min(img.shape) < 1:
        raise ValueError(f"{name}: expected [H, W], [H, W, 3] or [H, W, 4], got {np.asarray(image).shape}")
    return np.ascontiguousarray(img)


def detect_features(image: np.ndarray, *, method: str = "sift", max_features: int = 8000,
                    mask: np.ndarray | None = None, contrast_threshold: float = 0.02) -> Features:
    """Detect keypoints and compute descriptors.

    image:        [H, W] or [H, W, 3] RGB, uint8 (or float in [0, 1]).
    method:       "sift" (OpenCV SIFT, L2), "rootsift" (SIFT with Arandjelovic & Zisserman 2012
                  Hellinger normalisation: L1-normalise then sqrt, so L2 on RootSIFT equals the
                  Hellinger kernel on SIFT), "asift" (RootSIFT on affine-simulated views of the
                  image, ``cv2.AffineFeature``, tilts :data:`ASIFT_TILT_STEPS`, every 72 / t
                  degrees: matches across wide viewpoint changes where plain SIFT finds almost
                  none; about 9x slower) or "orb" (fast, binary, Hamming).
    max_features: keep the strongest ``max_features`` keypoints (0 = no limit).
    mask:         optional [H, W] (bool or uint8): detect only where non-zero.
    contrast_threshold: SIFT contrast threshold (OpenCV default 0.04; 0.02 finds more points in
                  low-texture areas at little cost).
    """
    import cv2

    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    gray = to_gray_uint8(image)
    h, w = gray.shape
    if isinstance(max_features, bool) or not isinstance(max_features, (int, np.integer)) or max_features < 0:
        raise ValueError(f"max_features: expected an integer >= 0, got {max_features!r}")
    cv_mask = None
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != (h, w):
            raise ValueError(f"mask: expected shape {(h, w)} (the image's [H, W]), got {m.shape}")
        cv_mask = (m != 0).astype(np.uint8) * 255
    if method in ("sift", "rootsift"):
        # enable_precise_upscale: OpenCV's default 2x upscaling of the first octave maps pixel x to
        # 2x + 0.5 but divides by 2 afterwards, biasing every keypoint by +0.25 px in u and v
        # (measured on Gaussian blobs at known sub-pixel centres: +0.250 px default, 0.000 with
        # the flag; tests/test_features.py checks it).
        det = cv2.SIFT_create(nfeatures=int(max_features), contrastThreshold=float(contrast_threshold),
                              enable_precise_upscale=True)
    elif method == "asift":
        sift = cv2.SIFT_create(nfeatures=0, contrastThreshold=float(contrast_threshold),
                               enable_precise_upscale=True)
        det = cv2.AffineFeature_create(sift, maxTilt=ASIFT_TILT_STEPS, minTilt=0,
                                       tiltStep=float(np.sqrt(2.0)), rotateStepBase=72.0)
    else:
        det = cv2.ORB_create(nfeatures=int(max_features) if max_features else 100000, scaleFactor=1.2,
                             nlevels=8, fastThreshold=10)
    kps, desc = det.detectAndCompute(gray, cv_mask)
    if desc is None or len(kps) == 0:
        d = 32 if method == "orb" else 128
        desc = np.zeros((0, d), np.uint8 if method == "orb" else np.float32)
        kps = []
    if method == "asift" and max_features and len(kps) > max_features:
        keep = np.argsort([-k.response for k in kps], kind="stable")[:max_features]
        kps, desc = [kps[i] for i in keep], desc[keep]
    if method in ("rootsift", "asift") and len(kps):
        desc = desc.astype(np.float32)
        desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-12)
        desc = np.sqrt(desc)
    # OpenCV keypoint coordinates are pixel-centre based already: (0, 0) = centre of top-left.
    pts = np.array([k.pt for k in kps], dtype=np.float64).reshape(-1, 2)
    return Features(
        keypoints=pts,
        scales=np.array([k.size for k in kps], dtype=np.float64),
        orientations=np.array([k.angle for k in kps], dtype=np.float64),
        responses=np.array([k.response for k in kps], dtype=np.float64),
        descriptors=np.ascontiguousarray(desc),
        method=method,
        image_size=(w, h),
    )


# Brute force is exact and, for small sets, faster than building a FLANN index; FLANN (KD-trees
# for float descriptors, LSH for binary) wins once both sets are large.
FLANN_MIN_PRODUCT = 2500 * 2500


def _knn(desc_q: np.ndarray, desc_t: np.ndarray, binary: bool, use_flann: bool):
    """k=2 nearest neighbours of each query row in ``desc_t``: (idx [Q,2], dist [Q,2])."""
    import cv2

    nq = desc_q.shape[0]
    k = 2 if desc_t.shape[0] >= 2 else 1
    if use_flann:
        if binary:
            params = {"algorithm": 6, "table_number": 6, "key_size": 12, "multi_probe_level": 1}  # LSH
        else:
            params = {"algorithm": 1, "trees": 4}  # KD-tree forest
        matcher = cv2.FlannBasedMatcher(params, {"checks": 64})
        knn = matcher.knnMatch(desc_q, desc_t, k=k)
    else:
        matcher = cv2.BFMatcher(cv2.NORM_HAMMING if binary else cv2.NORM_L2, crossCheck=False)
        knn = matcher.knnMatch(desc_q, desc_t, k=k)
    idx = np.full((nq, 2), -1, dtype=np.int64)
    dist = np.full((nq, 2), np.inf)
    for row in knn:
        for j, m in enumerate(row[:2]):
            idx[m.queryIdx, j] = m.trainIdx
            dist[m.queryIdx, j] = m.distance
    return idx, dist


def match_descriptors(desc1: np.ndarray, desc2: np.ndarray, *, ratio: float = 0.8, mutual: bool = True,
                      matcher: str = "auto") -> Matches:
    """Match two descriptor sets: Lowe's ratio test and (optionally) mutual nearest neighbours.

    desc1: [K1, D], desc2: [K2, D]; float32 (L2) or uint8 (binary, Hamming).
    ratio:   keep a match when best / second-best distance < ratio (1.0 disables the test).
    mutual:  also require that the match is the nearest neighbour in the other direction.
    matcher: "bf" (exact brute force), "flann" (approximate) or "auto" (FLANN when
             K1 * K2 > ``FLANN_MIN_PRODUCT``, brute force otherwise).
    """
    d1, d2 = np.asarray(desc1), np.asarray(desc2)
    if d1.ndim != 2 or d2.ndim != 2 or d1.shape[1] != d2.shape[1]:
        raise ValueError(f"desc1, desc2: expected [K1, D] and [K2, D] with the same D, got {d1.shape}, {d2.shape}")
    if d1.dtype != d2.dtype:
        raise TypeError(f"desc1, desc2: dtypes differ ({d1.dtype} vs {d2.dtype})")
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio: expected in (0, 1], got {ratio}")
    if matcher not in ("auto", "bf", "flann"):
        raise ValueError(f"matcher: expected 'auto', 'bf' or 'flann', got {matcher!r}")
    empty = Matches(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    if d1.shape[0] == 0 or d2.shape[0] == 0:
        return empty
    binary = d1.dtype == np.uint8
    if not binary:
        d1, d2 = d1.astype(np.float32, copy=False), d2.astype(np.float32, copy=False)
    use_flann = matcher == "flann" or (matcher == "auto" and d1.shape[0] * d2.shape[0] > FLANN_MIN_PRODUCT)
    idx12, dist12 = _knn(d1, d2, binary, use_flann)
    q = np.arange(d1.shape[0])
    keep = idx12[:, 0] >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        # second-best at distance 0 means two identical candidates: ambiguous (ratio 1);
        # no second candidate at all: unambiguous (ratio 0)
        r = np.where(~np.isfinite(dist12[:, 1]), 0.0,
                     np.where(dist12[:, 1] > 0, dist12[:, 0] / dist12[:, 1], 1.0))
    if ratio < 1:
        keep &= r < ratio
    if mutual:
        idx21, _ = _knn(d2, d1, binary, use_flann)
        back = np.full(d1.shape[0], -1)
        ok = idx12[:, 0] >= 0
        back[ok] = idx21[idx12[ok, 0], 0]
        keep &= back == q
    return Matches(q[keep].astype(np.int64), idx12[keep, 0].astype(np.int64),
                   dist12[keep, 0].astype(np.float64), r[keep].astype(np.float64))


def match_features(features1: Features, features2: Features, *, ratio: float = 0.8, mutual: bool = True,
                   matcher: str = "auto") -> Matches:
    """Match two :class:`Features` (same method) with :func:`match_descriptors`."""
    if not isinstance(features1, Features) or not isinstance(features2, Features):
        raise TypeError("features1, features2: expected recon.features.Features")
    if features1.method != features2.method:
        raise ValueError(f"features1, features2: methods differ ({features1.method} vs {features2.method})")
    return match_descriptors(features1.descriptors, features2.descriptors, ratio=ratio, mutual=mutual,
                             matcher=matcher)
