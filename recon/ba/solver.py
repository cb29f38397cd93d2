"""Sparse Levenberg-Marquardt bundle adjustment with a Schur complement on the points.

Parameters and their local perturbations (left perturbation of ``cam_from_world``)::

    R_i <- Exp(dw_i) R_i,   t_i <- t_i + dt_i,   params_c <- params_c + dk_c,   X_j <- X_j + dX_j

so with X_cam = R X + t:  d X_cam / d dw = -[R X]_x,  d X_cam / d dt = I,  d X_cam / d X = R, and
the pixel Jacobians come from ``calib.Camera.project_jacobians`` (analytic, every model calib
projects). The normal equations (Gauss-Newton with IRLS weights rho'(s) of the robust loss,
Triggs et al. 2000, sec. 6) are damped as in Ceres' Levenberg-Marquardt:
``(H + D / radius) dx = -g`` with ``D = clip(diag H, 1e-6, 1e32)``; the 3x3 point blocks are
eliminated (Schur complement, Triggs et al. sec. 6.1; Agarwal et al. "Bundle Adjustment in the
Large", 2010) and the reduced camera system is solved by

* ``numpy`` backend: S assembled explicitly from per-image-pair blocks (every pair of
  observations of a point couples their two images; the pairs, their grouping by image pair and
  the scatter indices into S are computed once per problem, :class:`_PairStructure`), then
  dense Cholesky (LAPACK ``dposv``, up to 3000 camera-side parameters), sparse LU (SuperLU) or
  Jacobi-preconditioned CG. Observations are sorted by image once, so per-image sums are BLAS
  products and segment reductions; per-observation arrays are stored component-major
  ([2, L, M], [L, 3, M]) so that NumPy runs long contiguous loops instead of tiny trailing
  axes. Problems with very many observation pairs (long tracks) fall back to scipy sparse
  products (:class:`_SparseProductSolver`);
* ``torch`` backend (used automatically on CUDA): S is never formed; preconditioned conjugate
  gradients with implicit products ``S x = H_cc x - W V^-1 W^T x`` over batched per-observation
  blocks and a block-Jacobi preconditioner (6x6 pose blocks of S, exact).

Residuals and Jacobians are evaluated with NumPy (the calib camera models, the single source of
truth for projection); only the linear algebra runs on the torch device. The trial point of a
step is evaluated with its Jacobian when the previous step was accepted (most are), so an
accepted step costs one evaluation, not two.

Gauge (``BAOptions.gauge``): ``"two_cams"`` (default; COLMAP's TWO_CAMS_FROM_WORLD) holds the
pose of the first free image fixed (6 DOF) and, for the second free image b, the component
k = argmax |t_ba| of its translation (t_ba: translation of cam_b_from_cam_a), which fixes the
scale since t_b = R_ba t_a + s t_ba under the remaining similarity gauge. With two or more
user-fixed poses nothing is added; ``"none"`` adds nothing (the user's fixed poses/points must
then pin the gauge, or LM damping keeps the singular directions still).
"""

from __future__ import annotations

import copy
import itertools
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from calib import matrix_from_axis_angle
from recon.ba.problem import BAProblem

__all__ = ["BAOptions", "BAResult", "bundle_adjust", "evaluate_cost", "loss_rho"]

LOSSES = ("trivial", "huber", "cauchy", "soft_l1")


@dataclass
class BAOptions:
    """Options of :func:`bundle_adjust`.

    loss:                 robust loss on the squared pixel residual s of each observation:
                          trivial (s), huber, cauchy or soft_l1 (Ceres' definitions)
    loss_scale:           the loss' scale a, in pixels (Huber: quadratic up to a px)
    max_iterations:       LM iterations, accepted and rejected steps both count (as Ceres)
    function_tolerance:   stop when |cost change| <= this * cost
    gradient_tolerance:   stop when max |gradient| <= this
    parameter_tolerance:  stop when |dx| <= this * (|x| + this)
    initial_trust_region_radius: 1 / initial LM damping (Ceres' default 1e4)
    gauge:                "two_cams" or "none" (see module docstring)
    linear_solver:        "auto", "dense", "sparse" or "pcg" (numpy backend; torch uses pcg)
    backend:              "auto" (torch when torch.cuda.is_available(), else numpy), "numpy", "torch"
    device:               torch device for the torch backend ("cuda" / "cpu"); None = auto
    pcg_tolerance:        relative residual at which PCG stops
    pcg_max_iterations:   PCG iteration cap per LM step
    blas_threads:         BLAS threads during the solve (needs threadpoolctl; None = the BLAS
                          default). 1 by default: the reduced systems are small, and a threaded
                          OpenBLAS on an oversubscribed machine was measured 30x slower
    verbose:              print one line per iteration to stderr
    """

    loss: str = "trivial"
    loss_scale: float = 1.0
    max_iterations: int = 100
    function_tolerance: float = 1e-10
    gradient_tolerance: float = 1e-10
    parameter_tolerance: float = 1e-10
    initial_trust_region_radius: float = 1e4
    gauge: str = "two_cams"
    linear_solver: str = "auto"
    backend: str = "auto"
    device: str | None = None
    pcg_tolerance: float = 1e-8
    pcg_max_iterations: int = 500
    blas_threads: int | None = 1
    verbose: bool = False

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {self.loss!r}")
        if not self.loss_scale > 0:
            raise ValueError(f"loss_scale: expected > 0, got {self.loss_scale}")
        if self.gauge not in ("two_cams", "none"):
            raise ValueError(f"gauge: expected 'two_cams' or 'none', got {self.gauge!r}")
        if self.linear_solver not in ("auto", "dense", "sparse", "pcg"):
            raise ValueError(f"linear_solver: expected auto/dense/sparse/pcg, got {self.linear_solver!r}")
        if self.backend not in ("auto", "numpy", "torch"):
            raise ValueError(f"backend: expected auto/numpy/torch, got {self.backend!r}")
        if self.max_iterations < 0:
            raise ValueError(f"max_iterations: expected >= 0, got {self.max_iterations}")


@dataclass
class BAResult:
    """problem: the refined copy; costs use Ceres' convention 1/2 sum rho(|r|^2)."""

    problem: BAProblem
    initial_cost: float
    final_cost: float
    iterations: int
    successful_steps: int
    termination: str  # "function_tolerance" | "gradient_tolerance" | "parameter_tolerance" | "max_iterations" | "no_progress"
    time_s: float
    backend: str
    cost_history: list[float] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return self.termination in ("function_tolerance", "gradient_tolerance", "parameter_tolerance")

    def initial_rms_px(self, n_obs: int) -> float:
        return float(np.sqrt(2 * self.initial_cost / max(n_obs, 1)))


def loss_rho(loss: str, a: float, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """rho(s) and rho'(s) for squared residual norms s >= 0 (Ceres' loss definitions)."""
    a2 = a * a
    if loss == "trivial":
        return s, np.ones_like(s)
    if loss == "huber":
        big = s > a2
        r = np.sqrt(np.where(big, s, 1.0))
        return np.where(big, 2 * a * r - a2, s), np.where(big, a / r, 1.0)
    if loss == "cauchy":
        return a2 * np.log1p(s / a2), 1.0 / (1.0 + s / a2)
    if loss == "soft_l1":
        q = np.sqrt(1.0 + s / a2)
        return 2 * a2 * (q - 1.0), 1.0 / q
    raise ValueError(f"loss: unknown {loss!r}")


# =========================================================================================
# Parameter layout
# =========================================================================================

class _Layout:
    """Camera-side parameter vector: [6 per image (dw, dt)] + [P_c per camera] (Dc entries).

    Each observation touches L local columns (``idx`` [M, L]): the 6 pose columns of its image,
    then the *free* intrinsics of its camera (fixed intrinsics get no column), padded to the
    widest camera with columns whose Jacobian is always zero (``local_free`` False there).
    """

    def __init__(self, problem: BAProblem, gauge: str):
        I = problem.num_images
        self.I = I
        self.n_intr = np.array([c.spec.num_params for c in problem.cameras], dtype=np.int64)
        self.intr_off = 6 * I + np.concatenate([[0], np.cumsum(self.n_intr)[:-1]]).astype(np.int64)
        self.Dc = int(6 * I + self.n_intr.sum())
        pose_free = np.repeat(~problem.pose_fixed[:, None], 6, axis=1)
        if gauge == "two_cams":
            self._fix_gauge(problem, pose_free)
        self.pose_free = pose_free
        free = np.concatenate([pose_free.ravel()] + [m for m in problem.intrinsics_free])
        self.free = free.astype(bool)
        self.free_intr = [np.nonzero(m)[0] for m in problem.intrinsics_free]
        self.L = L = 6 + max((len(f) for f in self.free_intr), default=0)
        # per image: its L columns and which of them are free (the same for all its observations)
        ic = problem.image_camera
        idx_img = np.empty((I, L), dtype=np.int64)
        idx_img[:, :6] = 6 * np.arange(I)[:, None] + np.arange(6)
        idx_img[:, 6:] = 6 * np.arange(I)[:, None]  # padding: any valid column (zero Jacobian)
        mask_img = np.zeros((I, L), dtype=bool)
        mask_img[:, :6] = pose_free
        for c, fi in enumerate(self.free_intr):
            sel = ic == c
            idx_img[sel, 6:6 + len(fi)] = self.intr_off[c] + fi
            mask_img[sel, 6:6 + len(fi)] = True
        self.idx_img, self.mask_img = idx_img, mask_img
        self.padded = any(6 + len(self.free_intr[c]) < L for c in np.unique(ic))
        oi = problem.obs_image
        self.idx = idx_img[oi]
        self.local_free = mask_img[oi]
        self.obs_cam = ic[oi]
        self.idx_T = np.ascontiguousarray(self.idx.T)  # [L, M]
        self.op9_T = (9 * problem.obs_point[None, :] + np.arange(9)[:, None]).reshape(-1)
        # observations sorted by image (bundle_adjust sorts them): image i owns img_start[i]:[i+1]
        self.img_start = (np.searchsorted(oi, np.arange(I + 1)) if oi.size == 0 or np.all(oi[1:] >= oi[:-1])
                          else None)
        if self.img_start is not None:  # per-image segments of the observations (non-empty images)
            seg = np.nonzero(np.diff(self.img_start) > 0)[0]
            self.seg_start = self.img_start[seg]
            self.seg_idx = np.ascontiguousarray(idx_img[seg].T).reshape(-1)  # [L, I'] order

    def sum_to_columns(self, A: np.ndarray) -> np.ndarray:
        """[Dc]: per-observation local values A [L, M] summed into their camera-side columns
        (per-image segment sums first when the observations are sorted by image)."""
        if self.img_start is None or A.shape[1] == 0:
            return np.bincount(self.idx_T.reshape(-1), weights=A.reshape(-1), minlength=self.Dc)
        R = np.add.reduceat(A, self.seg_start, axis=1)
        return np.bincount(self.seg_idx, weights=R.reshape(-1), minlength=self.Dc)

    @staticmethod
    def _fix_gauge(problem: BAProblem, pose_free: np.ndarray) -> None:
        fixed = np.nonzero(problem.pose_fixed)[0]
        free = np.nonzero(~problem.pose_fixed)[0]
        if len(fixed) >= 2 or len(free) == 0:
            return
        if len(fixed) == 0:
            a = free[0]
            pose_free[a] = False
            free = free[1:]
        else:
            a = fixed[0]
        if len(free) == 0:
            return
        Ra, ta = problem.rotations[a], problem.translations[a]
        # choose the free image whose baseline to a is largest: the best-conditioned scale anchor
        Rb, tb = problem.rotations[free], problem.translations[free]
        t_ba = tb - np.einsum("nij,jk,k->ni", Rb, Ra.T, ta)
        b = int(np.argmax(np.linalg.norm(t_ba, axis=1)))
        k = int(np.argmax(np.abs(t_ba[b])))
        pose_free[free[b], 3 + k] = False


# =========================================================================================
# Evaluation (NumPy, calib camera models)
# =========================================================================================

class _State:
    """The variables of a problem (what an LM step changes)."""

    __slots__ = ("cameras", "points", "rotations", "translations")

    def __init__(self, cameras, rotations, translations, points):
        self.cameras, self.rotations, self.translations, self.points = cameras, rotations, translations, points


class _Evaluator:
    """Residuals and Jacobians of every observation. When the observations are sorted by image
    (as :func:`bundle_adjust` arranges) and numerous per image, the rotations are applied per
    image with one BLAS product each instead of a gathered [M, 3, 3] array."""

    def __init__(self, problem: BAProblem, layout: _Layout, options: BAOptions):
        self.p = problem
        self.layout = layout
        self.options = options
        self.oi, self.op, self.uv = problem.obs_image, problem.obs_point, problem.obs_uv
        C = len(problem.cameras)
        self.cam_obs = [None] if C == 1 else [np.nonzero(layout.obs_cam == c)[0] for c in range(C)]
        st = layout.img_start
        M, I = problem.num_observations, problem.num_images
        self.slices = None
        if st is not None and M >= 32 * max(I, 1):
            self.slices = [(i, int(st[i]), int(st[i + 1])) for i in range(I) if st[i + 1] > st[i]]
        # Jacobian columns to zero: fixed pose components (few images: slices) and fixed points
        fixed_imgs = np.nonzero(~layout.pose_free.all(axis=1))[0]
        self.zero_cols = None
        self.zero_mask = None
        if fixed_imgs.size:
            if st is not None and fixed_imgs.size <= 64:
                self.zero_cols = [(int(st[i]), int(st[i + 1]), np.nonzero(~layout.pose_free[i])[0])
                                  for i in fixed_imgs]
            else:
                self.zero_mask = np.ascontiguousarray(layout.local_free.T)  # [L, M]
        pf = problem.point_fixed[self.op]
        self.fixed_pt_obs = np.nonzero(pf)[0] if pf.any() else None

    def residuals(self, state, need_jac: bool):
        """(res [M, 2], valid [M], Jc [M, 2, L] or None, Jx [M, 2, 3] or None) at ``state``
        (anything with cameras, rotations, translations, points)."""
        R, X = state.rotations, state.points
        oi, op = self.oi, self.op
        M = oi.shape[0]
        L = self.layout.L
        Xw = X[op]
        Rg = None
        if self.slices is not None:
            RX, Xc = np.empty((M, 3)), np.empty((M, 3))
            t = state.translations
            for i, s, e in self.slices:
                np.matmul(Xw[s:e], R[i].T, out=RX[s:e])
                np.add(RX[s:e], t[i], out=Xc[s:e])
        else:
            Rg = R[oi]
            RX = np.einsum("mij,mj->mi", Rg, Xw)
            Xc = RX + state.translations[oi]
        valid = Xc[:, 2] > 1e-12
        all_valid = bool(valid.all())
        res = np.empty((M, 2)) if all_valid else np.zeros((M, 2))
        if need_jac:
            # Jc is stored component-major [2, L, M] (every write and most later reads are
            # contiguous M-vectors, much faster in NumPy than tiny trailing axes) and returned
            # as the [M, 2, L] view
            Js = np.empty((2, L, M))
            d = np.empty((M, 2, 3)) if all_valid else np.zeros((M, 2, 3))  # d uv / d X_cam
            if not all_valid or self.layout.padded:
                Js[:, 6:] = 0.0
        for c, obs in enumerate(self.cam_obs):
            if obs is None:
                sel = None if all_valid else np.nonzero(valid)[0]
            else:
                sel = obs if all_valid else obs[valid[obs]]
            if sel is not None and sel.size == 0:
                continue
            cam = state.cameras[c]
            Xs = Xc if sel is None else Xc[sel]
            if need_jac:
                uv, d_pt, d_par, _ = cam.project_jacobians(Xs)
                fi = self.layout.free_intr[c]
                if sel is None:
                    np.subtract(uv, self.uv, out=res)
                    d = d_pt
                else:
                    res[sel] = uv - self.uv[sel]
                    d[sel] = d_pt
                for k in range(2):
                    for j, pj in enumerate(fi):
                        if sel is None:
                            Js[k, 6 + j] = d_par[:, k, pj]
                        else:
                            Js[k, 6 + j, sel] = d_par[:, k, pj]
            else:
                uv, _ = cam.project(Xs)
                if sel is None:
                    np.subtract(uv, self.uv, out=res)
                else:
                    res[sel] = uv - self.uv[sel]
        if not need_jac:
            return res, valid, None, None
        # d X_cam / d dw = -[R X]_x, so row k of d uv / d dw is (R X) x (d uv_k / d X_cam);
        # d X_cam / d dt = I; d X_cam / d X = R. Invalid observations have d_pt = 0 here.
        a0, a1, a2 = np.ascontiguousarray(RX.T)
        dT = np.ascontiguousarray(d.transpose(1, 2, 0))  # [2, 3, M]: contiguous M-vectors
        for k in range(2):
            d0, d1, d2 = dT[k]
            np.multiply(a1, d2, out=Js[k, 0])
            Js[k, 0] -= a2 * d1
            np.multiply(a2, d0, out=Js[k, 1])
            Js[k, 1] -= a0 * d2
            np.multiply(a0, d1, out=Js[k, 2])
            Js[k, 2] -= a1 * d0
            Js[k, 3], Js[k, 4], Js[k, 5] = d0, d1, d2
        if self.slices is not None:
            Jx = np.empty((M, 2, 3))
            d2, Jx2 = d.reshape(-1, 3), Jx.reshape(-1, 3)
            for i, s, e in self.slices:
                np.matmul(d2[2 * s:2 * e], R[i], out=Jx2[2 * s:2 * e])
        else:
            Jx = np.matmul(d, Rg)
        if self.zero_cols is not None:
            for s, e, cols in self.zero_cols:
                Js[:, cols, s:e] = 0.0
        elif self.zero_mask is not None:
            Js *= self.zero_mask
        if self.fixed_pt_obs is not None:
            Jx[self.fixed_pt_obs] = 0.0
        return res, valid, Js.transpose(2, 0, 1), Jx

    def cost(self, res: np.ndarray) -> tuple[float, np.ndarray]:
        r0, r1 = res[:, 0], res[:, 1]
        s = r0 * r0
        s += r1 * r1
        rho, drho = loss_rho(self.options.loss, self.options.loss_scale, s)
        return 0.5 * float(rho.sum()), drho


def evaluate_cost(problem: BAProblem, options: BAOptions | None = None) -> float:
    """Ceres-convention cost 1/2 sum rho(|r|^2) of a problem (gauge does not matter)."""
    options = options or BAOptions()
    ev = _Evaluator(problem, _Layout(problem, "none"), options)
    res, _, _, _ = ev.residuals(problem, need_jac=False)
    return ev.cost(res)[0]


def _apply_step(p, layout: _Layout, dc: np.ndarray, dp: np.ndarray) -> _State:
    """The state ``p`` (a BAProblem or _State) moved by the camera-side step dc and point step dp."""
    I = layout.I
    d = dc[:6 * I].reshape(I, 6)
    cams = []
    for c, cam in enumerate(p.cameras):
        o, n = layout.intr_off[c], layout.n_intr[c]
        step = dc[o:o + n]
        cams.append(cam if not np.any(step) else cam.with_params(cam.params + step))
    return _State(cams, matrix_from_axis_angle(d[:, :3]) @ p.rotations, p.translations + d[:, 3:],
                  p.points + dp)


# =========================================================================================
# Normal equations (shared bookkeeping) and the linear-solver backends
# =========================================================================================

@dataclass
class _System:
    Jcw: np.ndarray  # [M, 2, L] sqrt(w)-weighted, masked
    Jxw: np.ndarray  # [M, 2, 3]
    rw: np.ndarray  # [M, 2]
    gc: np.ndarray  # [Dc]
    gp: np.ndarray  # [N, 3]
    V: np.ndarray  # [N, 3, 3] undamped point blocks
    WT: np.ndarray | None = None  # [L, 3, M] W_m^T = Jx_m^T Jc_m per observation, l-major
    JxT: np.ndarray | None = None  # [2, 3, M] Jxw, component-major


def _build_system(Jc, Jx, res, drho, layout: _Layout, problem: BAProblem, trivial: bool = False) -> _System:
    """Gradients, point blocks and per-observation W^T from the Jacobians, computed component by
    component on M-vectors (Jc as the component-major [2, L, M] array it is stored as)."""
    M, L, N = Jx.shape[0], layout.L, problem.num_points
    Js = Jc.transpose(1, 2, 0)  # [2, L, M]
    if trivial:  # all IRLS weights are 1
        Jxw, rw = Jx, res
    else:
        sw = np.sqrt(drho)
        Js = Js * sw
        Jxw = Jx * sw[:, None, None]
        rw = res * sw[:, None]
    x = np.ascontiguousarray(Jxw.transpose(1, 2, 0))  # [2, 3, M]: contiguous M-vectors
    r0, r1 = np.ascontiguousarray(rw.T)
    WT = np.empty((L, 3, M))  # W_m^T = Jx_m^T Jc_m, l-major
    tmp = np.empty((L, M))
    for c in range(3):
        np.multiply(Js[0], x[0][c], out=WT[:, c])
        np.multiply(Js[1], x[1][c], out=tmp)
        WT[:, c] += tmp
    gcl = Js[0] * r0  # [L, M] Jc^T r
    np.multiply(Js[1], r1, out=tmp)
    gcl += tmp
    U = np.empty((9, M))  # Jx^T Jx (upper triangle, 6) and Jx^T r (3)
    for i, (a, b) in enumerate(((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2), (0, 3), (1, 3), (2, 3))):
        u0, u1 = (x[0][b], x[1][b]) if b < 3 else (r0, r1)
        np.multiply(x[0][a], u0, out=U[i])
        np.multiply(x[1][a], u1, out=tmp[0])
        U[i] += tmp[0]
    gc = layout.sum_to_columns(gcl)
    VG = np.bincount(layout.op9_T, weights=U.reshape(-1), minlength=9 * N).reshape(N, 9)
    V = VG[:, [0, 1, 2, 1, 3, 4, 2, 4, 5]].reshape(N, 3, 3)
    return _System(Js.transpose(2, 0, 1), Jxw, rw, gc, np.ascontiguousarray(VG[:, 6:]), V, WT, x)


def _inv_sym3(A):
    """Inverses of symmetric positive-definite 3x3 blocks [N, 3, 3] (closed form, adjugate)."""
    a, b, c = A[:, 0, 0], A[:, 0, 1], A[:, 0, 2]
    d, e, f = A[:, 1, 1], A[:, 1, 2], A[:, 2, 2]
    out = np.empty_like(A)
    co_a = d * f - e * e
    co_b = c * e - b * f
    co_c = b * e - c * d
    det = a * co_a + b * co_b + c * co_c
    # numerically singular blocks (a point seen once, tiny damping): pseudo-inverse instead
    bad = ~(det > 1e-12 * np.abs(a * d * f))
    if bad.any():
        det = np.where(bad, 1.0, det)
    inv_det = 1.0 / det
    out[:, 0, 0] = co_a * inv_det
    out[:, 0, 1] = out[:, 1, 0] = co_b * inv_det
    out[:, 0, 2] = out[:, 2, 0] = co_c * inv_det
    out[:, 1, 1] = (a * f - c * c) * inv_det
    out[:, 1, 2] = out[:, 2, 1] = (b * c - a * e) * inv_det
    out[:, 2, 2] = (a * d - b * b) * inv_det
    if bad.any():
        out[bad] = np.linalg.pinv(A[bad], hermitian=True)
    return out


def _damped_point_inverse(V, lam, point_fixed):
    Vd = V.copy()
    dg = np.einsum("nii->ni", Vd)  # a view: damp the diagonal in place
    dg += lam * np.clip(dg, 1e-6, 1e32)
    if point_fixed is not None:
        Vd[point_fixed] = np.eye(3)
    return _inv_sym3(Vd)


class _PairStructure:
    """Static structure of the Schur complement S = H_cc - sum_j W_j V_j^-1 W_j^T, built once.

    The Schur term of point j couples every pair (a, b) of its observations: the L x L block
    Y_a W_b^T (Y_a = W_a V_j^-1, W_a = Jc_a^T Jx_a) lands at (columns of image a, columns of
    image b). Pairs a = b fold into one block per image (BLAS over the image's contiguous
    observations); pairs a < b are oriented so image(a) <= image(b) and grouped by their image
    pair (the key). Per-observation blocks are kept l-major, ``[L, 3, M]``, so that a gather of
    columns (static indices, ordered key, c, pair) gives for every key a contiguous
    ``[L, 3 n_key]`` slice: its block is one product ``Ya[:, q] @ Wb[:, q]^T``. Few keys: a loop
    of BLAS products (measured faster up to 20k keys); more: one CSR x dense product per chunk, whose CSR rows (l, key)
    take the gathered values in place (the pattern is fixed). S is then scattered with
    precomputed flat indices (bincount).
    """

    CHUNK = 1 << 18  # pairs per sparse product (bounds the gather buffers)
    KEY_LOOP = 50000  # up to this many image pairs: a Python loop of BLAS products

    def __init__(self, problem: BAProblem, layout: _Layout):
        op, oi = problem.obs_point, problem.obs_image
        I, N, L, Dc, M = problem.num_images, problem.num_points, layout.L, layout.Dc, problem.num_observations
        counts = np.bincount(op, minlength=N)
        order = np.argsort(op, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pa_l, pb_l = [], []
        for t in np.unique(counts[counts >= 2]):
            pts = np.nonzero(counts == t)[0]
            obs = order[starts[pts][:, None] + np.arange(t)]
            iu, ju = np.triu_indices(int(t), 1)
            pa_l.append(obs[:, iu].reshape(-1))
            pb_l.append(obs[:, ju].reshape(-1))
        pa = np.concatenate(pa_l) if pa_l else np.zeros(0, dtype=np.int64)
        pb = np.concatenate(pb_l) if pb_l else np.zeros(0, dtype=np.int64)
        swap = oi[pa] > oi[pb]
        pa, pb = np.where(swap, pb, pa), np.where(swap, pa, pb)
        key = oi[pa] * I + oi[pb]
        srt = np.argsort(key, kind="stable")
        pa, pb, key = pa[srt], pb[srt], key[srt]
        first = np.ones(len(key), dtype=bool)  # key is sorted: run starts
        first[1:] = key[1:] != key[:-1]
        kfirst = np.nonzero(first)[0]
        ukey, kpos = key[kfirst], np.cumsum(first) - 1
        ka, kb = ukey // I, ukey % I
        P, K = len(pa), len(ukey)
        self.num_pairs, self.num_keys = P, K
        kend = np.append(kfirst, P)
        # gather columns (of the [L, 3M] per-observation arrays) in the order (key, c, pair)
        nk = np.diff(kend)[kpos]
        pos = np.arange(P) - kfirst[kpos]
        self.ga = np.empty(3 * P, dtype=np.int64)
        self.gb = np.empty(3 * P, dtype=np.int64)
        for c in range(3):
            q = 3 * kfirst[kpos] + c * nk + pos
            self.ga[q] = c * M + pa
            self.gb[q] = c * M + pb
        self.qend = [int(v) for v in 3 * kend]
        self.ybuf = np.empty((L, 3 * P))
        self.wbuf = np.empty((L, 3 * P))
        self.key_loop = K <= self.KEY_LOOP
        self.chunks = []
        if not self.key_loop:  # chunks of whole keys, at most CHUNK pairs each (or one bigger key)
            import scipy.sparse as sp

            bounds = [0]
            while bounds[-1] < K:
                k0 = bounds[-1]
                k1 = int(np.searchsorted(kend, kend[k0] + self.CHUNK, side="right")) - 1
                bounds.append(max(k1, k0 + 1))
            for k0, k1 in itertools.pairwise(bounds):
                q0, q1 = 3 * int(kend[k0]), 3 * int(kend[k1])
                nq = q1 - q0
                indptr = np.append((np.arange(L)[:, None] * nq + (3 * kend[k0:k1] - q0)[None, :]).reshape(-1),
                                   L * nq).astype(np.int32)
                indices = np.tile(np.arange(nq, dtype=np.int32), L)
                A = sp.csr_matrix((np.zeros(L * nq), indices, indptr), shape=(L * (k1 - k0), nq))
                self.chunks.append((A, q0, q1, k0, k1))
        # flat indices of S entries: [diag blocks (I), off blocks (K), their transposes (K)]
        ii = layout.idx_img
        fd = ii[:, :, None] * Dc + ii[:, None, :]
        fo = ii[ka][:, :, None] * Dc + ii[kb][:, None, :]
        fot = ii[kb][:, None, :] * Dc + ii[ka][:, :, None]
        self.flat = np.concatenate([fd.reshape(-1), fo.reshape(-1), fot.reshape(-1)])

    def off_blocks(self, YTl: np.ndarray, WTl: np.ndarray) -> np.ndarray:
        """[K, L, L]: per image pair (a < b), sum over shared points of Y_a W_b^T, from the
        l-major per-observation arrays [L, 3, M]."""
        L = YTl.shape[0]
        out = np.empty((self.num_keys, L, L))
        Ya = np.take(YTl.reshape(L, -1), self.ga, axis=1, out=self.ybuf, mode="clip")
        Wb = np.take(WTl.reshape(L, -1), self.gb, axis=1, out=self.wbuf, mode="clip")
        if self.key_loop:  # few image pairs: one BLAS product per pair
            qe = self.qend
            for k in range(self.num_keys):
                np.matmul(Ya[:, qe[k]:qe[k + 1]], Wb[:, qe[k]:qe[k + 1]].T, out=out[k])
            return out
        for A, q0, q1, k0, k1 in self.chunks:
            A.data.reshape(L, q1 - q0)[:] = Ya[:, q0:q1]
            r = A @ np.ascontiguousarray(Wb[:, q0:q1].T)  # rows (l, key)
            out[k0:k1] = r.reshape(L, k1 - k0, L).transpose(1, 0, 2)
        return out


class _NumpySolver:
    """Schur complement on the points with S assembled from per-image-pair blocks
    (:class:`_PairStructure`); S solved by dense Cholesky, sparse LU or Jacobi-PCG. The
    per-observation arrays are l-major [L, 3, M] (long contiguous loops in NumPy)."""

    name = "numpy"
    MAX_PAIR_BYTES = 2e9

    def __init__(self, layout: _Layout, problem: BAProblem, options: BAOptions, pairs: _PairStructure):
        self.layout = layout
        self.options = options
        self.pairs = pairs
        self.N = problem.num_points
        self.op = problem.obs_point
        self.op3_T = (3 * self.op[None, :] + np.arange(3)[:, None]).reshape(-1)
        self.point_fixed = problem.point_fixed if problem.point_fixed.any() else None
        st = layout.img_start
        self.slices = [(i, int(st[i]), int(st[i + 1])) for i in range(layout.I) if st[i + 1] > st[i]]
        ls = options.linear_solver
        self.method = ls if ls != "auto" else ("dense" if layout.Dc <= 3000 else "sparse")
        Dc = layout.Dc
        self.dfix = (~layout.free).astype(float)
        if self.method != "dense":
            self.rows, self.cols = pairs.flat // Dc, pairs.flat % Dc

    def prepare(self, sysm: _System):
        lay = self.layout
        L = lay.L
        self.sysm = sysm
        self.WTl = sysm.WT  # [L, 3, M]: W_m^T = Jx_m^T Jc_m, l-major
        H = np.zeros((lay.I, L, L))
        J0, J1 = sysm.Jcw[:, 0].T, sysm.Jcw[:, 1].T  # [L, M] each
        for i, s, e in self.slices:
            a, b = J0[:, s:e], J1[:, s:e]
            np.matmul(a, a.T, out=H[i])
            H[i] += b @ b.T
        self.H = H
        self.hdiag = np.bincount(lay.idx_img.reshape(-1), weights=np.einsum("ill->il", H).reshape(-1),
                                 minlength=lay.Dc)

    def solve(self, lam: float):
        s = self.sysm
        lay = self.layout
        L, Dc, M = lay.L, lay.Dc, s.Jcw.shape[0]
        Vinv = _damped_point_inverse(s.V, lam, self.point_fixed)
        WTl = self.WTl
        Vo = np.ascontiguousarray(Vinv.reshape(-1, 9)[self.op].T)  # [9, M]
        YTl = np.empty((L, 3, M))  # (W_m V_j^-1)^T, l-major
        tmp = np.empty((L, M))
        for r in range(3):
            np.multiply(WTl[:, 0], Vo[3 * r], out=YTl[:, r])
            for c in (1, 2):
                np.multiply(WTl[:, c], Vo[3 * r + c], out=tmp)
                YTl[:, r] += tmp
        D = self.H.copy()
        for i, a, e in self.slices:
            for c in range(3):
                D[i] -= YTl[:, c, a:e] @ WTl[:, c, a:e].T
        O = self.pairs.off_blocks(YTl, WTl)
        w = np.concatenate([D.reshape(-1), -O.reshape(-1), -O.reshape(-1)])
        diag = lam * np.clip(self.hdiag, 1e-6, 1e32) + self.dfix
        gpo = np.ascontiguousarray(s.gp[self.op].T)  # [3, M]
        bl = YTl[:, 0] * gpo[0]  # [L, M]: Y_m gp_j
        for c in (1, 2):
            np.multiply(YTl[:, c], gpo[c], out=tmp)
            bl += tmp
        b = lay.sum_to_columns(bl) - s.gc
        if self.method == "dense":
            S = np.bincount(self.pairs.flat, weights=w, minlength=Dc * Dc).reshape(Dc, Dc)
            S[np.diag_indices(Dc)] += diag
            dc = _solve_dense(S, b)
        else:
            import scipy.sparse as sp

            S = sp.coo_matrix((w, (self.rows, self.cols)), shape=(Dc, Dc)).tocsr() + sp.diags(diag)
            dc = _solve_sparse(S, b, self.method, self.options)
        wdc = np.einsum("lcm,lm->cm", WTl, dc[lay.idx_T])  # [3, M]: W_m^T dc
        t = s.gp + np.bincount(self.op3_T, weights=wdc.reshape(-1), minlength=3 * self.N).reshape(self.N, 3)
        dp = -np.einsum("nij,nj->ni", Vinv, t)
        return dc, dp


def _solve_dense(S, b):
    from scipy.linalg import lapack

    _, x, info = lapack.dposv(S, b, lower=1)  # Cholesky factor and solve in one LAPACK call
    return x if info == 0 else np.linalg.lstsq(S, b, rcond=None)[0]


def _solve_sparse(S, b, method, options):
    import scipy.sparse.linalg as spla

    if method == "dense":
        return _solve_dense(S.toarray(), b)
    if method == "sparse":
        return spla.splu(S.tocsc(), permc_spec="MMD_AT_PLUS_A").solve(b)
    d = S.diagonal()
    pre = spla.LinearOperator(S.shape, matvec=lambda x: x / d)
    x, _ = spla.cg(S, b, rtol=options.pcg_tolerance, maxiter=options.pcg_max_iterations, M=pre)
    return x


class _SparseProductSolver:
    """Fallback for problems with very many observation pairs (long tracks): S from sparse
    matrix products H_cc - (W V^-1) W^T (scipy), memory O(nnz(S)) instead of O(pairs)."""

    name = "numpy"

    def __init__(self, layout: _Layout, problem: BAProblem, options: BAOptions):
        import scipy.sparse as sp

        self.sp = sp
        self.layout = layout
        self.options = options
        M, L, N = problem.num_observations, layout.L, problem.num_points
        self.rows = np.repeat(np.arange(2 * M), L)
        self.cols_c = np.repeat(layout.idx[:, None, :], 2, axis=1).ravel()
        self.cols_x = np.repeat((3 * problem.obs_point[:, None] + np.arange(3))[:, None, :], 2, axis=1).ravel()
        self.rows_x = np.repeat(np.arange(2 * M), 3)
        self.N = N
        self.point_fixed = problem.point_fixed
        ls = options.linear_solver
        self.method = ls if ls != "auto" else ("dense" if layout.Dc <= 3000 else "sparse")

    def prepare(self, sysm: _System):
        sp = self.sp
        M2, Dc, N = sysm.rw.size, self.layout.Dc, self.N
        Jcs = sp.csr_matrix((sysm.Jcw.ravel(), (self.rows, self.cols_c)), shape=(M2, Dc))
        Jxs = sp.csr_matrix((sysm.Jxw.ravel(), (self.rows_x, self.cols_x)), shape=(M2, 3 * N))
        self.Hcc = (Jcs.T @ Jcs).tocsr()
        self.W = (Jcs.T @ Jxs).tocsr()
        self.hdiag = self.Hcc.diagonal()
        self.sysm = sysm

    def solve(self, lam: float):
        sp = self.sp
        s = self.sysm
        N = self.N
        Vinv = _damped_point_inverse(s.V, lam, self.point_fixed)
        diag = lam * np.clip(self.hdiag, 1e-6, 1e32) + (~self.layout.free).astype(float)
        Vinv_sp = sp.bsr_matrix((Vinv, np.arange(N), np.arange(N + 1)), shape=(3 * N, 3 * N)).tocsr()
        WV = self.W @ Vinv_sp
        S = self.Hcc - WV @ self.W.T + sp.diags(diag)
        b = -s.gc + WV @ s.gp.ravel()
        dc = _solve_sparse(S, b, self.method, self.options)
        dp = -np.einsum("nij,nj->ni", Vinv, s.gp + (self.W.T @ dc).reshape(N, 3))
        return dc, dp


# =========================================================================================
# Levenberg-Marquardt driver
# =========================================================================================

def _select_backend(options: BAOptions, problem: BAProblem) -> str:
    if options.backend != "auto":
        return options.backend
    if "torch" not in sys.modules and (problem.num_observations < 20000 or not _nvidia_driver_present()):
        return "numpy"  # small, or no NVIDIA driver: not worth importing torch (seconds) to look for CUDA
    try:
        import torch

        return "torch" if torch.cuda.is_available() else "numpy"
    except ImportError:
        return "numpy"


def _nvidia_driver_present() -> bool:
    """Cheap test (no torch import) for an NVIDIA driver: CUDA is impossible without one."""
    import os

    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version")
    import ctypes.util

    return any(ctypes.util.find_library(n) for n in ("nvcuda", "cuda"))


_BLAS_CONTROLLER = [None, None]  # (threadpoolctl controller, whether torch was loaded when made)


def _blas_limit(threads: int):
    """A context limiting BLAS threads. The threadpoolctl controller (a scan of the loaded
    libraries, about 1.5 ms) is made once and remade only when torch has been imported since."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    import scipy.linalg  # noqa: F401  (load SciPy's BLAS before the scan)

    has_torch = "torch" in sys.modules
    ctl, made_with_torch = _BLAS_CONTROLLER
    if ctl is None or made_with_torch != has_torch:
        ctl = ThreadpoolController()
        _BLAS_CONTROLLER[:] = [ctl, has_torch]
    return ctl.limit(limits=threads, user_api="blas")


def bundle_adjust(problem: BAProblem, options: BAOptions | None = None) -> BAResult:
    """Minimise 1/2 sum rho(|project - observed|^2) over the free poses, intrinsics and points.

    Returns a :class:`BAResult` holding a refined copy of ``problem`` (the input is unchanged).
    """
    if not isinstance(problem, BAProblem):
        raise TypeError(f"problem: expected recon.ba.BAProblem, got {type(problem).__name__}")
    options = options or BAOptions()
    if options.blas_threads is not None:
        limit = _blas_limit(options.blas_threads)
        if limit is not None:
            with limit:
                return _bundle_adjust(problem, options)
    return _bundle_adjust(problem, options)


def _sorted_by_image(problem: BAProblem) -> BAProblem:
    """A shallow copy whose observations are sorted by image (each image's observations
    contiguous: per-image BLAS products, slices instead of masks)."""
    oi = problem.obs_image
    if oi.size == 0 or np.all(oi[1:] >= oi[:-1]):
        return problem
    order = np.argsort(oi, kind="stable")
    work = copy.copy(problem)
    work.obs_image, work.obs_point, work.obs_uv = oi[order], problem.obs_point[order], problem.obs_uv[order]
    return work


def _bundle_adjust(problem: BAProblem, options: BAOptions) -> BAResult:
    t0 = time.perf_counter()
    work = _sorted_by_image(problem)
    layout = _Layout(work, options.gauge)
    ev = _Evaluator(work, layout, options)
    backend = _select_backend(options, work)
    if backend == "torch":
        from recon.ba._torch import TorchSolver

        solver = TorchSolver(layout, work, options)
    else:
        counts = np.bincount(work.obs_point, minlength=work.num_points)
        n_pairs = int(np.sum(counts * (counts - 1) // 2))
        if n_pairs * (48 * layout.L + 40) <= _NumpySolver.MAX_PAIR_BYTES:
            solver = _NumpySolver(layout, work, options, _PairStructure(work, layout))
        else:
            solver = _SparseProductSolver(layout, work, options)
    trivial = options.loss == "trivial"

    state = _State(list(work.cameras), work.rotations.copy(), work.translations.copy(), work.points.copy())
    res, valid, Jc, Jx = ev.residuals(state, need_jac=True)
    cost, drho = ev.cost(res)
    initial_cost = cost
    history = [cost]
    radius = options.initial_trust_region_radius
    nu = 2.0
    it = successful = 0
    termination = "max_iterations"
    need_build = True
    any_fixed_pt = bool(work.point_fixed.any())
    free_pts = ~work.point_fixed if any_fixed_pt else slice(None)
    op = work.obs_point
    speculate = True  # evaluate the Jacobian with the trial residuals (most steps are accepted)
    while True:
        if need_build:
            sysm = _build_system(Jc, Jx, res, drho, layout, work, trivial)
            solver.prepare(sysm)
            gmax = max(np.abs(sysm.gc[layout.free]).max(initial=0.0), np.abs(sysm.gp[free_pts]).max(initial=0.0))
            if gmax <= options.gradient_tolerance:
                termination = "gradient_tolerance"
                break
            need_build = False
            xnorm = np.sqrt(np.sum(state.translations ** 2) + np.sum(state.points ** 2)
                            + sum(float(np.sum(c.params ** 2)) for c in state.cameras))
        if it >= options.max_iterations:
            break
        it += 1
        lam = 1.0 / radius
        dc, dp = solver.solve(lam)
        dc = np.where(layout.free, dc, 0.0)
        if any_fixed_pt:
            dp[work.point_fixed] = 0.0
        # model decrease of the (IRLS-weighted) linearisation
        dcg, dpg = dc[layout.idx_T], np.ascontiguousarray(dp[op].T)  # [L, M], [3, M]
        jj = 0.0
        for k in range(2):
            Jdx = np.einsum("lm,lm->m", sysm.Jcw[:, k].T, dcg)
            Jdx += np.einsum("cm,cm->m", sysm.JxT[k], dpg)
            jj += Jdx @ Jdx
        pred = -(sysm.gc @ dc + np.sum(sysm.gp * dp) + 0.5 * jj)
        dnorm = np.sqrt(dc @ dc + np.sum(dp * dp))
        if dnorm <= options.parameter_tolerance * (xnorm + options.parameter_tolerance):
            termination = "parameter_tolerance"
            break
        # no Jacobian with a step that will likely meet the function tolerance (the last one)
        speculate = speculate and pred > 2 * options.function_tolerance * cost
        try:
            new_state = _apply_step(state, layout, dc, dp)
            trial = ev.residuals(new_state, need_jac=speculate)
            new_cost, new_drho = ev.cost(trial[0])
        except ValueError:  # e.g. a non-positive focal length: reject the step
            new_cost = np.inf
        actual = cost - new_cost
        rho = actual / pred if pred > 0 else -1.0
        if options.verbose:
            print(f"  ba it {it:3d} cost {cost:.6e} -> {new_cost:.6e} rho {rho:+.3f} radius {radius:.2e}",
                  file=sys.stderr)
        if np.isfinite(new_cost) and rho > 1e-3:
            successful += 1
            state = new_state
            radius = radius / max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            radius = min(radius, 1e16)
            nu = 2.0
            history.append(new_cost)
            old_cost, cost = cost, new_cost
            if abs(actual) <= options.function_tolerance * old_cost:
                termination = "function_tolerance"
                break
            if trial[2] is not None:
                (res, valid, Jc, Jx), drho = trial, new_drho
            else:
                res, valid, Jc, Jx = ev.residuals(state, need_jac=True)
                _, drho = ev.cost(res)
            need_build = True
            speculate = True
        else:
            speculate = False
            radius = radius / nu
            nu *= 2.0
            if radius < 1e-32:
                termination = "no_progress"
                break
    out = problem.copy()
    out.cameras = list(state.cameras)
    out.rotations, out.translations, out.points = state.rotations, state.translations, state.points
    return BAResult(out, initial_cost, cost, it, successful, termination,
                    time.perf_counter() - t0, solver.name, history)
