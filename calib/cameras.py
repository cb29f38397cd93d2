"""Camera models with COLMAP names and parameter order; float64 NumPy, vectorised.

Pixel convention (docs/conventions.md): pixel (0, 0) is the CENTRE of the top-left pixel, as in
OpenCV. COLMAP (and nerfstudio / Instant-NGP, gsplat) put the centre of that pixel at (0.5, 0.5),
the "corner" convention. The ONE conversion is here: :func:`corner_from_centre` /
:func:`centre_from_corner` for pixel coordinates, :meth:`Camera.corner_params` /
:meth:`Camera.from_corner_params` for the principal point, :func:`scale_pixels` for pixel
coordinates of a resized image; every file edge (``calib.files``, ``recon.io``, the pycolmap
bridge, the rasterizers) calls them and writes no 0.5 of its own. Inside
this package ``cx, cy`` are always in OUR convention, so a ``Camera`` projects exactly like
``cv2.projectPoints`` with the same K and distortion.

Camera frame: x right, y down, z forward (OpenCV / COLMAP).

Model names and parameter order (COLMAP ``src/colmap/sensor/models.h``):

======================  ==  ==========================================================
SIMPLE_PINHOLE           0  f, cx, cy
PINHOLE                  1  fx, fy, cx, cy
SIMPLE_RADIAL            2  f, cx, cy, k
RADIAL                   3  f, cx, cy, k1, k2
OPENCV                   4  fx, fy, cx, cy, k1, k2, p1, p2
OPENCV_FISHEYE           5  fx, fy, cx, cy, k1, k2, k3, k4
FULL_OPENCV              6  fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, k5, k6
FOV                      7  fx, fy, cx, cy, omega                      (stored, not projected)
SIMPLE_RADIAL_FISHEYE    8  f, cx, cy, k
RADIAL_FISHEYE           9  f, cx, cy, k1, k2
THIN_PRISM_FISHEYE      10  fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, sx1, sy1  (stored only)
RAD_TAN_THIN_PRISM_FISHEYE 11  16 params                                 (stored only)
======================  ==  ==========================================================

The functional core (``project``, ``unproject``, ``distort``, ``undistort``,
``project_jacobians``) takes a :class:`Camera`; the ``Camera`` methods delegate to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import NamedTuple

import numpy as np

from calib._check import as_array, check_positive_int

__all__ = [
    "MODELS",
    "MODEL_BY_ID",
    "Camera",
    "ModelSpec",
    "Projection",
    "ProjectionJacobians",
    "Rays",
    "Undistorted",
    "PIXEL_CORNER_OFFSET",
    "centre_from_corner",
    "corner_from_centre",
    "distort",
    "project",
    "project_jacobians",
    "scale_pixels",
    "undistort",
    "unproject",
]


PIXEL_CORNER_OFFSET = 0.5  # corner-convention coordinate (COLMAP, nerfstudio, gsplat) = ours + 0.5


def corner_from_centre(uv) -> np.ndarray:
    """Pixel coordinates [..., 2] (or scalars) in ours (0, 0 = centre of the top-left pixel) ->
    the corner convention of COLMAP / nerfstudio / gsplat ((0.5, 0.5) = that centre)."""
    return np.asarray(uv, dtype=np.float64) + PIXEL_CORNER_OFFSET


def centre_from_corner(uv) -> np.ndarray:
    """Inverse of :func:`corner_from_centre`."""
    return np.asarray(uv, dtype=np.float64) - PIXEL_CORNER_OFFSET


def scale_pixels(uv, sx: float, sy: float | None = None) -> np.ndarray:
    """Pixel coordinates [..., 2] of an image resized by (sx, sy): the image edges, not the pixel
    centres, scale: u' = (u + 0.5) * sx - 0.5."""
    s = np.array([sx, sx if sy is None else sy], dtype=np.float64)
    return centre_from_corner(corner_from_centre(uv) * s)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model_id: int  # COLMAP's numeric id (binary files)
    param_names: tuple[str, ...]
    fisheye: bool  # distortion acts on the angle theta to the optical axis
    supported: bool = True  # False: stored and round-tripped, but project() raises

    @property
    def num_params(self) -> int:
        return len(self.param_names)

    @property
    def single_focal(self) -> bool:
        return self.param_names[0] == "f"

    @property
    def num_extra(self) -> int:
        return self.num_params - (3 if self.single_focal else 4)


_SPECS = [
    ModelSpec("SIMPLE_PINHOLE", 0, ("f", "cx", "cy"), False),
    ModelSpec("PINHOLE", 1, ("fx", "fy", "cx", "cy"), False),
    ModelSpec("SIMPLE_RADIAL", 2, ("f", "cx", "cy", "k"), False),
    ModelSpec("RADIAL", 3, ("f", "cx", "cy", "k1", "k2"), False),
    ModelSpec("OPENCV", 4, ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"), False),
    ModelSpec("OPENCV_FISHEYE", 5, ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4"), True),
    ModelSpec("FULL_OPENCV", 6, ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"), False),
    ModelSpec("FOV", 7, ("fx", "fy", "cx", "cy", "omega"), False, supported=False),
    ModelSpec("SIMPLE_RADIAL_FISHEYE", 8, ("f", "cx", "cy", "k"), True),
    ModelSpec("RADIAL_FISHEYE", 9, ("f", "cx", "cy", "k1", "k2"), True),
    ModelSpec("THIN_PRISM_FISHEYE", 10, ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "sx1", "sy1"),
              True, supported=False),
    ModelSpec("RAD_TAN_THIN_PRISM_FISHEYE", 11, ("fx", "fy", "cx", "cy", "k0", "k1", "k2", "k3", "k4", "k5",
                                                 "p0", "p1", "s0", "s1", "s2", "s3"), True, supported=False),
]
MODELS: dict[str, ModelSpec] = {s.name: s for s in _SPECS}
MODEL_BY_ID: dict[int, ModelSpec] = {s.model_id: s for s in _SPECS}


class Projection(NamedTuple):
    uv: np.ndarray  # [..., 2] pixels, (0, 0) = centre of the top-left pixel
    valid: np.ndarray  # [...] bool: in front of the camera and inside the model's valid region


class Rays(NamedTuple):
    directions: np.ndarray  # [..., 3] unit vectors in the camera frame
    valid: np.ndarray  # [...] bool: the undistortion converged inside the valid region


class Undistorted(NamedTuple):
    xy: np.ndarray  # [..., 2] undistorted normalised coordinates (x/z, y/z)
    valid: np.ndarray  # [...] bool


class ProjectionJacobians(NamedTuple):
    uv: np.ndarray  # [N, 2]
    d_uv_d_point: np.ndarray  # [N, 2, 3]
    d_uv_d_params: np.ndarray  # [N, 2, P] in the model's parameter order
    valid: np.ndarray  # [N]


@dataclass(frozen=True, eq=False)
class Camera:
    """Intrinsics of one camera: ``model`` (COLMAP name), image size (width, height) in pixels
    and ``params`` in COLMAP order, principal point in OUR pixel-centre convention."""

    model: str
    width: int
    height: int
    params: np.ndarray = field(repr=False)  # [P] float64

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model: unknown camera model {self.model!r}; expected one of {sorted(MODELS)}")
        check_positive_int(self.width, "width")
        check_positive_int(self.height, "height")
        spec = MODELS[self.model]
        p = as_array(self.params, "params", ndim=1).copy()
        if p.shape[0] != spec.num_params:
            raise ValueError(f"params: {self.model} takes {spec.num_params} parameters "
                             f"({', '.join(spec.param_names)}), got {p.shape[0]}")
        if np.any(p[: 1 if spec.single_focal else 2] <= 0):
            raise ValueError(f"params: focal length must be positive, got {p[: 1 if spec.single_focal else 2]}")
        p.setflags(write=False)
        object.__setattr__(self, "params", p)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_K(cls, K, width: int, height: int, dist=None, *, fisheye: bool = False,
               model: str | None = None) -> Camera:
        """From an OpenCV K [3, 3] (principal point in OpenCV's = our pixel-centre convention)
        and distortion vector. Picks the smallest COLMAP model that holds them exactly: PINHOLE,
        OPENCV (k1 k2 p1 p2), FULL_OPENCV (k1 k2 p1 p2 k3 [k4 k5 k6]; 12- and 14-coefficient
        vectors are accepted when their thin-prism / tilt terms are zero) or, with
        ``fisheye=True``, OPENCV_FISHEYE (k1..k4, the ``cv2.fisheye`` model).

        ``model``: keep this COLMAP model (as a calibration file declares it, e.g. OPENCV with
        all-zero distortion stays OPENCV, SIMPLE_RADIAL stays SIMPLE_RADIAL); ValueError when
        K / dist hold something the model cannot (fx != fy for a one-focal model, a coefficient
        the model lacks). OPENCV_FISHEYE reads ``dist`` as k1..k4, the others in OpenCV order."""
        if model is not None:
            return cls._from_K_as(K, width, height, dist, model)
        K = as_array(K, "K", ndim=2)
        if K.shape != (3, 3):
            raise ValueError(f"K: expected [3, 3], got {K.shape}")
        if abs(K[0, 1]) > 1e-12:
            raise ValueError(f"K: skew {K[0, 1]} is not representable in COLMAP models")
        if K[1, 0] != 0 or not np.array_equal(K[2], [0.0, 0.0, 1.0]):
            raise ValueError(f"K: expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], got last row {K[2].tolist()} "
                             f"and K[1, 0] = {K[1, 0]}")
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        d = np.zeros(0) if dist is None else as_array(dist, "dist").ravel()
        if fisheye:
            if d.size not in (0, 4):
                raise ValueError(f"dist: fisheye expects 4 coefficients k1..k4, got {d.size}")
            d = np.pad(d, (0, 4 - d.size))
            return cls("OPENCV_FISHEYE", width, height, np.r_[fx, fy, cx, cy, d])
        if d.size not in (0, 4, 5, 8, 12, 14):
            raise ValueError(f"dist: expected 0, 4, 5, 8, 12 or 14 OpenCV coefficients, got {d.size}")
        if np.any(d[8:]):
            raise ValueError(f"dist: thin-prism / tilt coefficients {d[8:].tolist()} are not supported "
                             "by COLMAP models (only k1 k2 p1 p2 k3 k4 k5 k6)")
        if d.size == 0 or not np.any(d):
            return cls("PINHOLE", width, height, np.r_[fx, fy, cx, cy])
        if not np.any(d[4:]):
            return cls("OPENCV", width, height, np.r_[fx, fy, cx, cy, d[:4]])
        return cls("FULL_OPENCV", width, height, np.r_[fx, fy, cx, cy, np.pad(d[:8], (0, 8 - min(d.size, 8)))])

    @classmethod
    def _from_K_as(cls, K, width, height, dist, model: str) -> Camera:
        if model not in MODELS:
            raise ValueError(f"model: unknown camera model {model!r}; expected one of {sorted(MODELS)}")
        # indices into OpenCV's vector (k1 k2 p1 p2 k3 k4 k5 k6; fisheye: k1 k2 k3 k4)
        used = {"SIMPLE_PINHOLE": [], "PINHOLE": [], "SIMPLE_RADIAL": [0], "RADIAL": [0, 1],
                "OPENCV": [0, 1, 2, 3], "FULL_OPENCV": list(range(8)), "OPENCV_FISHEYE": [0, 1, 2, 3],
                "SIMPLE_RADIAL_FISHEYE": [0], "RADIAL_FISHEYE": [0, 1]}.get(model)
        if used is None:
            raise ValueError(f"model: {model} has no OpenCV K / distortion form")
        fisheye = MODELS[model].fisheye
        cam = cls.from_K(K, width, height, dist, fisheye=fisheye)  # checks K and dist
        (fx, fy), (cx, cy) = cam.focal, cam.principal_point
        d = np.pad(cam.extra, (0, max(0, 8 - cam.extra.size)))
        dropped = [i for i in range(4 if fisheye else 8) if i not in used and d[i] != 0]
        if dropped:
            names = ["k1", "k2", "k3", "k4"] if fisheye else ["k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"]
            raise ValueError(f"dist: {model} has no {', '.join(names[i] for i in dropped)} "
                             f"(got {[float(d[i]) for i in dropped]})")
        if MODELS[model].single_focal:
            if not np.isclose(fx, fy, rtol=1e-9, atol=0):
                raise ValueError(f"K: {model} has one focal length, got fx={fx} fy={fy}")
            return cls(model, width, height, np.r_[fx, cx, cy, d[used]])
        return cls(model, width, height, np.r_[fx, fy, cx, cy, d[used]])

    @classmethod
    def from_corner_params(cls, model: str, width: int, height: int, params) -> Camera:
        """A camera from parameters whose principal point is in the corner convention (COLMAP
        cameras.txt / .bin, pycolmap, nerfstudio): cx, cy - 0.5. Inverse of :meth:`corner_params`."""
        if model not in MODELS:
            raise ValueError(f"model: unknown camera model {model!r}; expected one of {sorted(MODELS)}")
        p = np.array(params, dtype=np.float64)
        i = 1 if MODELS[model].single_focal else 2
        if p.ndim != 1 or p.shape[0] < i + 2:
            raise ValueError(f"params: {model} takes {MODELS[model].num_params} parameters, got shape {p.shape}")
        p[i:i + 2] = centre_from_corner(p[i:i + 2])
        return cls(model, width, height, p)

    def corner_params(self) -> np.ndarray:
        """[P] params with the principal point in the corner convention (cx, cy + 0.5), as COLMAP,
        pycolmap, nerfstudio and gsplat take them."""
        p = self.params.copy()
        i = 1 if self.spec.single_focal else 2
        p[i:i + 2] = corner_from_centre(p[i:i + 2])
        return p

    def corner_K(self) -> np.ndarray:
        """[3, 3] pinhole matrix with the principal point in the corner convention (gsplat)."""
        K = self.K
        K[:2, 2] = corner_from_centre(K[:2, 2])
        return K

    # ---- accessors --------------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        return MODELS[self.model]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return (self.width, self.height)

    @property
    def focal(self) -> np.ndarray:
        """[2] (fx, fy)."""
        return np.repeat(self.params[0], 2) if self.spec.single_focal else self.params[:2].copy()

    @property
    def principal_point(self) -> np.ndarray:
        """[2] (cx, cy), pixel-centre convention."""
        i = 1 if self.spec.single_focal else 2
        return self.params[i:i + 2].copy()

    @property
    def extra(self) -> np.ndarray:
        """Distortion parameters (everything after the principal point)."""
        return self.params[3 if self.spec.single_focal else 4:].copy()

    @property
    def K(self) -> np.ndarray:
        """[3, 3] pinhole matrix (distortion excluded)."""
        (fx, fy), (cx, cy) = self.focal, self.principal_point
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def opencv_dist(self) -> np.ndarray:
        """Distortion in OpenCV order: (k1, k2, p1, p2[, k3, k4, k5, k6]) for cv2 functions,
        (k1, k2, k3, k4) for cv2.fisheye. Raises for models OpenCV cannot express."""
        e = self.extra
        m = self.model
        if m in ("SIMPLE_PINHOLE", "PINHOLE"):
            return np.zeros(4)
        if m == "SIMPLE_RADIAL":
            return np.array([e[0], 0.0, 0.0, 0.0])
        if m == "RADIAL":
            return np.array([e[0], e[1], 0.0, 0.0])
        if m in ("OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE"):
            return e
        if m == "SIMPLE_RADIAL_FISHEYE":
            return np.array([e[0], 0.0, 0.0, 0.0])
        if m == "RADIAL_FISHEYE":
            return np.array([e[0], e[1], 0.0, 0.0])
        raise ValueError(f"camera model {m} has no OpenCV distortion equivalent")

    @property
    def is_fisheye(self) -> bool:
        return self.spec.fisheye

    def with_params(self, params) -> Camera:
        return Camera(self.model, self.width, self.height, params)

    def allclose(self, other: Camera, *, rtol: float = 1e-9, atol: float = 1e-9) -> bool:
        return (self.model == other.model and self.size == other.size
                and np.allclose(self.params, other.params, rtol=rtol, atol=atol))

    def __repr__(self) -> str:
        vals = ", ".join(f"{n}={v:.6g}" for n, v in zip(self.spec.param_names, self.params))
        return f"Camera({self.model}, {self.width}x{self.height}, {vals})"

    # ---- geometry (delegates to the functional core) ---------------------------------
    def project(self, points_cam) -> Projection:
        return project(self, points_cam)

    def unproject(self, uv) -> Rays:
        return unproject(self, uv)

    def img_from_cam(self, points_cam) -> np.ndarray:
        """Pixels [..., 2] of camera-frame points [..., 3] (NaN where invalid)."""
        uv, valid = project(self, points_cam)
        return np.where(valid[..., None], uv, np.nan)

    def cam_from_img(self, uv) -> np.ndarray:
        """Undistorted normalised coordinates (x/z, y/z) [..., 2] of pixels (NaN where invalid)."""
        d, valid = unproject(self, uv)
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = d[..., :2] / d[..., 2:3]
        return np.where((valid & (d[..., 2] > 0))[..., None], xy, np.nan)

    def project_jacobians(self, points_cam) -> ProjectionJacobians:
        return project_jacobians(self, points_cam)

    def pixel_grid(self) -> np.ndarray:
        """[H, W, 2] pixel centres (u, v) of every pixel."""
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        return np.stack([u, v], axis=-1)

    # ---- resizing / cropping ----------------------------------------------------------
    def scaled(self, sx: float, sy: float | None = None) -> Camera:
        """Intrinsics for the image resized by (sx, sy). With pixel centres at integers,
        u' = (u + 0.5) * s - 0.5. Size is rounded to the nearest pixel."""
        sy = sx if sy is None else sy
        if not (np.isfinite(sx) and np.isfinite(sy) and sx > 0 and sy > 0):
            raise ValueError(f"sx, sy: expected positive finite scale factors, got {sx}, {sy}")
        if self.spec.single_focal and not np.isclose(sx, sy, rtol=1e-12):
            raise ValueError(f"{self.model} has one focal length: anisotropic scale ({sx}, {sy}) "
                             "needs a two-focal model (e.g. PINHOLE / OPENCV)")
        p = self.params.copy()
        i = 1 if self.spec.single_focal else 2
        if self.spec.single_focal:
            p[0] *= sx
        else:
            p[0] *= sx
            p[1] *= sy
        p[i:i + 2] = scale_pixels(p[i:i + 2], sx, sy)
        return Camera(self.model, max(1, round(self.width * sx)), max(1, round(self.height * sy)), p)

    def resized(self, width: int, height: int) -> Camera:
        """Intrinsics for the image resized to (width, height)."""
        check_positive_int(width, "width")
        check_positive_int(height, "height")
        cam = self.scaled(width / self.width, height / self.height)
        return Camera(cam.model, width, height, cam.params)

    def cropped(self, x0: int, y0: int, width: int, height: int) -> Camera:
        """Intrinsics of the crop whose top-left pixel is (x0, y0) in this image."""
        check_positive_int(width, "width")
        check_positive_int(height, "height")
        p = self.params.copy()
        i = 1 if self.spec.single_focal else 2
        p[i] -= x0
        p[i + 1] -= y0
        return Camera(self.model, width, height, p)

    # ---- valid region -------------------------------------------------------------------
    @cached_property
    def max_valid_angle(self) -> float:
        """Largest angle (radians) to the optical axis inside which the model is monotonic (so
        it can be inverted). pi/2 bounds perspective models; up to pi for fisheye."""
        return _max_valid_angle(self)


# =========================================================================================
# Distortion on normalised coordinates (perspective models)
# =========================================================================================

def _check_supported(camera: Camera):
    if not isinstance(camera, Camera):
        raise TypeError(f"camera: expected calib.Camera, got {type(camera).__name__}")
    if not camera.spec.supported:
        raise NotImplementedError(f"camera model {camera.model} can be stored and converted but not projected")


def _radial_factor(model: str, e: np.ndarray, r2: np.ndarray):
    """Radial factor a(r^2) of the perspective models (x_d = a x + tangential) and d a / d r^2."""
    if model in ("SIMPLE_PINHOLE", "PINHOLE"):
        return np.ones_like(r2), np.zeros_like(r2)
    if model == "SIMPLE_RADIAL":
        return 1 + e[0] * r2, np.full_like(r2, e[0])
    if model in ("RADIAL", "OPENCV"):
        return 1 + r2 * (e[0] + e[1] * r2), e[0] + 2 * e[1] * r2
    if model == "FULL_OPENCV":
        k1, k2, _, _, k3, k4, k5, k6 = e
        num = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        den = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
        dnum = k1 + r2 * (2 * k2 + 3 * k3 * r2)
        dden = k4 + r2 * (2 * k5 + 3 * k6 * r2)
        return num / den, (dnum * den - num * dden) / (den * den)
    raise NotImplementedError(model)  # pragma: no cover - guarded by callers


def _tangential(model: str, e: np.ndarray) -> tuple[float, float]:
    return (float(e[2]), float(e[3])) if model in ("OPENCV", "FULL_OPENCV") else (0.0, 0.0)


def _radial_tangential(model: str, e: np.ndarray, x: np.ndarray, y: np.ndarray, need_jac: bool):
    """Perspective distortion. Returns xd, yd and (if need_jac) J_xy [N,2,2], J_e [N,2,E]."""
    r2 = x * x + y * y
    a, da = _radial_factor(model, e, r2)
    p1, p2 = _tangential(model, e)
    xd = x * a + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * a + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    if not need_jac:
        return xd, yd, None, None
    n = x.shape[0]
    zeros = np.zeros_like(x)
    if model in ("SIMPLE_PINHOLE", "PINHOLE"):
        d_a_d_e = np.zeros((n, 0))
    elif model == "SIMPLE_RADIAL":
        d_a_d_e = r2[:, None]
    elif model == "RADIAL":
        d_a_d_e = np.stack([r2, r2 * r2], 1)
    elif model == "OPENCV":
        d_a_d_e = np.stack([r2, r2 * r2, zeros, zeros], 1)
    else:  # FULL_OPENCV
        k1, k2, _, _, k3, k4, k5, k6 = e
        r4, r6 = r2 * r2, r2 * r2 * r2
        num = 1 + k1 * r2 + k2 * r4 + k3 * r6
        den = 1 + k4 * r2 + k5 * r4 + k6 * r6
        d_a_d_e = np.stack([r2 / den, r4 / den, zeros, zeros, r6 / den,
                            -num * r2 / den**2, -num * r4 / den**2, -num * r6 / den**2], 1)
    J = np.empty((n, 2, 2))
    J[:, 0, 0] = a + 2 * x * x * da + 2 * p1 * y + 6 * p2 * x
    J[:, 0, 1] = 2 * x * y * da + 2 * p1 * x + 2 * p2 * y
    J[:, 1, 0] = J[:, 0, 1]
    J[:, 1, 1] = a + 2 * y * y * da + 6 * p1 * y + 2 * p2 * x
    Je = np.empty((n, 2, d_a_d_e.shape[1]))
    for k in range(d_a_d_e.shape[1]):  # column by column: long contiguous loops in NumPy
        np.multiply(x, d_a_d_e[:, k], out=Je[:, 0, k])
        np.multiply(y, d_a_d_e[:, k], out=Je[:, 1, k])
    if model in ("OPENCV", "FULL_OPENCV"):
        Je[:, 0, 2], Je[:, 1, 2] = 2 * x * y, r2 + 2 * y * y  # d/dp1
        Je[:, 0, 3], Je[:, 1, 3] = r2 + 2 * x * x, 2 * x * y  # d/dp2
    return xd, yd, J, Je


def _distort_and_jacobian(model: str, e: np.ndarray, x: np.ndarray, y: np.ndarray):
    """x_d, y_d and the 2x2 Jacobian entries (j00, j01 = j10, j11); cheaper than
    _radial_tangential for the Newton iterations (no parameter Jacobian, no [N,2,2] arrays)."""
    xx, yy, xy = x * x, y * y, x * y
    r2 = xx + yy
    a, da = _radial_factor(model, e, r2)
    p1, p2 = _tangential(model, e)
    xd = x * a + 2 * p1 * xy + p2 * (r2 + 2 * xx)
    yd = y * a + p1 * (r2 + 2 * yy) + 2 * p2 * xy
    j00 = a + 2 * xx * da + 2 * p1 * y + 6 * p2 * x
    j01 = 2 * xy * da + 2 * p1 * x + 2 * p2 * y
    j11 = a + 2 * yy * da + 6 * p1 * y + 2 * p2 * x
    return xd, yd, j00, j01, j11


def _fisheye_poly(model: str, e: np.ndarray, theta: np.ndarray):
    """theta_d = theta * (1 + k1 theta^2 + ...). Returns theta_d, d theta_d / d theta, and
    d theta_d / d e [N, E]."""
    t2 = theta * theta
    if model == "OPENCV_FISHEYE":
        powers = [t2, t2**2, t2**3, t2**4]
        ks = e[:4]
    elif model == "SIMPLE_RADIAL_FISHEYE":
        powers, ks = [t2], e[:1]
    elif model == "RADIAL_FISHEYE":
        powers, ks = [t2, t2**2], e[:2]
    else:  # pragma: no cover
        raise NotImplementedError(model)
    poly = 1 + sum(k * p for k, p in zip(ks, powers))
    # d/dtheta [theta * (1 + sum k_i theta^(2i))] = 1 + sum (2i+1) k_i theta^(2i)
    dtheta = 1 + sum(k * (2 * (i + 1) + 1) * p for i, (k, p) in enumerate(zip(ks, powers)))
    theta_d = theta * poly
    d_e = np.stack([theta * p for p in powers], axis=-1)
    return theta_d, dtheta, d_e


def _max_valid_angle(camera: Camera) -> float:
    # Depends on the distortion only (not on f, c): cached, so scaled / cropped cameras and the
    # cameras of one lens share the scan.
    return _max_valid_angle_of(camera.model, tuple(camera.extra.tolist()))


@lru_cache(maxsize=4096)
def _max_valid_angle_of(model: str, extra: tuple[float, ...]) -> float:
    """Largest angle to the optical axis inside which the lens map is invertible.

    Fisheye models: first angle where theta_d(theta) stops increasing (scan up to 180 deg).
    Perspective models: the map on normalised coordinates is scanned along rays in 72 directions
    up to 89.5 deg, with the tangential terms; a ray leaves the valid region where the Jacobian
    determinant stops being positive (a fold), the radial factor stops being positive (the image
    flips through the centre, or a rational model's denominator crosses zero), or the distorted
    radius stops increasing. The smallest such angle over all directions is returned (16
    directions; between them the Jacobian check in :func:`undistort` still applies).
    """
    e = np.array(extra, dtype=np.float64)
    spec = MODELS[model]
    if spec.fisheye:
        theta = np.linspace(0.0, np.pi, 20001)[1:]
        _, dtheta, _ = _fisheye_poly(model, e, theta)
        bad = np.nonzero(~(dtheta > 0))[0]
        return float(theta[max(bad[0] - 1, 0)]) if bad.size else float(np.pi)
    if model in ("SIMPLE_PINHOLE", "PINHOLE"):
        return float(np.pi / 2)
    p1, p2 = _tangential(model, e)
    # Tangential terms make the fold depend on the direction; without them one ray suffices.
    phi = np.linspace(0.0, 2 * np.pi, 16, endpoint=False) if (p1 or p2) else np.zeros(1)

    def first_bad(theta: np.ndarray) -> int:
        """Index of the first angle (over all directions) outside the valid region."""
        r = np.tan(theta)[None, :]
        x, y = (r * np.cos(phi)[:, None]).ravel(), (r * np.sin(phi)[:, None]).ravel()
        with np.errstate(all="ignore"):
            xd, yd, j00, j01, j11 = _distort_and_jacobian(model, e, x, y)
            a, _ = _radial_factor(model, e, x * x + y * y)
            rd = np.hypot(xd, yd).reshape(len(phi), -1)
            growing = np.concatenate([np.ones((len(phi), 1), bool), np.diff(rd, axis=1) > 0], axis=1)
            ok = ((j00 * j11 - j01 * j01 > 0) & (a > 0)).reshape(len(phi), -1) & growing & np.isfinite(rd)
        return int(np.where(ok.all(axis=1), ok.shape[1], np.argmin(ok, axis=1)).min())

    # Coarse scan up to 89.5 deg (0.17 deg steps), then a fine one inside the first bad step.
    coarse = np.linspace(0.0, np.radians(89.5), 513)
    i = first_bad(coarse)
    if i == len(coarse):
        return float(np.pi / 2)
    fine = np.linspace(coarse[i - 1], coarse[i], 257)
    j = first_bad(fine)
    return float(fine[max(j - 1, 0)])


def _solve_increasing(fn, target: np.ndarray, hi: float, max_iterations: int = 100) -> np.ndarray:
    """Solve fn(x) = target on [0, hi] where fn is strictly increasing with fn(0) = 0 (so the
    root is unique); fn(x) -> (value, derivative). Safeguarded Newton: a step that leaves the
    current bracket is replaced by bisection, so it always converges. Targets at or above
    fn(hi) return hi."""
    f_hi = fn(np.array([hi]))[0][0]
    x = np.clip(target, 0.0, hi)
    lo_b, hi_b = np.zeros_like(x), np.full_like(x, hi)
    active = np.nonzero((target > 0) & (target < f_hi))[0]
    x[target >= f_hi] = hi
    x[target <= 0] = 0.0
    for _ in range(max_iterations):
        if active.size == 0:
            break
        xa, ta = x[active], target[active]
        f, df = fn(xa)
        res = f - ta
        below = res < 0
        lo_a = np.where(below, xa, lo_b[active])
        hi_a = np.where(below, hi_b[active], xa)
        converged = np.abs(res) <= 1e-15 * np.maximum(1.0, ta)
        with np.errstate(divide="ignore", invalid="ignore"):
            xn = xa - res / df
        out = ~converged & (~(xn > lo_a) | ~(xn < hi_a))  # also catches NaN
        xn = np.where(converged, xa, np.where(out, 0.5 * (lo_a + hi_a), xn))
        x[active], lo_b[active], hi_b[active] = xn, lo_a, hi_a
        done = (converged | (np.abs(xn - xa) <= 1e-16 * np.maximum(1.0, xa))
                | (hi_a - lo_a <= 1e-16 * np.maximum(1.0, xa)))
        active = active[~done]
    return x


# =========================================================================================
# Public functional core
# =========================================================================================

def _flat(x: np.ndarray, d: int):
    return x.reshape(-1, d), x.shape[:-1]


def distort(camera: Camera, xy) -> np.ndarray:
    """Apply the lens distortion to undistorted normalised coordinates (x/z, y/z).

    xy: [..., 2] -> [..., 2] distorted normalised coordinates (pixels = f * xd + c). For fisheye
    models the input is the pinhole normalised coordinate of a ray in front of the camera.
    """
    _check_supported(camera)
    xy = as_array(xy, "xy", last=(2,))
    flat, lead = _flat(xy, 2)
    e = camera.extra
    if camera.is_fisheye:
        r = np.hypot(flat[:, 0], flat[:, 1])
        theta = np.arctan(r)
        theta_d, _, _ = _fisheye_poly(camera.model, e, theta)
        scale = np.where(r > 1e-12, theta_d / np.where(r > 1e-12, r, 1.0), 1.0)
        out = flat * scale[:, None]
    else:
        xd, yd, _, _ = _radial_tangential(camera.model, e, flat[:, 0], flat[:, 1], need_jac=False)
        out = np.stack([xd, yd], 1)
    return out.reshape(lead + (2,))


def undistort(camera: Camera, xy_distorted, *, max_iterations: int = 50, tol: float = 1e-14) -> Undistorted:
    """Invert :func:`distort`: distorted normalised coordinates [..., 2] -> undistorted (x/z, y/z).

    Perspective models: the radial part is inverted first in 1-D (safeguarded Newton inside the
    monotonic range ``[0, tan(camera.max_valid_angle)]``, where the solution is unique), then a
    2-D Newton iteration with backtracking adds the tangential terms. Strong barrel/pincushion
    lenses whose plain Newton iteration from ``x = x_d`` diverges are handled.

    ``valid`` is False where the iteration did not converge (final residual above 1e-10 in
    normalised units), or the solution lies outside the model's monotonic region, i.e. where
    the answer would be one of several pre-images or none (beyond the fold of a strong barrel
    lens). Entries with ``valid == False`` hold finite placeholders: mask them out.
    For fisheye models the result is pinhole-normalised, so rays at or beyond 90 degrees are
    invalid here (NaN): use :func:`unproject` for those.
    """
    _check_supported(camera)
    xyd = as_array(xy_distorted, "xy_distorted", last=(2,))
    flat, lead = _flat(xyd, 2)
    e = camera.extra
    if camera.is_fisheye:
        dirs, valid = _unproject_fisheye(camera, flat, max_iterations, tol)
        z = dirs[:, 2]
        ok = valid & (z > 1e-12)
        out = np.where(ok[:, None], dirs[:, :2] / np.where(ok, z, 1.0)[:, None], np.nan)
        return Undistorted(out.reshape(lead + (2,)), ok.reshape(lead))
    r_max = np.tan(min(camera.max_valid_angle, np.radians(89.99)))
    x = _radial_initial_guess(camera, flat, r_max)
    scale = np.maximum(1.0, np.maximum(np.abs(flat[:, 0]), np.abs(flat[:, 1])))
    if camera.model not in ("SIMPLE_PINHOLE", "PINHOLE"):
        x = _newton_2d(camera, flat, x, scale, max_iterations, tol)
    # Final check: report only what really solves distort(x) = x_d on the unfolded sheet
    # (inside the monotonic radius, with a positive Jacobian determinant).
    with np.errstate(all="ignore"):
        xd, yd, j00, j01, j11 = _distort_and_jacobian(camera.model, e, x[:, 0], x[:, 1])
    res = np.maximum(np.abs(xd - flat[:, 0]), np.abs(yd - flat[:, 1]))
    converged = res <= 1e-10 * scale
    inside = (np.hypot(x[:, 0], x[:, 1]) <= r_max * (1 + 1e-12)) & (j00 * j11 - j01 * j01 > 0)
    valid = converged & inside & np.all(np.isfinite(x), axis=1)
    x = np.where(np.isfinite(x), x, 0.0)
    return Undistorted(x.reshape(lead + (2,)), valid.reshape(lead))


def _radial_only(camera: Camera) -> np.ndarray:
    e = camera.extra.copy()
    if camera.model in ("OPENCV", "FULL_OPENCV"):
        e[2:4] = 0.0  # p1, p2
    return e


def _radial_initial_guess(camera: Camera, flat: np.ndarray, r_max: float) -> np.ndarray:
    """Undistorted point with the same direction as x_d whose radius solves the radial model
    r a(r^2) = |x_d| on [0, r_max] (monotonic there, so the root is unique). Beyond: r_max."""
    if camera.model in ("SIMPLE_PINHOLE", "PINHOLE"):
        return flat.copy()
    model, e = camera.model, _radial_only(camera)

    def radial(r):
        a, da = _radial_factor(model, e, r * r)
        return r * a, a + 2 * r * r * da

    rd = np.hypot(flat[:, 0], flat[:, 1])
    r = _solve_increasing(radial, rd, r_max)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(rd > 0, r / np.where(rd > 0, rd, 1.0), 1.0)
    return flat * s[:, None]


def _newton_2d(camera: Camera, flat, x, scale, max_iterations: int, tol: float) -> np.ndarray:
    """Solve distort(x) = flat by Newton's method with backtracking (the max-norm residual must
    decrease; otherwise the step is halved, at most 30 times). Works on the shrinking set of
    unconverged points, one component array per coordinate (this loop dominates unproject)."""
    model, e = camera.model, camera.extra
    out = x.copy()
    idx = np.arange(len(flat))
    xa, ya = out[:, 0].copy(), out[:, 1].copy()
    tx, ty, lim = flat[:, 0].copy(), flat[:, 1].copy(), tol * scale

    def evaluate(px, py, qx, qy):
        xd, yd, j00, j01, j11 = _distort_and_jacobian(model, e, px, py)
        rx, ry = xd - qx, yd - qy
        return rx, ry, np.maximum(np.abs(rx), np.abs(ry)), j00, j01, j11

    rx, ry, rn, a00, a01, a11 = evaluate(xa, ya, tx, ty)
    finished = ~(rn > lim)  # converged already (or NaN: nothing to do)
    for _ in range(max_iterations + 1):
        if finished.any():  # write back and drop the finished points
            out[idx[finished], 0], out[idx[finished], 1] = xa[finished], ya[finished]
            keep = ~finished
            idx, xa, ya, tx, ty, lim = idx[keep], xa[keep], ya[keep], tx[keep], ty[keep], lim[keep]
            rx, ry, rn, a00, a01, a11 = rx[keep], ry[keep], rn[keep], a00[keep], a01[keep], a11[keep]
        if idx.size == 0:
            break
        det = a00 * a11 - a01 * a01
        good = np.isfinite(det) & (np.abs(det) > 1e-300)
        inv = np.where(good, 1.0 / np.where(good, det, 1.0), 0.0)
        sx = (a11 * rx - a01 * ry) * inv
        sy = (a00 * ry - a01 * rx) * inv
        xn, yn = xa - sx, ya - sy
        rxn, ryn, rnn, b00, b01, b11 = evaluate(xn, yn, tx, ty)
        t = np.ones_like(xa)
        pending = np.nonzero(good & ~(rnn < rn))[0]
        for _ in range(30):  # backtracking, rarely needed after the radial initialisation
            if pending.size == 0:
                break
            t[pending] *= 0.5
            xn[pending] = xa[pending] - t[pending] * sx[pending]
            yn[pending] = ya[pending] - t[pending] * sy[pending]
            r = evaluate(xn[pending], yn[pending], tx[pending], ty[pending])
            rxn[pending], ryn[pending], rnn[pending], b00[pending], b01[pending], b11[pending] = r
            pending = pending[~(rnn[pending] < rn[pending])]
        stuck = np.zeros(len(xa), dtype=bool)
        stuck[pending] = True  # no decrease found: keep the previous iterate
        small_step = t * np.maximum(np.abs(sx), np.abs(sy)) <= 1e-16 * (1 + np.maximum(np.abs(xa), np.abs(ya)))
        move = good & ~stuck
        xa, ya = np.where(move, xn, xa), np.where(move, yn, ya)
        rx, ry, rn = np.where(move, rxn, rx), np.where(move, ryn, ry), np.where(move, rnn, rn)
        a00, a01, a11 = np.where(move, b00, a00), np.where(move, b01, a01), np.where(move, b11, a11)
        finished = ~good | stuck | small_step | ~(rn > lim)
    out[idx, 0], out[idx, 1] = xa, ya
    return out


def _unproject_fisheye(camera: Camera, xd: np.ndarray, max_iterations: int, tol: float):
    model, e = camera.model, camera.extra
    theta_d = np.hypot(xd[:, 0], xd[:, 1])
    theta_max = camera.max_valid_angle
    theta_d_max = _fisheye_poly(model, e, np.array([theta_max]))[0][0]

    def poly(t):
        f, df, _ = _fisheye_poly(model, e, t)
        return f, df

    theta = _solve_increasing(poly, theta_d, theta_max, max_iterations=max(max_iterations, 100))
    f, _, _ = _fisheye_poly(model, e, theta)
    converged = np.abs(f - theta_d) <= 1e-10 * np.maximum(1.0, theta_d)
    valid = converged & (theta_d <= theta_d_max * (1 + 1e-12))
    s = np.where(theta_d > 1e-15, np.sin(theta) / np.where(theta_d > 1e-15, theta_d, 1.0), 1.0)
    dirs = np.stack([xd[:, 0] * s, xd[:, 1] * s, np.cos(theta)], 1)
    return dirs, valid


def project(camera: Camera, points_cam) -> Projection:
    """Project camera-frame points [..., 3] to pixels [..., 2].

    ``valid`` is False behind the camera (z <= 0 for perspective models; angle beyond the valid
    range for fisheye) and outside the model's monotonic region. Invalid ``uv`` are still
    computed where finite, never silently clipped.
    """
    _check_supported(camera)
    X = as_array(points_cam, "points_cam", last=(3,))
    flat, lead = _flat(X, 3)
    f, c, e = camera.focal, camera.principal_point, camera.extra
    if camera.is_fisheye:
        r = np.hypot(flat[:, 0], flat[:, 1])
        theta = np.arctan2(r, flat[:, 2])
        theta_d, _, _ = _fisheye_poly(camera.model, e, theta)
        small = r < 1e-12 * np.maximum(1.0, np.abs(flat[:, 2]))
        z_safe = np.where(flat[:, 2] != 0, flat[:, 2], 1.0)
        s = np.where(small, 1.0 / z_safe, theta_d / np.where(small, 1.0, r))  # s -> 1/z on the axis
        xd = flat[:, :2] * s[:, None]
        # On the axis behind the camera (theta = pi) the image is a whole circle: no single pixel.
        valid = (theta <= camera.max_valid_angle) & (np.linalg.norm(flat, axis=1) > 0) & ~(small & (flat[:, 2] <= 0))
    else:
        z = flat[:, 2]
        front = z > 1e-12 * np.maximum(np.maximum(1.0, np.abs(flat[:, 0])), np.abs(flat[:, 1]))
        zs = np.where(front, z, 1.0)
        x, y = flat[:, 0] / zs, flat[:, 1] / zs
        xdx, xdy, _, _ = _radial_tangential(camera.model, e, x, y, need_jac=False)
        xd = np.stack([xdx, xdy], 1)
        rmax = np.tan(min(camera.max_valid_angle, np.radians(89.999)))
        valid = front & (x * x + y * y <= rmax * rmax)
    uv = xd * f + c
    valid &= np.isfinite(uv[:, 0]) & np.isfinite(uv[:, 1])
    return Projection(uv.reshape(lead + (2,)), valid.reshape(lead))


def unproject(camera: Camera, uv) -> Rays:
    """Pixels [..., 2] -> unit ray directions [..., 3] in the camera frame."""
    _check_supported(camera)
    uv = as_array(uv, "uv", last=(2,))
    flat, lead = _flat(uv, 2)
    xd = (flat - camera.principal_point) / camera.focal
    if camera.is_fisheye:
        dirs, valid = _unproject_fisheye(camera, xd, 50, 1e-14)
    else:
        xy, valid = undistort(camera, xd)
        dirs = np.concatenate([xy, np.ones((len(xy), 1))], 1)
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return Rays(dirs.reshape(lead + (3,)), valid.reshape(lead))


def project_jacobians(camera: Camera, points_cam) -> ProjectionJacobians:
    """Pixels and their analytic Jacobians with respect to the 3D point (camera frame) and to
    the intrinsic parameters (model order). points_cam: [N, 3]."""
    _check_supported(camera)
    X = as_array(points_cam, "points_cam", ndim=2, last=(3,))
    n = X.shape[0]
    f, e = camera.focal, camera.extra
    spec = camera.spec
    if camera.is_fisheye:
        uv, valid = project(camera, X)
        x, y, z = X[:, 0], X[:, 1], X[:, 2]
        r = np.hypot(x, y)
        rho2 = r * r + z * z
        theta = np.arctan2(r, z)
        g, dg, dg_de = _fisheye_poly(camera.model, e, theta)
        small = r < 1e-9 * np.maximum(1.0, np.abs(z))
        rs = np.where(small, 1.0, r)
        s = np.where(small, 1.0 / np.where(z != 0, z, 1.0), g / rs)
        dtheta_dr = z / rho2
        dtheta_dz = -r / rho2
        ds_dr = np.where(small, 0.0, (dg * dtheta_dr * rs - g) / rs**2)
        ds_dz = np.where(small, -1.0 / np.where(z != 0, z, 1.0) ** 2, dg * dtheta_dz / rs)
        J_xd = np.empty((n, 2, 3))
        for i, xi in enumerate((x, y)):
            J_xd[:, i, 0] = (1.0 if i == 0 else 0.0) * s + xi * ds_dr * x / rs
            J_xd[:, i, 1] = (1.0 if i == 1 else 0.0) * s + xi * ds_dr * y / rs
            J_xd[:, i, 2] = xi * ds_dz
        xd = X[:, :2] * s[:, None]
        J_e = np.stack([x, y], 1)[:, :, None] / rs[:, None, None] * dg_de[:, None, :]
        J_e = np.where(small[:, None, None], 0.0, J_e)
        d_uv_d_point = f[None, :, None] * J_xd
    else:
        z = X[:, 2]
        front = z > 1e-12 * np.maximum(np.maximum(1.0, np.abs(X[:, 0])), np.abs(X[:, 1]))
        all_front = bool(front.all())
        if not all_front:  # project()'s own pixels for points behind the camera
            uv, valid = project(camera, X)
            z = np.where(np.abs(z) > 0, z, 1.0)
        x, y = X[:, 0] / z, X[:, 1] / z
        xdx, xdy, J_xy, J_e = _radial_tangential(camera.model, e, x, y, need_jac=True)
        xd = np.stack([xdx, xdy], 1)
        if all_front:  # what project() computes, without evaluating the distortion twice
            c = camera.principal_point
            uv = np.empty((n, 2))
            np.multiply(xdx, f[0], out=uv[:, 0])
            uv[:, 0] += c[0]
            np.multiply(xdy, f[1], out=uv[:, 1])
            uv[:, 1] += c[1]
            rmax = np.tan(min(camera.max_valid_angle, np.radians(89.999)))
            valid = (x * x + y * y <= rmax * rmax) & np.isfinite(uv[:, 0]) & np.isfinite(uv[:, 1])
        # d uv / dX = f J_xy @ d(x, y)/dX with d(x, y)/dX = [[1/z, 0, -x/z], [0, 1/z, -y/z]],
        # component by component (long contiguous loops in NumPy)
        iz = 1.0 / z
        d_uv_d_point = np.empty((n, 2, 3))
        for i in range(2):
            fi = f[i] * iz
            j0, j1 = J_xy[:, i, 0], J_xy[:, i, 1]
            np.multiply(j0, fi, out=d_uv_d_point[:, i, 0])
            np.multiply(j1, fi, out=d_uv_d_point[:, i, 1])
            np.multiply(j0 * x + j1 * y, -fi, out=d_uv_d_point[:, i, 2])
    P = spec.num_params
    d_params = np.zeros((n, 2, P))
    if spec.single_focal:
        d_params[:, 0, 0], d_params[:, 1, 0] = xd[:, 0], xd[:, 1]
        d_params[:, 0, 1] = 1.0
        d_params[:, 1, 2] = 1.0
        k0 = 3
    else:
        d_params[:, 0, 0], d_params[:, 1, 1] = xd[:, 0], xd[:, 1]
        d_params[:, 0, 2] = 1.0
        d_params[:, 1, 3] = 1.0
        k0 = 4
    for k in range(P - k0):
        np.multiply(J_e[:, 0, k], f[0], out=d_params[:, 0, k0 + k])
        np.multiply(J_e[:, 1, k], f[1], out=d_params[:, 1, k0 + k])
    return ProjectionJacobians(uv, d_uv_d_point, d_params, valid)
