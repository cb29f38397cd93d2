"""Bundle adjustment of our own: sparse Levenberg-Marquardt with a Schur complement on the
points, robust losses, fixed/free intrinsics, gauge fixing; NumPy/SciPy on CPU and PyTorch on
CUDA with the same API; a reader/writer for Bundle Adjustment in the Large (BAL) files; and a
reference run of pycolmap's Ceres BA on the same objective for validation.
"""

from recon.ba.job import AdjustModelOptions, AdjustModelResult, adjust_model
from recon.ba.problem import (
    BAProblem,
    ProblemIndex,
    problem_from_reconstruction,
    update_reconstruction,
)
from recon.ba.solver import BAOptions, BAResult, bundle_adjust, evaluate_cost, loss_rho

__all__ = [
    "AdjustModelOptions",
    "AdjustModelResult",
    "BAOptions",
    "BAProblem",
    "BAResult",
    "ProblemIndex",
    "adjust_model",
    "bundle_adjust",
    "evaluate_cost",
    "loss_rho",
    "problem_from_reconstruction",
    "update_reconstruction",
]
