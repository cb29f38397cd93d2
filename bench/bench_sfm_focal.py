"""How well do the photos themselves pin the focal length? A profile-likelihood check on a
reconstruction, against a reference focal length (by default sceaux-castle's K.txt, 2905.88 px).

    PYTHONPATH=. python bench/bench_sfm_focal.py [--model OUT/sparse/0] [--reference 2905.88]

Without --model it first runs `recon sfm` (defaults) on ../shared/data/sceaux-castle. Then, for
several camera models, it re-runs our bundle adjustment (least squares, no robust loss) twice on
the same tracks: once with the focal length free (-> f_hat) and once with the focal length held at
the reference value (everything else, distortion and poses and points, re-optimised). With the
per-axis noise sigma estimated from the free fit, delta_chi2 = 2 * (cost_fixed - cost_free) /
sigma^2 says how many "sigmas squared" the data reject the reference by (1 = one standard
deviation; the formal focal standard deviation is printed too). pycolmap's default pipeline is
not re-run here: `bench/bench_sfm.py` prints its focal length side by side with ours.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

MODELS = ("SIMPLE_RADIAL", "RADIAL", "OPENCV")


def _with_model(cam, model: str):
    from calib import Camera

    f, cx, cy = float(np.mean(cam.focal)), *map(float, cam.principal_point)
    k = float(cam.params[3]) if cam.model == "SIMPLE_RADIAL" else 0.0
    params = {"SIMPLE_RADIAL": [f, cx, cy, k], "RADIAL": [f, cx, cy, k, 0.0],
              "OPENCV": [f, f, cx, cy, k, 0.0, 0.0, 0.0]}[model]
    return Camera(model, cam.width, cam.height, params)


def _solve(rec, model: str, focal: float | None):
    from recon.ba import BAOptions, bundle_adjust
    from recon.ba.problem import problem_from_reconstruction

    cam = _with_model(next(iter(rec.cameras.values())), model)
    if focal is not None:
        nf = 1 if cam.spec.single_focal else 2
        p = cam.params.copy()
        p[:nf] = focal
        cam = type(cam)(cam.model, cam.width, cam.height, p)
    for cid in rec.cameras:
        rec.cameras[cid] = cam
    prob, _ = problem_from_reconstruction(rec, refine_focal=focal is None)
    res = bundle_adjust(prob, BAOptions(loss="trivial", max_iterations=200, backend="numpy"))
    return res, prob.num_observations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="COLMAP model folder (default: run recon sfm on sceaux-castle)")
    ap.add_argument("--reference", type=float, default=2905.88, help="reference focal length in pixels")
    args = ap.parse_args()

    from recon.io import read_colmap

    if args.model is None:
        from recon.sfm import SfMConfig, run_sfm

        images = Path(__file__).resolve().parents[2] / "shared" / "data" / "sceaux-castle"
        out = Path(tempfile.mkdtemp(prefix="bench_focal_"))
        run_sfm(images, out, SfMConfig(), progress=False)
        args.model = str(out / "sparse" / "0")
    print(f"model {args.model}; reference focal {args.reference:.2f} px\n")
    print(f"{'camera model':<14} {'f_hat px':>9} {'vs ref %':>8} {'f std px':>8} {'sigma px':>8} "
          f"{'RMS px':>7} {'delta_chi2 at ref':>17} {'RMS at ref':>10}")
    for model in MODELS:
        free, m = _solve(read_colmap(args.model), model, None)
        fixed, _ = _solve(read_colmap(args.model), model, args.reference)
        f_hat = float(np.mean(free.problem.cameras[0].focal))
        sigma2 = 2 * free.final_cost / (2 * m)  # per-axis residual variance
        dchi2 = 2 * (fixed.final_cost - free.final_cost) / sigma2
        # the profile is quadratic near the optimum: dchi2(f) = ((f - f_hat) / std)^2
        std = abs(args.reference - f_hat) / np.sqrt(max(dchi2, 1e-12))
        print(f"{model:<14} {f_hat:>9.1f} {100 * (f_hat / args.reference - 1):>+8.2f} {std:>8.2f} "
              f"{np.sqrt(sigma2):>8.3f} {np.sqrt(2 * free.final_cost / m):>7.3f} {dchi2:>17.0f} "
              f"{np.sqrt(2 * fixed.final_cost / m):>10.3f}")


if __name__ == "__main__":
    main()
