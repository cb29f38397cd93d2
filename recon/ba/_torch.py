"""PyTorch linear-solver backend of :func:`recon.ba.bundle_adjust` (used on CUDA).

The reduced camera system S dc = b is never formed: preconditioned conjugate gradients apply
``S x = H_cc x - W V^-1 W^T x`` as batched per-observation products (gather, bmm, index_add_),
the implicit-Schur scheme of Agarwal et al. 2010 ("iterative Schur"). The preconditioner is
block-Jacobi: the exact 6x6 pose blocks of S (one observation per (image, point), so their
Schur correction is a per-observation sum) and the diagonal for intrinsics. Runs in float64.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: the solver imports this module, not the other way round
    from recon.ba.solver import BAOptions, _Layout, _System

__all__ = ["TorchSolver"]


class TorchSolver:
    name = "torch"

    def __init__(self, layout: _Layout, problem, options: BAOptions):
        import torch

        self.torch = torch
        dev = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(dev)
        self.options = options
        self.layout = layout
        t = lambda a, dt=torch.float64: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=self.device)
        self.t = t
        self.idx = t(layout.idx, torch.int64)  # [M, L]
        self.op = t(problem.obs_point, torch.int64)  # [M]
        self.oi = t(problem.obs_image, torch.int64)
        self.N = problem.num_points
        self.I = problem.num_images
        self.Dc = layout.Dc
        self.free = t(layout.free.astype(np.float64))
        self.point_fixed = t(problem.point_fixed, torch.bool)

    def prepare(self, sysm: _System):
        torch = self.torch
        t = self.t
        self.Jc = t(sysm.Jcw)  # [M, 2, L]
        self.Jx = t(sysm.Jxw)  # [M, 2, 3]
        self.gc = t(sysm.gc)
        self.gp = t(sysm.gp)
        self.V = t(sysm.V)
        # diag of H_cc
        hd = torch.zeros(self.Dc, dtype=torch.float64, device=self.device)
        hd.index_add_(0, self.idx.reshape(-1), (self.Jc * self.Jc).sum(1).reshape(-1))
        self.hdiag = hd
        # per-observation blocks reused by the preconditioner
        Jp = self.Jc[:, :, :6]
        self.Upose = torch.zeros(self.I, 6, 6, dtype=torch.float64, device=self.device)
        self.Upose.index_add_(0, self.oi, Jp.transpose(1, 2) @ Jp)
        self.Wobs = self.Jc.transpose(1, 2) @ self.Jx  # [M, L, 3]

    def _gather_c(self, x):  # x [Dc] -> [M, L]
        return x[self.idx]

    def _scatter_c(self, v):  # v [M, L] -> [Dc]
        out = self.torch.zeros(self.Dc, dtype=v.dtype, device=self.device)
        out.index_add_(0, self.idx.reshape(-1), v.reshape(-1))
        return out

    def _scatter_p(self, v):  # v [M, 3] -> [N, 3]
        out = self.torch.zeros(self.N, 3, dtype=v.dtype, device=self.device)
        out.index_add_(0, self.op, v)
        return out

    def solve(self, lam: float):
        torch = self.torch
        eye3 = torch.eye(3, dtype=torch.float64, device=self.device)
        dV = torch.clamp(torch.diagonal(self.V, dim1=1, dim2=2), 1e-6, 1e32)
        Vd = self.V + lam * dV[:, :, None] * eye3
        Vd[self.point_fixed] = eye3
        Vinv, info = torch.linalg.inv_ex(Vd)
        bad = info != 0
        if bool(bad.any()):  # exactly singular blocks (a point seen once): pseudo-inverse, as numpy
            Vinv[bad] = torch.linalg.pinv(Vd[bad], hermitian=True)
        dfix = 1.0 - self.free
        dc_diag = lam * torch.clamp(self.hdiag, 1e-6, 1e32) + dfix

        Jc, Jx, op = self.Jc, self.Jx, self.op

        def W_T(x):  # [Dc] -> [N, 3]:  W^T x
            z = (Jc @ self._gather_c(x)[:, :, None])[:, :, 0]  # [M, 2]
            return self._scatter_p((Jx.transpose(1, 2) @ z[:, :, None])[:, :, 0])

        def W_(y):  # [N, 3] -> [Dc]:  W y
            q = (Jx @ y[op][:, :, None])[:, :, 0]  # [M, 2]
            return self._scatter_c((Jc.transpose(1, 2) @ q[:, :, None])[:, :, 0])

        def S_mv(x):
            z = (Jc @ self._gather_c(x)[:, :, None])[:, :, 0]
            hx = self._scatter_c((Jc.transpose(1, 2) @ z[:, :, None])[:, :, 0]) + dc_diag * x
            u = self._scatter_p((Jx.transpose(1, 2) @ z[:, :, None])[:, :, 0])
            v = (Vinv @ u[:, :, None])[:, :, 0]
            return hx - W_(v)

        # block-Jacobi preconditioner: exact pose blocks of S, diagonal elsewhere
        Wp = self.Wobs[:, :6, :]  # [M, 6, 3]
        corr = Wp @ Vinv[op] @ Wp.transpose(1, 2)  # [M, 6, 6]
        Bpose = self.Upose.clone()
        Bpose.index_add_(0, self.oi, -corr)
        pose_diag = dc_diag[: 6 * self.I].reshape(self.I, 6)
        Bpose = Bpose + torch.diag_embed(pose_diag)
        Bpose_inv = torch.linalg.inv(Bpose)
        Wl = self.Wobs
        corr_d = torch.einsum("mlk,mkj,mlj->ml", Wl, Vinv[op], Wl)  # [M, L] per-obs diag correction
        sdiag = self.hdiag + dc_diag - self._scatter_c(corr_d)
        sdiag = torch.where(sdiag > 0, sdiag, self.hdiag + dc_diag)

        def precond(r):
            z = r / sdiag
            rp = r[: 6 * self.I].reshape(self.I, 6, 1)
            z = z.clone()
            z[: 6 * self.I] = (Bpose_inv @ rp).reshape(-1)
            return z

        b = -self.gc + W_((Vinv @ self.gp[:, :, None])[:, :, 0])
        x = torch.zeros_like(b)
        r = b.clone()
        z = precond(r)
        p = z.clone()
        rz = torch.dot(r, z)
        bnorm = torch.linalg.norm(b)
        tol2 = (self.options.pcg_tolerance * float(bnorm)) ** 2
        for k in range(self.options.pcg_max_iterations):
            # test the residual every 10 iterations: each test is a device -> host sync
            if k % 10 == 0 and float(torch.dot(r, r)) <= tol2:
                break
            Ap = S_mv(p)
            pAp = torch.dot(p, Ap)
            if float(pAp) <= 0:
                break
            alpha = rz / pAp
            x = x + alpha * p
            r = r - alpha * Ap
            z = precond(r)
            rz_new = torch.dot(r, z)
            p = z + (rz_new / rz) * p
            rz = rz_new
        dp = -(Vinv @ (self.gp + W_T(x))[:, :, None])[:, :, 0]
        return x.cpu().numpy(), dp.cpu().numpy()
