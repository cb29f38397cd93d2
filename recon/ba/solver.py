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

* ``numpy`` backend: explicit S assembled with scipy.sparse; dense Cholesky (small), sparse LU
  (SuperLU, larger) or Jacobi-preconditioned CG;
* ``torch`` backend (used automatically on CUDA): S is never formed; preconditioned conjugate
  gradients with implicit products ``S x = H_cc x - W V^-1 W^T x`` over batched per-observation
  blocks and a block-Jacobi preconditioner (6x6 pose blocks of S, exact).

Residuals and Jacobians are evaluated with NumPy (the calib camera models, the single source of
truth for projection); only the linear algebra runs on the torch device.

Gauge (``BAOptions.gauge``): ``"two_cams"`` (default; COLMAP's TWO_CAMS_FROM_WORLD) holds the
pose of the first free image fixed (6 DOF) and, for the second free image b, the component
k = argmax |t_ba| of its translation (t_ba: translation of cam_b_from_cam_a), which fixes the
scale since t_b = R_ba t_a + s t_ba under the remaining similarity gauge. With two or more
user-fixed poses nothing is added; ``"none"`` adds nothing (the user's fixed poses/points must
then pin the gauge, or LM damping keeps the singular directions still).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from calib import matrix_from_axis_angle, skew
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
    """Camera-side parameter vector: [6 per image (dw, dt)] + [P_c per camera]."""

    def __init__(self, problem: BAProblem, gauge: str):
        I = problem.num_images
        self.I = I
        self.n_intr = np.array([c.spec.num_params for c in problem.cameras], dtype=np.int64)
        self.intr_off = 6 * I + np.concatenate([[0], np.cumsum(self.n_intr)[:-1]]).astype(np.int64)
        self.Dc = int(6 * I + self.n_intr.sum())
        self.L = 6 + int(self.n_intr.max(initial=0))
        pose_free = np.repeat(~problem.pose_fixed[:, None], 6, axis=1)
        if gauge == "two_cams":
            self._fix_gauge(problem, pose_free)
        free = np.concatenate([pose_free.ravel()] + [m for m in problem.intrinsics_free])
        self.free = free.astype(bool)
        # local columns of each observation
        M = problem.num_observations
        cam = problem.image_camera[problem.obs_image]
        idx = np.zeros((M, self.L), dtype=np.int64)
        idx[:, :6] = 6 * problem.obs_image[:, None] + np.arange(6)
        valid_local = np.zeros((M, self.L), dtype=bool)
        valid_local[:, :6] = True
        for c in range(len(problem.cameras)):
            sel = cam == c
            P = int(self.n_intr[c])
            idx[sel, 6:6 + P] = self.intr_off[c] + np.arange(P)
            valid_local[sel, 6:6 + P] = True
        self.idx = idx
        self.local_free = valid_local & self.free[idx]
        self.obs_cam = cam

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

class _Evaluator:
    def __init__(self, problem: BAProblem, layout: _Layout, options: BAOptions):
        self.p = problem
        self.layout = layout
        self.options = options
        self.cam_obs = [np.nonzero(layout.obs_cam == c)[0] for c in range(len(problem.cameras))]

    def residuals(self, state: BAProblem, need_jac: bool):
        p = state
        oi, op = p.obs_image, p.obs_point
        R = p.rotations[oi]
        RX = np.einsum("mij,mj->mi", R, p.points[op])
        Xc = RX + p.translations[oi]
        valid = Xc[:, 2] > 1e-12
        M = p.num_observations
        res = np.zeros((M, 2))
        Jc = np.zeros((M, 2, self.layout.L)) if need_jac else None
        Jx = np.zeros((M, 2, 3)) if need_jac else None
        for c, obs in enumerate(self.cam_obs):
            sel = obs[valid[obs]]
            if sel.size == 0:
                continue
            cam = p.cameras[c]
            if need_jac:
                uv, d_pt, d_par, _ = cam.project_jacobians(Xc[sel])
                P = d_par.shape[2]
                Jc[sel, :, 0:3] = -d_pt @ skew(RX[sel])
                Jc[sel, :, 3:6] = d_pt
                Jc[sel, :, 6:6 + P] = d_par
                Jx[sel] = d_pt @ R[sel]
            else:
                uv, _ = cam.project(Xc[sel])
            res[sel] = uv - p.obs_uv[sel]
        if need_jac:
            Jc *= self.layout.local_free[:, None, :]
            Jx *= (~p.point_fixed[op])[:, None, None]
        return res, valid, Jc, Jx

    def cost(self, res: np.ndarray) -> tuple[float, np.ndarray]:
        s = np.einsum("mi,mi->m", res, res)
        rho, drho = loss_rho(self.options.loss, self.options.loss_scale, s)
        return 0.5 * float(rho.sum()), drho


def evaluate_cost(problem: BAProblem, options: BAOptions | None = None) -> float:
    """Ceres-convention cost 1/2 sum rho(|r|^2) of a problem (gauge does not matter)."""
    options = options or BAOptions()
    ev = _Evaluator(problem, _Layout(problem, "none"), options)
    res, _, _, _ = ev.residuals(problem, need_jac=False)
    return ev.cost(res)[0]


def _apply_step(p: BAProblem, layout: _Layout, dc: np.ndarray, dp: np.ndarray) -> BAProblem:
    q = p.copy()
    I = p.num_images
    d = dc[:6 * I].reshape(I, 6)
    q.rotations = matrix_from_axis_angle(d[:, :3]) @ p.rotations
    q.translations = p.translations + d[:, 3:]
    cams = []
    for c, cam in enumerate(p.cameras):
        o, n = layout.intr_off[c], layout.n_intr[c]
        step = dc[o:o + n]
        cams.append(cam if not np.any(step) else cam.with_params(cam.params + step))
    q.cameras = cams
    q.points = p.points + dp
    return q


# =========================================================================================
# Normal equations (shared bookkeeping) and the two linear-solver backends
# =========================================================================================

@dataclass
class _System:
    Jcw: np.ndarray  # [M, 2, L] sqrt(w)-weighted, masked
    Jxw: np.ndarray  # [M, 2, 3]
    rw: np.ndarray  # [M, 2]
    gc: np.ndarray  # [Dc]
    gp: np.ndarray  # [N, 3]
    V: np.ndarray  # [N, 3, 3] undamped point blocks


def _outer2(A, B):
    """sum_k A[:, k, :, None] * B[:, k, None, :] for k in {0, 1}: per-observation J^T J blocks
    (explicit broadcasting: several times faster than einsum for these small trailing dims)."""
    return A[:, 0, :, None] * B[:, 0, None, :] + A[:, 1, :, None] * B[:, 1, None, :]


def _point_blocks(Jxw, rw, op, N):
    VV = _outer2(Jxw, Jxw).reshape(-1, 9)
    V = np.stack([np.bincount(op, weights=VV[:, k], minlength=N) for k in range(9)], 1).reshape(N, 3, 3)
    gg = Jxw[:, 0] * rw[:, 0:1] + Jxw[:, 1] * rw[:, 1:2]
    gp = np.stack([np.bincount(op, weights=gg[:, k], minlength=N) for k in range(3)], 1)
    return V, gp


def _build_system(Jc, Jx, res, drho, layout: _Layout, problem: BAProblem) -> _System:
    sw = np.sqrt(drho)
    Jcw = Jc * sw[:, None, None]
    Jxw = Jx * sw[:, None, None]
    rw = res * sw[:, None]
    gcl = Jcw[:, 0] * rw[:, 0:1] + Jcw[:, 1] * rw[:, 1:2]
    gc = np.bincount(layout.idx.ravel(), weights=gcl.ravel(), minlength=layout.Dc)
    V, gp = _point_blocks(Jxw, rw, problem.obs_point, problem.num_points)
    return _System(Jcw, Jxw, rw, gc, gp, V)


def _damped_point_inverse(V, lam, point_fixed):
    d = np.clip(np.einsum("nii->ni", V), 1e-6, 1e32)
    Vd = V + lam * d[:, :, None] * np.eye(3)
    Vd[point_fixed] = np.eye(3)
    return np.linalg.inv(Vd)


class _NumpySolver:
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
        self.obs_point = problem.obs_point
        self.point_fixed = problem.point_fixed
        ls = options.linear_solver
        self.method = ls if ls != "auto" else ("dense" if layout.Dc <= 3000 else "sparse")

    def prepare(self, sysm: _System):
        sp = self.sp
        M2 = sysm.rw.size
        Dc, N = self.layout.Dc, self.N
        M, L = sysm.Jcw.shape[0], self.layout.L
        self.dense_w = self.method == "dense" and Dc * 3 * N <= 1.5e7 and M * L * L <= 6e7
        if self.dense_w:
            # small camera side: H_cc and W as dense arrays (BLAS products, no sparse matmul)
            idx = self.layout.idx
            blocks = _outer2(sysm.Jcw, sysm.Jcw)
            flat = (idx[:, :, None] * Dc + idx[:, None, :]).ravel()
            self.Hcc_d = np.bincount(flat, weights=blocks.ravel(), minlength=Dc * Dc).reshape(Dc, Dc)
            wob = _outer2(sysm.Jcw, sysm.Jxw)  # [M, L, 3]
            flat = (idx[:, :, None] * (3 * N) + 3 * self.obs_point[:, None, None] + np.arange(3)).ravel()
            self.W_d = np.bincount(flat, weights=wob.ravel(), minlength=Dc * 3 * N).reshape(Dc, 3 * N)
            self.hdiag = np.diagonal(self.Hcc_d).copy()
            self.sysm = sysm
            return
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
        dfix = (~self.layout.free).astype(float)
        diag = lam * np.clip(self.hdiag, 1e-6, 1e32) + dfix
        if self.dense_w:
            Dc = self.layout.Dc
            WV = np.matmul(self.W_d.reshape(Dc, N, 1, 3), Vinv).reshape(Dc, 3 * N)
            S = self.Hcc_d - WV @ self.W_d.T
            S[np.diag_indices(Dc)] += diag
            b = -s.gc + WV @ s.gp.ravel()
            dc = self._solve_reduced(S, b)
            dp = -np.einsum("nij,nj->ni", Vinv, s.gp + (self.W_d.T @ dc).reshape(N, 3))
            return dc, dp
        Vinv_sp = sp.bsr_matrix((Vinv, np.arange(N), np.arange(N + 1)), shape=(3 * N, 3 * N)).tocsr()
        WV = self.W @ Vinv_sp
        S = self.Hcc - WV @ self.W.T + sp.diags(diag)
        b = -s.gc + WV @ s.gp.ravel()
        dc = self._solve_reduced(S, b)
        dp = -np.einsum("nij,nj->ni", Vinv, s.gp + (self.W.T @ dc).reshape(N, 3))
        return dc, dp

    def _solve_reduced(self, S, b):
        import scipy.linalg as sla
        import scipy.sparse.linalg as spla

        if self.method == "dense":
            Sd = S if isinstance(S, np.ndarray) else S.toarray()
            try:
                return sla.cho_solve(sla.cho_factor(Sd, lower=True, check_finite=False), b, check_finite=False)
            except np.linalg.LinAlgError:
                return np.linalg.lstsq(Sd, b, rcond=None)[0]
        if self.method == "sparse":
            return spla.splu(S.tocsc(), permc_spec="MMD_AT_PLUS_A").solve(b)
        d = S.diagonal()
        pre = spla.LinearOperator(S.shape, matvec=lambda x: x / d)
        x, _ = spla.cg(S, b, rtol=self.options.pcg_tolerance, maxiter=self.options.pcg_max_iterations, M=pre)
        return x


# =========================================================================================
# Levenberg-Marquardt driver
# =========================================================================================

def _select_backend(options: BAOptions, problem: BAProblem) -> str:
    if options.backend != "auto":
        return options.backend
    if problem.num_observations < 20000 and "torch" not in sys.modules:
        return "numpy"  # small: not worth importing torch (seconds) to look for CUDA
    try:
        import torch

        return "torch" if torch.cuda.is_available() else "numpy"
    except ImportError:
        return "numpy"


def bundle_adjust(problem: BAProblem, options: BAOptions | None = None) -> BAResult:
    """Minimise 1/2 sum rho(|project - observed|^2) over the free poses, intrinsics and points.

    Returns a :class:`BAResult` holding a refined copy of ``problem`` (the input is unchanged).
    """
    if not isinstance(problem, BAProblem):
        raise TypeError(f"problem: expected recon.ba.BAProblem, got {type(problem).__name__}")
    options = options or BAOptions()
    if options.blas_threads is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            with threadpool_limits(limits=options.blas_threads, user_api="blas"):
                return _bundle_adjust(problem, options)
    return _bundle_adjust(problem, options)


def _bundle_adjust(problem: BAProblem, options: BAOptions) -> BAResult:
    t0 = time.perf_counter()
    layout = _Layout(problem, options.gauge)
    ev = _Evaluator(problem, layout, options)
    backend = _select_backend(options, problem)
    if backend == "torch":
        from recon.ba._torch import TorchSolver

        solver = TorchSolver(layout, problem, options)
    else:
        solver = _NumpySolver(layout, problem, options)

    state = problem.copy()
    res, valid, Jc, Jx = ev.residuals(state, need_jac=True)
    cost, drho = ev.cost(res)
    initial_cost = cost
    history = [cost]
    radius = options.initial_trust_region_radius
    nu = 2.0
    it = successful = 0
    termination = "max_iterations"
    need_build = True
    free_pts = ~problem.point_fixed
    while True:
        if need_build:
            sysm = _build_system(Jc, Jx, res, drho, layout, state)
            solver.prepare(sysm)
            gmax = max(np.abs(sysm.gc[layout.free]).max(initial=0.0), np.abs(sysm.gp[free_pts]).max(initial=0.0))
            if gmax <= options.gradient_tolerance:
                termination = "gradient_tolerance"
                break
            need_build = False
        if it >= options.max_iterations:
            break
        it += 1
        lam = 1.0 / radius
        dc, dp = solver.solve(lam)
        dc = np.where(layout.free, dc, 0.0)
        dp[problem.point_fixed] = 0.0
        # model decrease of the (IRLS-weighted) linearisation
        Jdx = np.einsum("mkl,ml->mk", sysm.Jcw, dc[layout.idx]) + np.einsum("mki,mi->mk", sysm.Jxw, dp[state.obs_point])
        pred = -(sysm.gc @ dc + np.sum(sysm.gp * dp) + 0.5 * np.sum(Jdx * Jdx))
        xnorm = np.sqrt(np.sum(state.translations ** 2) + np.sum(state.points ** 2)
                        + sum(float(np.sum(c.params ** 2)) for c in state.cameras))
        dnorm = np.sqrt(dc @ dc + np.sum(dp * dp))
        if dnorm <= options.parameter_tolerance * (xnorm + options.parameter_tolerance):
            termination = "parameter_tolerance"
            break
        try:
            new_state = _apply_step(state, layout, dc, dp)
            new_res, _, _, _ = ev.residuals(new_state, need_jac=False)
            new_cost, _ = ev.cost(new_res)
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
            res, valid, Jc, Jx = ev.residuals(state, need_jac=True)
            _, drho = ev.cost(res)
            need_build = True
            if abs(actual) <= options.function_tolerance * old_cost:
                termination = "function_tolerance"
                break
        else:
            radius = radius / nu
            nu *= 2.0
            if radius < 1e-32:
                termination = "no_progress"
                break
    return BAResult(state, initial_cost, cost, it, successful, termination,
                    time.perf_counter() - t0, solver.name, history)
