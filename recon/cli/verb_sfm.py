"""`recon sfm`: structure from motion on a folder of photos or a video."""

from __future__ import annotations

import argparse

from recon.cli._cluster import add_cluster, cluster_options
from recon.cli._style import add_calib, add_output

NAME = "sfm"
HELP = "structure from motion: photos or a video -> cameras, poses, sparse points (COLMAP model)"
ORDER = 30
OPENS_IMAGES = True  # gets --max-image-pixels (recon.cli.build_parser)
DESCRIPTION = """\
Reconstruct cameras (intrinsics), poses and a sparse point cloud from a folder of photos or a
video, with pycolmap (COLMAP's C++) as the engine and an automatic matching strategy.

Writes to OUT:
  sparse/0/         COLMAP binary model of the largest connected model (sparse/1, ... for
                    further disconnected models: reported in report.json, never dropped)
  transforms.json   nerfstudio / Instant-NGP cameras (for `recon train`)
  points.ply        sparse points with colours
  report.json       images_total, images_registered, unregistered (+ reasons per image),
                    models, points3D, mean_reprojection_error_px, mean_track_length,
                    stage_seconds, cameras
  database.db       COLMAP database (features, matches), kept for re-runs
  images/           extracted frames (video input only); undistorted/ with --undistort

Matching (--matching auto): spatial when the images carry GPS, exhaustive up to 30 images,
sequential + loop closure for videos and numbered frame sequences, retrieval for larger
unordered sets: COLMAP's vocabulary tree when its file is on disk ($RECON_VOCAB_TREE, or
`recon data download colmap_vocab_tree --scene words256K`), else VLAD on the images' own SIFT.
Mapping (--mapper auto): COLMAP's incremental mapper up to 300 images, GLOMAP's global mapper
up to 2000, the hierarchical mapper beyond. report.json `strategy` says what was chosen and why.

Settings adapt to the set (report.json `recipe`): one camera, recon's fast SIFT settings for
photos from one camera; one camera per image, COLMAP's features and mapper settings for a set of
several sizes / EXIF cameras. Plausibility gate (report.json `plausibility`): a focal length
outside [0.3, 5] x the image's larger side, |k1| > 1, or a main model with under half the images
re-runs with pycolmap's defaults (then with the distortion fixed); images whose camera stays
implausible are taken out of the model with the reason. `attempts` and `colmap_defaults` say
what each try registered.

Exit status: 0 ok or partial (some images not registered: see `reasons`), 1 failed (no model,
or still implausible after the re-runs: see `message`), 2 bad arguments or input files.

Examples:
  recon sfm photos/ -o out/scene
  recon sfm walk.mp4 -o out/walk --video-fps 3 --mapper global
  recon sfm photos/ -o out/scene --calib calib/calibration.yaml --undistort
  recon sfm photos/ -o out/scene --workers 4                  # Dask tasks on this machine
  recon sfm photos/ -o out/scene --cluster tcp://head:8786    # ... on a running cluster

With --workers / --cluster, feature extraction, matching and mapping run as Dask tasks (mapping
as overlapping leaves of at most 500 images merged by Sim(3), then one global bundle
adjustment); task folders under OUT/tasks make a re-run resume. docs/cluster.md.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", metavar="IMAGES_OR_VIDEO", help="folder of images (searched recursively) or a video file")
    add_output(p, "output folder (created)")
    g = p.add_argument_group("cameras")
    g.add_argument("--camera-model", default="SIMPLE_RADIAL",
                   help="COLMAP camera model to estimate (default SIMPLE_RADIAL; e.g. PINHOLE, OPENCV, "
                        "OPENCV_FISHEYE)")
    g.add_argument("--camera-mode", choices=("auto", "single", "per_image"), default="auto",
                   help="one camera for all images (single), one per image, or auto: one camera per "
                        "distinct image size / EXIF camera (default)")
    add_calib(p, "known intrinsics, held fixed: calibration.yaml / report.json / cameras.txt from "
                 "`recon calibrate` (any model, fisheye included) or an OpenCV YAML with K, D, image size",
              group=g)
    g = p.add_argument_group("features and matching")
    g.add_argument("--max-image-size", type=int, default=1600,
                   help="long side (pixels) at which SIFT runs (default 1600; 0 = full resolution)")
    g.add_argument("--heterogeneous-image-size", type=int, default=640, metavar="PX",
                   help="on a set of several cameras or sizes (internet photos) SIFT runs at most at this "
                        "long side, with 2x upsampling (default 640; 0 = --max-image-size)")
    g.add_argument("--max-features", type=int, default=None,
                   help="SIFT features per image (default 4096)")
    g.add_argument("--first-octave", type=int, default=None, choices=(-1, 0, 1),
                   help="SIFT first octave: -1 doubles the image first (COLMAP's default; slower, more small "
                        "features), 0 does not (default: 0 on >= 1000 px images from one camera, -1 on smaller "
                        "ones and on sets of several cameras)")
    g.add_argument("--matching", choices=("auto", "exhaustive", "sequential", "spatial", "retrieval"),
                   default="auto", help="image-pair selection (default auto, see above)")
    g.add_argument("--ordered", action="store_true",
                   help="the images are a sequence (sequential matching + loop closure); default: "
                        "auto (videos, or more than 30 images with increasing frame numbers)")
    g.add_argument("--overlap", type=int, default=10, help="sequential matching: successors per frame")
    g.add_argument("--no-loop-closure", action="store_true", help="sequential matching without retrieval pairs")
    g.add_argument("--retrieval", choices=("auto", "vocabtree", "vlad"), default="auto",
                   help="retrieval matching: COLMAP's vocabulary tree, recon's VLAD (no download), or auto "
                        "(the tree when its file is found)")
    g.add_argument("--vocab-tree", metavar="FILE", default=None,
                   help="COLMAP vocabulary-tree file (default: $RECON_VOCAB_TREE or recon's cache)")
    g = p.add_argument_group("mapping and refinement")
    g.add_argument("--mapper", choices=("auto", "incremental", "global", "hierarchical"), default="auto",
                   help="COLMAP incremental, GLOMAP global or hierarchical mapper (default auto: by image "
                        "count, see above)")
    g.add_argument("--ba", choices=("ours", "colmap", "none"), default="ours",
                   help="final bundle adjustment: recon.ba (default), pycolmap's Ceres, or none")
    g.add_argument("--ba-loss", choices=("trivial", "huber", "cauchy"), default="huber",
                   help="robust loss of the final bundle adjustment (default huber, 1 px)")
    g.add_argument("--no-retriangulation", action="store_true", help="skip retriangulation after mapping")
    g.add_argument("--undistort", action="store_true",
                   help="also write undistorted images and a PINHOLE model to OUT/undistorted (for training)")
    g.add_argument("--no-fallback", action="store_true",
                   help="no re-run with pycolmap's defaults when the result is implausible or, on up "
                        "to 30 images, leaves photos out")
    g.add_argument("--no-isolate", action="store_true",
                   help="run the mapper in this process (faster start; a C++ abort then ends the run)")
    g = p.add_argument_group("video")
    g.add_argument("--video-fps", type=float, default=2.0, help="frames per second kept from a video (default 2)")
    g.add_argument("--max-frames", type=int, default=None, help="cap on extracted frames")
    g.add_argument("--blur-ratio", type=float, default=0.35,
                   help="drop frames whose sharpness (variance of Laplacian) is below this times the median")
    p.add_argument("--threads", type=int, default=-1, help="pycolmap threads (-1 = all cores)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_cluster(p)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from recon.sfm import SfMConfig, run_sfm

    config = SfMConfig(camera_model=args.camera_model, camera_mode=args.camera_mode,
                       calibration=args.calib, max_image_size=args.max_image_size,
                       heterogeneous_image_size=args.heterogeneous_image_size,
                       max_num_features=args.max_features, first_octave=args.first_octave, matching=args.matching,
                       sequential_overlap=args.overlap, ordered=True if args.ordered else None,
                       loop_closure=not args.no_loop_closure,
                       mapper=args.mapper, retrieval=args.retrieval, vocab_tree=args.vocab_tree,
                       retriangulate=not args.no_retriangulation, final_ba=args.ba,
                       ba_loss=args.ba_loss, undistort=args.undistort, video_fps=args.video_fps,
                       video_max_frames=args.max_frames, blur_ratio=args.blur_ratio,
                       isolate_mapper=not args.no_isolate, fallback=not args.no_fallback,
                       num_threads=args.threads, seed=args.seed)
    copts = cluster_options(args)
    if copts is None:
        report = run_sfm(args.inputs, args.output, config, progress=not args.quiet)
    else:
        from recon.cluster import open_cluster

        with open_cluster(copts, args.output) as cluster:
            report = run_sfm(args.inputs, args.output, config, progress=not args.quiet, cluster=cluster)
    out = Path(args.output)
    err = report.mean_reprojection_error_px
    print(f"recon sfm: {report.status}: {report.images_registered}/{report.images_total} images registered, "
          f"{report.points3D} points, {len(report.models)} model(s), "
          f"reprojection error {err:.3f} px" if err is not None else
          f"recon sfm: {report.status}: {report.message}")
    plan = report.strategy
    if plan:
        print(f"recon sfm: matching {report.matching.get('strategy', plan['matching'])}: {plan['matching_reason']}; "
              f"mapper {plan['mapper']}: {plan['mapper_reason']}")
    cd = report.colmap_defaults
    if cd.get("registered") is not None and cd["registered"] != report.images_registered:
        print(f"recon sfm: pycolmap's defaults registered {cd['registered']}", file=sys.stderr)
    if report.message and report.status != "ok":
        print(f"recon sfm: {report.message}", file=sys.stderr)
    for name, why in list(report.reasons.items())[:20]:
        print(f"  {name}: {why}", file=sys.stderr)
    print(f"recon sfm: report: {out / 'report.json'}")
    return 0 if report.status != "failed" else 1
