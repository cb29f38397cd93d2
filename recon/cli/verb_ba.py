"""`recon ba`: bundle adjustment of a COLMAP model (or a BAL problem) with recon.ba."""

from __future__ import annotations

import argparse

from recon.cli._style import add_output

NAME = "ba"
HELP = "bundle adjustment of a COLMAP model or BAL problem (our sparse LM; CUDA when available)"
ORDER = 31
DESCRIPTION = """\
Refine cameras, poses and points of a sparse model by minimising the reprojection error with
our sparse Levenberg-Marquardt (Schur complement on the points; NumPy/SciPy on CPU, PyTorch on
CUDA when available). Cost convention as Ceres/COLMAP: 1/2 sum rho(|projected - observed|^2).

MODEL is a COLMAP model folder (cameras/images/points3D .bin or .txt) or a BAL problem file
(.txt/.bal, optionally .bz2/.gz). OUT receives the refined model in the same kind of format
(COLMAP binary in OUT/, or OUT/problem.bal) and OUT/report.json (initial/final cost,
iterations, termination, time, RMS reprojection error before/after).

Examples:
  recon ba out/scene/sparse/0 -o out/scene/ba --loss huber
  recon ba problem-49-7776-pre.txt.bz2 -o out/bal --backend torch
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="COLMAP model folder or BAL problem file")
    add_output(p, "output folder (created)")
    p.add_argument("--loss", choices=("trivial", "huber", "cauchy", "soft_l1"), default="trivial",
                   help="robust loss (default trivial = least squares)")
    p.add_argument("--loss-scale", type=float, default=1.0, help="robust loss scale in pixels (default 1)")
    p.add_argument("--fix-intrinsics", action="store_true", help="keep all camera intrinsics fixed")
    p.add_argument("--refine-principal-point", action="store_true", help="also refine cx, cy")
    p.add_argument("--max-iterations", type=int, default=100, help="LM iterations (default 100)")
    p.add_argument("--backend", choices=("auto", "numpy", "torch"), default="auto",
                   help="auto: torch on CUDA when available, else numpy")
    p.add_argument("--linear-solver", choices=("auto", "dense", "sparse", "pcg"), default="auto",
                   help="reduced camera system solver of the numpy backend")
    p.add_argument("-v", "--verbose", action="store_true", help="print every LM iteration")


def run(args: argparse.Namespace) -> int:
    import sys

    from recon.ba import BAOptions
    from recon.ba.job import AdjustModelOptions, adjust_model

    solver = BAOptions(loss=args.loss, loss_scale=args.loss_scale, max_iterations=args.max_iterations,
                       backend=args.backend, linear_solver=args.linear_solver, verbose=args.verbose)
    options = AdjustModelOptions(fix_intrinsics=args.fix_intrinsics,
                                 refine_principal_point=args.refine_principal_point, solver=solver)
    res = adjust_model(args.model, args.output, options)
    s = res.solve
    print(f"recon ba: {res.images} images, {res.points3D} points, {res.observations} observations",
          file=sys.stderr)
    print(f"recon ba: cost {s.initial_cost:.6g} -> {s.final_cost:.6g} in {s.iterations} iterations "
          f"({s.termination}, {s.time_s:.2f} s, {s.backend}); wrote {res.output}")
    return 0
