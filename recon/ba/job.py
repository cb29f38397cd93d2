"""`recon ba` as a library function: :func:`adjust_model` refines a COLMAP model or a BAL
problem on disk with :func:`recon.ba.bundle_adjust` and writes the result beside a report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.ba.solver import BAOptions, BAResult

__all__ = ["AdjustModelOptions", "AdjustModelResult", "adjust_model", "read_ba_input"]


@dataclass(frozen=True)
class AdjustModelOptions:
    """Options of :func:`adjust_model` (the flags of `recon ba`).

    fix_intrinsics:          keep every camera's intrinsics fixed
    refine_principal_point:  also refine cx, cy (COLMAP models; ignored with fix_intrinsics)
    solver:                  loss, loss scale (px), iterations, backend, linear solver
    """

    fix_intrinsics: bool = False
    refine_principal_point: bool = False
    solver: BAOptions = field(default_factory=BAOptions)


@dataclass
class AdjustModelResult:
    """What :func:`adjust_model` did: the input's format ("colmap" | "bal"), its size, the
    solver's :class:`BAResult` and the RMS reprojection error (px; least-squares loss only)."""

    input: Path
    output: Path
    format: str
    images: int
    points3D: int
    observations: int
    solve: BAResult
    initial_rms_px: float | None
    final_rms_px: float | None

    def to_json(self) -> dict:
        s = self.solve
        return {"input": str(self.input), "format": self.format, "images": self.images,
                "points3D": self.points3D, "observations": self.observations,
                "backend": s.backend,
                "initial_cost": s.initial_cost, "final_cost": s.final_cost,
                "initial_rms_px": self.initial_rms_px, "final_rms_px": self.final_rms_px,
                "iterations": s.iterations, "successful_steps": s.successful_steps,
                "termination": s.termination, "converged": s.converged, "seconds": round(s.time_s, 3)}


def read_ba_input(path) -> tuple[str, object]:
    """("colmap", recon.scene.Reconstruction) for a COLMAP model folder, ("bal", BAProblem) for a
    BAL file (.txt/.bal, .bz2/.gz). ValueError names a path that holds neither."""
    from recon.io import read_colmap

    p = Path(path)
    if p.is_dir():
        if not any((p / f).exists() for f in ("images.bin", "images.txt")):
            raise ValueError(f"MODEL: {p} holds no COLMAP model (cameras/images/points3D .bin or .txt)")
        return "colmap", read_colmap(p)
    if p.is_file():
        from recon.ba.bal import read_bal

        return "bal", read_bal(p)
    raise ValueError(f"MODEL: {p} does not exist")


def adjust_model(model, output, options: AdjustModelOptions | None = None) -> AdjustModelResult:
    """Bundle-adjust the model at ``model`` and write to the folder ``output``: the refined model in
    its input's format (COLMAP binary in ``output/``, or ``output/problem.bal``) and
    ``output/report.json`` (:meth:`AdjustModelResult.to_json`, recon.io.report)."""
    from recon.ba.problem import problem_from_reconstruction, update_reconstruction
    from recon.ba.solver import bundle_adjust
    from recon.io.report import write_report

    options = options or AdjustModelOptions()
    kind, data = read_ba_input(model)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    fix = options.fix_intrinsics
    if kind == "colmap":
        problem, index = problem_from_reconstruction(
            data, refine_focal=not fix, refine_extra=not fix,
            refine_principal_point=options.refine_principal_point and not fix)
    else:
        problem = data
        if fix:
            problem.intrinsics_free = [np.zeros_like(m) for m in problem.intrinsics_free]
    solve = bundle_adjust(problem, options.solver)
    n = max(problem.num_observations, 1)
    ls = options.solver.loss == "trivial"
    res = AdjustModelResult(Path(model), out, kind, problem.num_images, problem.num_points,
                            problem.num_observations, solve,
                            float(np.sqrt(2 * solve.initial_cost / n)) if ls else None,
                            float(np.sqrt(2 * solve.final_cost / n)) if ls else None)
    if kind == "colmap":
        from recon.io import write_colmap

        update_reconstruction(data, solve.problem, index)
        write_colmap(data, out)
    else:
        from recon.ba.bal import write_bal

        write_bal(out / "problem.bal", solve.problem)
    write_report(out / "report.json", {**res.to_json(), "loss": options.solver.loss,
                                       "loss_scale": options.solver.loss_scale,
                                       "options": {"fix_intrinsics": options.fix_intrinsics,
                                                   "refine_principal_point": options.refine_principal_point}},
                 indent=2)
    return res
