"""recon.ba on a pycolmap model: the one home of "bundle-adjust this pycolmap.Reconstruction with
our BA" (the SfM pipeline's final BA, the partitioned mapper's global refinement)."""

from __future__ import annotations

__all__ = ["adjust_pycolmap"]


def adjust_pycolmap(prec, *, loss: str = "huber", refine_focal: bool = True, refine_extra: bool = True,
                    max_iterations: int = 25, function_tolerance: float = 1e-6):
    """Bundle-adjust the pycolmap model ``prec`` with recon.ba -> (refined pycolmap model, the
    recon.ba result). Point ids and colours are kept. The defaults are a polish after a mapper's
    own global BA: stopped at Ceres' default relative function tolerance (1e-6) rather than
    crawling along the weak directions of the problem."""
    from recon.ba import BAOptions, bundle_adjust, problem_from_reconstruction, update_reconstruction
    from recon.sfm._pycolmap import from_pycolmap, to_pycolmap

    rec = from_pycolmap(prec)
    problem, index = problem_from_reconstruction(rec, refine_focal=refine_focal, refine_extra=refine_extra)
    res = bundle_adjust(problem, BAOptions(loss=loss, max_iterations=max_iterations,
                                           function_tolerance=function_tolerance))
    update_reconstruction(rec, res.problem, index)
    out = to_pycolmap(rec)
    for pid, p in prec.points3D.items():  # keep the mapper model's colours
        if out.exists_point3D(pid):
            out.point3D(pid).color = p.color
    return out, res
