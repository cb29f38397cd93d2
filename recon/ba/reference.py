"""Ceres bundle adjustment through pycolmap, set up to minimise exactly our objective.

Used to validate :func:`recon.ba.bundle_adjust` (tests, bench/bench_ba.py): same residuals (both
sides see the same pixels: the 0.5 pixel shift cancels in projected - observed), same loss and
scale, same refined parameters (focal / principal point / extra per camera, points, poses), same
fixed poses and a gauge fix (COLMAP's TWO_CAMS_FROM_WORLD) that removes only the 7 gauge DOF, so
the minimum cost is identical whichever gauge each side picks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from recon.scene import Reconstruction

__all__ = ["CeresResult", "ceres_bundle_adjust"]


@dataclass
class CeresResult:
    reconstruction: Reconstruction
    initial_cost: float
    final_cost: float
    iterations: int
    time_s: float  # Ceres' own solve time (setup excluded)
    wall_s: float  # conversion + setup + solve
    termination: str


def ceres_bundle_adjust(rec: Reconstruction, *, loss: str = "trivial", loss_scale: float = 1.0,
                        refine_focal: bool = True, refine_principal_point: bool = False,
                        refine_extra: bool = True, fixed_image_ids=(), max_iterations: int = 100,
                        function_tolerance: float = 1e-10, gradient_tolerance: float = 1e-10,
                        parameter_tolerance: float = 1e-10, num_threads: int = -1) -> CeresResult:
    """Run pycolmap's Ceres BA on a copy of ``rec`` and return the refined copy and the costs."""
    import pycolmap

    from recon.sfm._pycolmap import from_pycolmap, to_pycolmap

    t_wall = time.perf_counter()
    prec = to_pycolmap(rec)
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_focal_length = refine_focal
    opts.refine_principal_point = refine_principal_point
    opts.refine_extra_params = refine_extra
    opts.print_summary = False
    c = opts.ceres
    c.loss_function_type = {"trivial": pycolmap.LossFunctionType.TRIVIAL,
                            "huber": pycolmap.LossFunctionType.HUBER,
                            "cauchy": pycolmap.LossFunctionType.CAUCHY,
                            "soft_l1": pycolmap.LossFunctionType.SOFT_L1}[loss]
    c.loss_function_scale = float(loss_scale)
    s = c.solver_options
    s.max_num_iterations = int(max_iterations)
    s.function_tolerance = function_tolerance
    s.gradient_tolerance = gradient_tolerance
    s.parameter_tolerance = parameter_tolerance
    s.num_threads = num_threads
    cfg = pycolmap.BundleAdjustmentConfig()
    for iid in prec.reg_image_ids():
        cfg.add_image(iid)
    for iid in fixed_image_ids:
        cfg.set_constant_rig_from_world_pose(prec.image(iid).frame_id)
    cfg.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    adjuster = pycolmap.create_default_bundle_adjuster(opts, cfg, prec)
    t0 = time.perf_counter()
    summary = adjuster.solve()
    solve_s = time.perf_counter() - t0
    cs = summary.ceres_summary if hasattr(summary, "ceres_summary") else None
    out = from_pycolmap(prec)
    wall = time.perf_counter() - t_wall
    if cs is not None:
        return CeresResult(out, float(cs.initial_cost), float(cs.final_cost),
                           int(cs.num_successful_steps + cs.num_unsuccessful_steps), solve_s, wall,
                           str(summary.termination_type))
    return CeresResult(out, float("nan"), float("nan"), -1, solve_s, wall, str(summary.termination_type))
