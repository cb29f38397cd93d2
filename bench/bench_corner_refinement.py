"""Does recon's cornerSubPix re-refinement of the sector-based (SB) chessboard corners help?

    python bench/bench_corner_refinement.py [--data ../shared/data] [--views 20]

Two arbiters, each printing one table with the SB corners alone ("SB") and SB + cornerSubPix
("SB+subpix", recon's default) side by side:

1. Rendered boards with known corners (recon.synth.boards): 640x480 OPENCV camera, a 9x6 board,
   Gaussian blur (sharp, soft, defocused), image noise and JPEG compression; corner error RMS
   against the truth, and the calibrated fx against the true 520 px.
2. Real photos, where the truth is unknown but the geometry must be consistent: OpenCV's 13
   stereo sample pairs (opencv-stereo-9x6): each camera's left-out reprojection RMS and fx, and
   the rig's left-out rectified vertical disparity (OpenCV's recipe on each corner set): the two
   cameras must agree on every board pose, so corners that are more accurate rectify left-out
   pairs better. With mrcal installed (Debian ``mrcal``), a third table puts recon, OpenCV and
   mrcal (LENSMODEL_OPENCV8) side by side on the same corners: fx and left-out reprojection RMS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def detect(img, board, refine):
    from calib.boards import detect_board
    from calib.calibrate import Observation

    det = detect_board(img, board, refine=refine)
    if not hasattr(det, "corners"):
        return None
    return Observation("", det.corners, det.object_points, det.ids)


def rendered(views: int):
    import cv2

    from calib import Camera
    from calib.boards import BoardSpec
    from calib.calibrate import CalibrationConfig, Observation, calibrate_camera
    from recon.synth.boards import random_board_poses, render_board, true_corners

    board = BoardSpec("chessboard", 9, 6, 0.03)
    cam = Camera("OPENCV", 640, 480, [520, 520, 319.5, 239.5, -0.12, 0.05, 0.0005, -0.0003])
    poses = random_board_poses(board, cam, views, np.random.default_rng(3), max_tilt_deg=40)
    print("rendered boards (truth known): corner error RMS (px) and fx error (true 520 px)")
    print("| capture | SB corner RMS | SB+subpix corner RMS | SB fx | SB+subpix fx |")
    print("|---|---|---|---|---|")
    for label, blur, jpeg in (("sharp (blur 0.5 px), noise 2, JPEG 90", 0.5, 90),
                              ("soft (blur 1.0 px), noise 2, JPEG 80", 1.0, 80),
                              ("defocused (blur 2.0 px), noise 3, JPEG 75", 2.0, 75)):
        rng = np.random.default_rng(7)
        err = {True: [], False: []}
        obs = {True: [], False: []}
        for k, p in enumerate(poses):
            img = render_board(board, cam, p, blur_px=blur, image_noise=2.0 if blur < 2 else 3.0, rng=rng)
            _ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, jpeg])
            img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
            uv, _ = true_corners(board, cam, p)
            for refine in (False, True):
                o = detect(img, board, refine)
                if o is None:
                    continue
                err[refine].append(o.corners - uv[o.ids])
                obs[refine].append(Observation(f"v{k}", o.corners, o.object_points, o.ids))
        row = [label]
        for refine in (False, True):
            e = np.concatenate(err[refine])
            row.append(f"{np.sqrt(np.mean(np.sum(e * e, 1))):.4f} ({len(err[refine])} views)")
        for refine in (False, True):
            res = calibrate_camera(obs[refine], cam.size, CalibrationConfig(model="OPENCV"))
            row.append(f"{res.camera.params[0]:.2f}")
        print("| " + " | ".join(row) + " |")
    print()


def real(data: Path):
    from calib.boards import BoardSpec
    from calib.calibrate import Observation, calibrate_camera, select_model
    from calib.calibrate_images import read_gray
    from calib.stereo import align_symmetric_labels, pair_observations
    from calib.stereo_select import leftout_vertical_disparity, recipe

    d = data / "opencv-stereo-9x6"
    if not d.is_dir():
        print(f"(no {d}: real set skipped)")
        return
    board = BoardSpec("chessboard", 9, 6, 1.0)
    left = sorted(d.glob("left*.jpg"))
    right = sorted(d.glob("right*.jpg"))
    print("real opencv-stereo-9x6 (13 pairs, truth unknown): left-out errors, 5 folds")
    print("| corners | left fx | right fx | left left-out reproj RMS | right left-out reproj RMS | "
          "rig left-out vertical RMS (opencv recipe) | (recon recipe) |")
    print("|---|---|---|---|---|---|---|")
    for refine in (False, True):
        PL, PR = [], []
        for a, b in zip(left, right):
            oa, ob = detect(read_gray(a), board, refine), detect(read_gray(b), board, refine)
            if oa is not None and ob is not None:
                PL.append(Observation(a.name, oa.corners, oa.object_points, oa.ids))
                PR.append(Observation(b.name, ob.corners, ob.object_points, ob.ids))
        size = (640, 480)
        cl = calibrate_camera(PL, size).camera
        cr = calibrate_camera(PR, size).camera
        PR, _ = align_symmetric_labels(PL, PR, cl, cr, 9, 6)
        PL, PR, _ = pair_observations(PL, PR)
        cvl = select_model(PL, size, ("OPENCV",))[0].cv_rms_px
        cvr = select_model(PR, size, ("OPENCV",))[0].cv_rms_px
        v_ocv = leftout_vertical_disparity(PL, PR, size, recipe("opencv")).rms_px
        v_rec = leftout_vertical_disparity(PL, PR, size, recipe("recon")).rms_px
        print(f"| {'SB+subpix' if refine else 'SB'} ({len(PL)} pairs) | {cl.params[0]:.2f} | {cr.params[0]:.2f} | "
              f"{cvl:.4f} | {cvr:.4f} | {v_ocv:.4f} | {v_rec:.4f} |")
    print()


def mrcal_mono(obs, size, board):
    """mrcal LENSMODEL_OPENCV8 on one camera's corners: Camera (FULL_OPENCV), or None without mrcal."""
    from bench_stereo_calib import run_mrcal

    out = run_mrcal([obs], size, board)
    return None if out is None else out[0][0]


def leftout_reprojection(obs, size, fit, folds=5):
    """Reprojection RMS of held-out views (pose re-fitted) with intrinsics ``fit(train)``."""
    from calib.calibrate import refine_cam_from_board

    n = len(obs)
    res = []
    for k in range(folds):
        test = list(range(k, n, folds))
        cam = fit([obs[i] for i in range(n) if i not in test])
        for i in test:
            res.append(refine_cam_from_board(cam, obs[i].object_points, obs[i].corners)[1])
    r = np.concatenate(res)
    return float(np.sqrt(np.mean(np.sum(r * r, 1))))


def peers(data: Path):
    """recon / OpenCV (rational 8-coefficient model, as LENSMODEL_OPENCV8) / mrcal on the same corners."""
    import cv2

    from calib.boards import BoardSpec
    from calib.calibrate import Observation, _camera_from_opencv, calibrate_camera
    from calib.calibrate_images import read_gray

    d = data / "opencv-stereo-9x6"
    if not d.is_dir():
        return
    board = BoardSpec("chessboard", 9, 6, 1.0)
    size = (640, 480)

    def fit_opencv(obs):
        obj = [o.object_points.astype(np.float32) for o in obs]
        img = [o.corners.astype(np.float32) for o in obs]
        _, K, D, _, _ = cv2.calibrateCamera(obj, img, size, None, None, flags=cv2.CALIB_RATIONAL_MODEL)
        return _camera_from_opencv("FULL_OPENCV", size, K, D)

    def fit_recon(obs):
        from calib.calibrate import CalibrationConfig

        return calibrate_camera(obs, size, CalibrationConfig(model="FULL_OPENCV")).camera

    def fit_mrcal(obs):
        return mrcal_mono(obs, size, board)

    print("opencv-stereo-9x6, 8-coefficient model (FULL_OPENCV = LENSMODEL_OPENCV8) on the same corners: "
          "fx (px) and left-out reprojection RMS (px, 5 folds, pose re-fitted)")
    print("| camera | corners | recon fx | recon left-out | OpenCV fx | OpenCV left-out | mrcal fx | mrcal left-out |")
    print("|---|---|---|---|---|---|---|---|")
    for side in ("left", "right"):
        for refine in (False, True):
            obs = []
            for p in sorted(d.glob(f"{side}*.jpg")):
                o = detect(read_gray(p), board, refine)
                if o is not None:
                    obs.append(Observation(p.name, o.corners, o.object_points, o.ids))
            row = [side, f"{'SB+subpix' if refine else 'SB'} ({len(obs)} views)"]
            for fit in (fit_recon, fit_opencv, fit_mrcal):
                try:
                    cam = fit(obs)
                    row += ["-", "-"] if cam is None else [f"{cam.params[0]:.2f}",
                                                           f"{leftout_reprojection(obs, size, fit):.4f}"]
                except RuntimeError as e:
                    row += ["failed", str(e)[:40]]
            print("| " + " | ".join(row) + " |", flush=True)
    print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--views", type=int, default=20)
    args = ap.parse_args(argv)
    real(args.data)
    peers(args.data)
    rendered(args.views)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
