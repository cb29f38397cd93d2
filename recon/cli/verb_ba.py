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


def _read(path):
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        try:
            from recon.io import read_colmap  # type: ignore[attr-defined]

            return "colmap", read_colmap(p)
        except ImportError:
            import pycolmap

            from recon.sfm._pycolmap import from_pycolmap

            if not any((p / f).exists() for f in ("images.bin", "images.txt")):
                raise ValueError(f"MODEL: {p} holds no COLMAP model (cameras/images/points3D .bin or .txt)") from None
            return "colmap", from_pycolmap(pycolmap.Reconstruction(str(p)))
    if p.is_file():
        from recon.ba.bal import read_bal

        return "bal", read_bal(p)
    raise ValueError(f"MODEL: {p} does not exist")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import numpy as np

    from recon.ba import (
        BAOptions,
        bundle_adjust,
        problem_from_reconstruction,
        update_reconstruction,
    )

    kind, data = _read(args.model)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if kind == "colmap":
        rec = data
        problem, index = problem_from_reconstruction(
            rec, refine_focal=not args.fix_intrinsics, refine_extra=not args.fix_intrinsics,
            refine_principal_point=args.refine_principal_point and not args.fix_intrinsics)
    else:
        problem = data
        if args.fix_intrinsics:
            problem.intrinsics_free = [np.zeros_like(m) for m in problem.intrinsics_free]
    print(f"recon ba: {problem.num_images} images, {problem.num_points} points, "
          f"{problem.num_observations} observations", file=sys.stderr)
    opts = BAOptions(loss=args.loss, loss_scale=args.loss_scale, max_iterations=args.max_iterations,
                     backend=args.backend, linear_solver=args.linear_solver, verbose=args.verbose)
    res = bundle_adjust(problem, opts)
    n = max(problem.num_observations, 1)
    report = {"input": str(args.model), "format": kind, "images": problem.num_images,
              "points3D": problem.num_points, "observations": problem.num_observations,
              "loss": args.loss, "loss_scale": args.loss_scale, "backend": res.backend,
              "initial_cost": res.initial_cost, "final_cost": res.final_cost,
              "initial_rms_px": float(np.sqrt(2 * res.initial_cost / n)) if args.loss == "trivial" else None,
              "final_rms_px": float(np.sqrt(2 * res.final_cost / n)) if args.loss == "trivial" else None,
              "iterations": res.iterations, "successful_steps": res.successful_steps,
              "termination": res.termination, "converged": res.converged, "seconds": round(res.time_s, 3)}
    if kind == "colmap":
        update_reconstruction(rec, res.problem, index)
        try:
            from recon.io import write_colmap  # type: ignore[attr-defined]

            write_colmap(rec, out)
        except ImportError:
            from recon.sfm._pycolmap import to_pycolmap

            to_pycolmap(rec).write_binary(str(out))
    else:
        from recon.ba.bal import write_bal

        write_bal(out / "problem.bal", res.problem)
    from recon.io.report import write_report

    write_report(out / "report.json", report, indent=2)
    print(f"recon ba: cost {res.initial_cost:.6g} -> {res.final_cost:.6g} in {res.iterations} iterations "
          f"({res.termination}, {res.time_s:.2f} s, {res.backend}); wrote {out}")
    return 0
