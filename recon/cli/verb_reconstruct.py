"""`recon reconstruct`: photos or a video -> a viewable, exportable scene, in one command."""

from __future__ import annotations

import argparse

from recon.cli._cluster import add_cluster, cluster_options
from recon.cli._style import add_calib, add_output

NAME = "reconstruct"
HELP = "photos or a video -> cameras, a trained scene, points, a mesh, a splat PLY and a report (resumable)"
ORDER = 2
OPENS_IMAGES = True  # gets --max-image-pixels (recon.cli.build_parser)
DESCRIPTION = """\
The whole journey in one command, on a CPU or a GPU:

  1. sfm      structure from motion (pycolmap + our bundle adjuster)       -> OUT/sfm/
  2. orient   the scene upright (z up) and centred, floor at z = 0         -> OUT/scene/
  3. train    Gaussian splatting (--method splat) or NeRF (--method nerf)  -> OUT/splat/ | OUT/nerf/
  4. export   points, a mesh and the splat PLY                             -> OUT/export/
  5. labels   optional (--labels BACKEND): classes lifted onto the points  -> OUT/labels/
  6. report   OUT/report.html (pictures of every stage) and OUT/report.json

Run the same command again and it resumes: finished stages whose inputs and options did not
change are reused, and an interrupted training run continues from its last checkpoint.
--from-stage NAME redoes that stage and everything after it. OUT/pipeline.json records what
each stage ran with.

--quality picks resolution, training steps and mesh density for the device: on a 2-core CPU
`fast` is sized for a 50-photo set in about 15 minutes. Matching and the SfM mapper follow the
number of photos (exhaustive up to 30, then sequential for videos or retrieval; incremental
mapper up to 300 photos, then global, then hierarchical); the report says which and why.

A full disk stops the run with a message naming the stage, the file and the space left; the
finished stages are kept, and the same command continues once there is room.

Examples:
  recon reconstruct photos/ -o out
  recon view out
  recon reconstruct walk.mp4 -o out/walk --quality default
  recon reconstruct photos/ -o out --calib calib.yaml --method nerf
  recon reconstruct photos/ -o out --from-stage export
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from recon.pipeline.reconstruct import STAGES

    p.add_argument("inputs", metavar="PHOTOS_OR_VIDEO", help="folder of photos (searched recursively) or a video")
    add_output(p, "output folder (created; run the same command again to resume)")
    p.add_argument("--quality", choices=("fast", "default", "best"), default="fast",
                   help="resolution, steps and mesh density (default fast)")
    p.add_argument("--method", choices=("splat", "nerf"), default="splat",
                   help="radiance field to train (default splat: Gaussian splatting)")
    add_calib(p, "known intrinsics (any file `recon calibrate` writes, OpenCV YAML, cameras.txt), held fixed")
    p.add_argument("--labels", metavar="BACKEND", default=None,
                   help="also label the scene with a 2D backend (gt, masks, darknet, onnx, hf)")
    p.add_argument("--masks", metavar="DIR", help="class PNGs for --labels masks")
    p.add_argument("--model", metavar="PATH", help="model file for --labels darknet/onnx/hf")
    p.add_argument("--from-stage", choices=STAGES, default=None,
                   help="redo this stage and every later one")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the quality preset's)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="training wall-time budget in seconds (default: the quality preset's)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="training device")
    p.add_argument("--no-orient", action="store_true", help="keep the SfM world frame (no upright/centring)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--chunks", type=int, default=None, metavar="N",
                   help="train the splat as N ground-plane chunks merged into one PLY (on the cluster with "
                        "--workers / --cluster); default: one run")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_cluster(p)


def run(args: argparse.Namespace) -> int:
    from recon.pipeline.reconstruct import ReconstructConfig, reconstruct

    opts = {k: v for k, v in (("masks", args.masks), ("model", args.model)) if v}
    cfg = ReconstructConfig(quality=args.quality, method=args.method, calib=args.calib, labels=args.labels,
                            labels_options=opts, device=args.device, max_seconds=args.max_seconds,
                            steps=args.steps, orient=not args.no_orient, seed=args.seed,
                            chunks=args.chunks)
    copts = cluster_options(args)
    if copts is None:
        r = reconstruct(args.inputs, args.output, cfg, from_stage=args.from_stage, progress=not args.quiet)
    else:  # the SfM stage runs as Dask tasks (docs/cluster.md)
        from recon.cluster import open_cluster

        with open_cluster(copts, args.output) as cluster:
            r = reconstruct(args.inputs, args.output, cfg, from_stage=args.from_stage, progress=not args.quiet,
                            cluster=cluster)
    print(f"reconstruct: {r['status']} in {r.get('total_seconds', 0):.0f} s")
    s = r.get("sfm") or {}
    if s:
        print(f"  SfM: {s.get('images_registered')}/{s.get('images_total')} photos placed, {s.get('points3D')} points, "
              f"reprojection error {s.get('mean_reprojection_error_px') or float('nan'):.3f} px")
        if s.get("matching_strategy"):
            print(f"  SfM matching {s['matching_strategy']}, mapper {s.get('mapper')}: {s.get('mapper_reason', '')}")
    t = r.get("train") or {}
    if t.get("psnr_test") is not None:
        print(f"  {args.method}: test PSNR {t['psnr_test']:.2f} dB, SSIM {t.get('ssim_test') or float('nan'):.3f}, "
              f"{t.get('steps')} steps in {t.get('seconds') or 0:.0f} s"
              + (" (resumed from checkpoint)" if t.get("resumed_from_checkpoint") else ""))
    for k, v in (r.get("export") or {}).get("files", {}).items():
        print(f"  {k}: {v}")
    how = ", ".join(f"{n} {s['how']}" for n, s in r.get("stages", {}).items() if s.get("how") != "skipped")
    print(f"  stages: {how}")
    print(f"  report: {args.output}/report.html   look at it: recon view {args.output}")
    return 0 if r["status"] == "ok" else 1
