"""Two-view analysis of an image pair: intrinsics, features, matches, geometry, report, pictures.

:func:`analyze_pair` is the job behind ``recon twoview``; the CLI maps its arguments to
:class:`PairOptions` and prints the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from calib import Camera
from recon.twoview._pipeline import TwoViewConfig, TwoViewGeometry, _guessed, two_view_geometry

__all__ = ["PairAnalysis", "PairOptions", "analyze_pair", "default_threshold_px"]

_FEATURES = ("sift", "rootsift", "asift", "orb")
_METHODS = ("poselib", "ours", "opencv")


@dataclass(frozen=True)
class PairOptions:
    """Options of :func:`analyze_pair`.

    calib:          calibration file (stereo / mono OpenCV YAML, report.json, cameras.txt): image A
                    gets the left (or only) camera, B the right one. None: focal_px, EXIF, or a
                    guess (1.2 * max side), principal point at the centre, no distortion.
    focal_px:       focal length (pixels) of both images when there is no calib.
    use_exif:       without calib / focal_px, take the focal length from EXIF (both images).
    features:       "sift", "rootsift", "asift" or "orb" (:func:`recon.features.detect_features`);
                    max_features keypoints per image.
    max_image_size: detect on images downscaled to this longer side (0 = never); keypoints are
                    mapped back to full-resolution pixel centres.
    ratio:          Lowe's ratio test threshold (mutual nearest neighbours).
    method, refine, seed, num_hypotheses: see :class:`recon.twoview.TwoViewConfig`.
    threshold_px:   Sampson inlier threshold; None = :func:`default_threshold_px`.
    pictures:       write matches.png, epipolar.png and points.ply beside report.json.
    """

    calib: str | Path | None = None
    focal_px: float | None = None
    use_exif: bool = True
    features: str = "sift"
    max_features: int = 8000
    max_image_size: int = 2000
    ratio: float = 0.8
    method: str = "poselib"
    threshold_px: float | None = None
    refine: bool | None = None
    seed: int = 0
    num_hypotheses: int = 2
    pictures: bool = True

    def __post_init__(self):
        if self.features not in _FEATURES:
            raise ValueError(f"features: expected one of {_FEATURES}, got {self.features!r}")
        if self.method not in _METHODS:
            raise ValueError(f"method: expected one of {_METHODS}, got {self.method!r}")
        if self.focal_px is not None and not self.focal_px > 0:
            raise ValueError(f"focal_px: expected a positive focal length, got {self.focal_px}")
        if self.max_features < 1:
            raise ValueError(f"max_features: expected >= 1, got {self.max_features}")
        if self.max_image_size < 0:
            raise ValueError(f"max_image_size: expected >= 0 (0 = never downscale), got {self.max_image_size}")
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio: expected in (0, 1], got {self.ratio}")
        if self.threshold_px is not None and not self.threshold_px > 0:
            raise ValueError(f"threshold_px: expected a positive number, got {self.threshold_px}")


@dataclass
class PairAnalysis:
    """Result of :func:`analyze_pair`.

    report:    everything report.json holds (verdict, flags, sigma, pose, counts, F/E/H, timings).
    geometry:  the :class:`TwoViewGeometry` (None for bad input).
    exit_code: 0 a pose or rotation was determined, 1 no answer, 2 bad input.
    outputs:   files written beside report.json.
    """

    report: dict
    geometry: TwoViewGeometry | None = None
    exit_code: int = 0
    outputs: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return self.report.get("verdict", "")

    def to_json(self) -> dict:
        from recon.io.report import jsonable

        return jsonable(self.report)


def default_threshold_px(width: int, height: int) -> float:
    """Sampson inlier threshold for an image of (width, height): 1 px up to a 1600 px diagonal
    (about 1 MP), proportional to the diagonal above."""
    return max(1.0, float(np.hypot(width, height)) / 1600.0)


def _detect(img, opts: PairOptions):
    import cv2

    from recon.features import detect_features

    h, w = img.shape[:2]
    s = 1.0
    if opts.max_image_size and max(w, h) > opts.max_image_size:
        s = opts.max_image_size / max(w, h)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    f = detect_features(img, method=opts.features, max_features=opts.max_features)
    if s != 1.0:  # back to full-resolution pixel centres
        from calib import scale_pixels

        f = replace(f, keypoints=scale_pixels(f.keypoints, 1.0 / s).astype(f.keypoints.dtype, copy=False),
                    scales=f.scales / s, image_size=(w, h))
    return f


def _intrinsics(image_a, image_b, sizes, opts: PairOptions, notes: list):
    """(camera A, camera B, source) from the options; cameras None when they are to be guessed."""
    (wa, ha), (wb, hb) = sizes
    if opts.calib:
        from calib import read_camera_pair

        cam_a, cam_b = read_camera_pair(opts.calib)
        cam_a, note_a = fit_camera_to_image(cam_a, wa, ha, "A")
        cam_b, note_b = fit_camera_to_image(cam_b, wb, hb, "B")
        notes += [n for n in (note_a, note_b) if n]
        return cam_a, cam_b, "calibration file"
    if opts.focal_px:
        notes.append(f"intrinsics from --focal {opts.focal_px} px, principal point at the centre")
        return _guessed((wa, ha), opts.focal_px), _guessed((wb, hb), opts.focal_px), "focal option"
    if opts.use_exif:
        from recon.io import exif_focal_px

        fa, fb = exif_focal_px(image_a), exif_focal_px(image_b)
        if fa and fb:
            notes.append(f"intrinsics from EXIF focal lengths ({fa:.1f}, {fb:.1f} px), principal point at the "
                         "centre, no distortion: pass --calib for an exact pose")
            return _guessed((wa, ha), fa), _guessed((wb, hb), fb), "exif"
    return None, None, "guessed"


def analyze_pair(image_a, image_b, output=None, options: PairOptions = PairOptions()) -> PairAnalysis:
    """Features, matches and two-view geometry (:func:`two_view_geometry`) of an image pair.

    image_a, image_b: image files. output: folder for report.json (written in every case, bad
    input included) and, with ``options.pictures``, matches.png / epipolar.png / points.ply
    (points in the frame of camera A, unit baseline); None writes nothing.
    Unreadable images raise (FileNotFoundError / recon's read errors); a calibration that does
    not fit the images gives verdict "bad_input" and exit_code 2.
    """
    from recon.io.report import write_report

    from recon.features import match_features
    from recon.io import read_image

    if not isinstance(options, PairOptions):
        raise TypeError(f"options: expected PairOptions, got {type(options).__name__}")
    out = Path(output) if output is not None else None
    t_start = time.perf_counter()
    notes: list[str] = []
    report: dict = {"version": 1, "images": {"A": str(image_a), "B": str(image_b)},
                    "calibration": None if options.calib is None else str(options.calib), "notes": notes}
    img_a, img_b = read_image(image_a), read_image(image_b)
    (ha, wa), (hb, wb) = img_a.shape[:2], img_b.shape[:2]
    report["images"]["size_A"], report["images"]["size_B"] = [wa, ha], [wb, hb]
    try:
        cam_a, cam_b, source = _intrinsics(image_a, image_b, ((wa, ha), (wb, hb)), options, notes)
    except ValueError as e:
        report.update(verdict="bad_input", message=str(e), exit_code=2)
        if out is not None:
            write_report(Path(out) / "report.json", report, indent=2)
        return PairAnalysis(report, None, 2)
    timings: dict = {}
    t = time.perf_counter()
    fa, fb = _detect(img_a, options), _detect(img_b, options)
    timings["features_s"] = time.perf_counter() - t
    t = time.perf_counter()
    m = match_features(fa, fb, ratio=options.ratio, mutual=True)
    timings["matching_s"] = time.perf_counter() - t
    uv1, uv2 = m.points(fa, fb)
    thr = options.threshold_px or default_threshold_px(max(wa, wb), max(ha, hb))
    report["features"] = {"type": options.features, "keypoints_A": len(fa), "keypoints_B": len(fb),
                          "matches": len(m), "ratio": options.ratio}
    cfg = TwoViewConfig(method=options.method, threshold_px=thr, refine=options.refine, seed=options.seed,
                        num_hypotheses=options.num_hypotheses)
    t = time.perf_counter()
    geo = two_view_geometry(uv1, uv2, cam_a, cam_b, image_size1=(wa, ha), image_size2=(wb, hb), config=cfg)
    timings["geometry_s"] = time.perf_counter() - t
    report.update(_geometry_report(geo, len(m), thr, options.method, source))
    notes += geo.notes
    outputs = []
    if out is not None and options.pictures:
        t = time.perf_counter()
        outputs = _pictures(out, img_a, img_b, uv1, uv2, geo)
        timings["pictures_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start
    report["outputs"], report["timings"] = outputs, timings
    report["exit_code"] = 1 if report["verdict"] in ("too_few_matches", "identical", "no_model") else 0
    if out is not None:
        write_report(Path(out) / "report.json", report, indent=2)
    return PairAnalysis(report, geo, report["exit_code"], outputs)


def _geometry_report(geo: TwoViewGeometry, num_matches: int, thr: float, method: str, source: str) -> dict:
    from calib import rotation_angle_deg

    deg, fit = geo.degeneracy, geo.fundamental
    rep = {
        "verdict": deg.verdict, "message": deg.message,
        "pose_reliable": deg.pose_reliable, "rotation_reliable": deg.rotation_reliable,
        "rotation_sigma_deg": deg.rotation_sigma_deg, "translation_sigma_deg": deg.translation_sigma_deg,
        "rotation_spread_deg": deg.rotation_spread_deg, "translation_spread_deg": deg.translation_spread_deg,
        "pose_ambiguous": deg.pose_ambiguous, "method": method, "threshold_px": thr,
        "intrinsics": "guessed" if geo.intrinsics_guessed else source,
        "num_matches": num_matches, "num_inliers": int(geo.inliers.sum()),
        "inlier_ratio": float(geo.inliers.mean()) if num_matches else 0.0,
        "median_sampson_px": fit.median_inlier_residual() if fit.ok else None,
        "num_iterations": int(fit.num_iterations), "refined": geo.refined,
        "triangulated_points": geo.num_triangulated,
        "median_parallax_deg": None if np.isnan(deg.median_parallax_deg) else deg.median_parallax_deg,
        "model_selection": {"gric_F": deg.gric_f, "gric_H": deg.gric_h, "H_inliers": geo.homography.num_inliers,
                            "F_inliers": fit.num_inliers, "H_over_F_inliers": deg.h_f_inlier_ratio,
                            "sigma_px": deg.sigma_px, "rotation_score": deg.rotation_score},
        "median_displacement_px": deg.median_displacement_px,
    }
    if geo.camera1 is not None:
        rep["camera_A"] = {"model": geo.camera1.model, "params": geo.camera1.params.tolist()}
        rep["camera_B"] = {"model": geo.camera2.model, "params": geo.camera2.params.tolist()}
    if geo.cam2_from_cam1 is not None:
        T = geo.cam2_from_cam1
        nt = np.linalg.norm(T.translation)
        rep["cam2_from_cam1"] = {"R": T.rotation.tolist(), "quat_wxyz": T.quat_wxyz.tolist(),
                                 "rotation_deg": float(rotation_angle_deg(T.rotation)),
                                 "t_direction": (T.translation / nt).tolist() if nt > 0 else None}
    for name, res, attr in (("F", geo.fundamental, "F"), ("E", geo.essential, "E"), ("H", geo.homography, "H")):
        if res is not None and res.ok:
            rep[name] = getattr(res, attr).tolist()
    return rep


def _pictures(out: Path, img_a, img_b, uv1, uv2, geo: TwoViewGeometry) -> list[str]:
    from recon.twoview.pictures import draw_epipolar_lines, draw_matches

    out.mkdir(parents=True, exist_ok=True)
    deg, fit, n = geo.degeneracy, geo.fundamental, len(uv1)
    written = []
    if n:
        written.append(draw_matches(out / "matches.png", img_a, img_b, uv1, uv2, geo.inliers,
                                    title=f"{n} matches, {int(geo.inliers.sum())} inliers ({deg.verdict})").name)
    if fit.ok and geo.inliers.sum() >= 1:
        written.append(draw_epipolar_lines(out / "epipolar.png", img_a, img_b, fit.F, uv1, uv2, geo.inliers,
                                           title=f"epipolar lines (median Sampson error "
                                                 f"{fit.median_inlier_residual():.2f} px)").name)
    if geo.triangulation is not None and geo.num_triangulated:
        from recon.io import PointCloud, write_ply

        ha, wa = img_a.shape[:2]
        ok = geo.triangulation.valid() & geo.inliers
        ij = np.clip(np.rint(uv1[ok]).astype(int), 0, [wa - 1, ha - 1])
        rgb = img_a[ij[:, 1], ij[:, 0]][:, :3].astype(np.uint8)
        write_ply(out / "points.ply", PointCloud(geo.triangulation.points[ok].astype(np.float32), rgb))
        written.append("points.ply")
    return written


def fit_camera_to_image(camera: Camera, width: int, height: int, name: str) -> tuple[Camera, str | None]:
    """The camera for an image of (width, height): unchanged when sizes agree, rescaled (with a
    note) when the image is a uniform resize of the calibrated size, else ValueError."""
    if camera.size == (width, height):
        return camera, None
    sx, sy = width / camera.width, height / camera.height
    if abs(sx - sy) > 2.0 / min(camera.width, camera.height):
        raise ValueError(f"{name}: image is {width}x{height} but the calibration expects "
                         f"{camera.width}x{camera.height} (different aspect ratio); recalibrate or "
                         "resize/crop the image to the calibrated size")
    return camera.resized(width, height), (f"{name}: image is {width}x{height}, calibration {camera.width}x"
                                           f"{camera.height}: intrinsics scaled by {sx:.4g} (assumes a resize)")
