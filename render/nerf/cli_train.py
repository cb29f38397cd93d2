"""`recon train nerf DATA -o OUT`: the NeRF sub-verb (discovered by recon/cli/verb_train.py).

Light at import: argparse only; torch and the trainer are imported inside run()."""

from __future__ import annotations

import argparse

NAME = "nerf"
HELP = "NeRF: Instant-NGP-style hash-grid field with occupancy-grid sampling (PyTorch, CPU or CUDA)"
ORDER = 20
DESCRIPTION = """\
Train a neural radiance field on posed images and write OUT/model.pt (field, bounds, occupancy
grid), OUT/checkpoint.pt (--resume), OUT/renders/test/*.png, OUT/depth/<view>.npy (z-depth in
metres along each camera's optical axis, 0 where nothing was hit: for TSDF fusion),
OUT/density_grid.npz (density on a regular world-frame grid, for marching cubes) and
OUT/report.json (test PSNR / SSIM / LPIPS-or-null, steps, seconds, device, bounds, ...).

DATA is `recon sfm` output, a COLMAP model with its images, a transforms.json folder
(Instant-NGP / nerfstudio style) or a `recon synth` dataset. Cameras may be distorted or fisheye
(COLMAP OPENCV / OPENCV_FISHEYE / ..., transforms.json k1 k2 p1 p2): rays are cast through the
camera model, no undistortion needed. Images of different sizes are fine. Every 8th image
(sorted by name) is held out for the test metrics.

Bounds: --bounds auto picks an axis-aligned box for bounded scenes (an object seen from around,
a room seen from inside) and mip-NeRF 360's scene contraction for unbounded ones, from the
camera layout and the SfM points (report.json says which and why).

Presets: 'cpu' (10 hash levels, 2^16 table, 1024 rays per step, 48^3 occupancy grid with the
cells of the SfM points kept occupied, SH degree 1, depth supervision from the SfM points 0.3
decayed to 0.001), 'default'
(Instant-NGP's 16 levels, 2^19 table, 4096 rays, 128^3 grid; for CUDA), 'frequency' (the original
positional encoding, for comparison). 'auto' = cpu on a CPU, default on CUDA.

Examples:
  recon train nerf out/sfm -o out/nerf --max-seconds 600
  recon train nerf data/lego -o out/lego --preset default --device cuda
  recon train nerf out/synth -o out/nerf --steps 3000 --resume     # continue a run
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="dataset folder (transforms.json or sparse/0 + images/)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    parser.add_argument("--preset", choices=["auto", "default", "cpu", "frequency"], default="auto",
                        help="hyper-parameter preset (default: auto = cpu on a CPU, default on CUDA)")
    parser.add_argument("--steps", type=int, help="total optimisation steps (overrides the preset)")
    parser.add_argument("--max-seconds", type=float, metavar="S",
                        help="stop after S seconds of training, then evaluate and export")
    parser.add_argument("--rays-per-batch", type=int, metavar="N", help="rays per step (lower it on out-of-memory)")
    parser.add_argument("--resolution-scale", type=float, default=1.0, metavar="S",
                        help="resize images by S in (0, 1] (e.g. 0.25 for large photos on a CPU); default 1")
    parser.add_argument("--bounds", choices=["auto", "box", "contract"], default="auto",
                        help="scene bounds: auto (from the cameras and points), box, contract (unbounded)")
    parser.add_argument("--background", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="background colour in [0, 1] (default black)")
    parser.add_argument("--lambda-distortion", type=float, metavar="L", help="distortion-loss weight (default 1e-3)")
    parser.add_argument("--lambda-depth", type=float, metavar="L",
                        help="weight of the depth supervision from the SfM points their tracks say each "
                             "training view saw, at the start of the run (0: off; default: the preset's: cpu 0.3, "
                             "decayed log-linearly to 0.001 by the end; default preset 0); "
                             "datasets without tracks (transforms.json) train without it")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto = cuda when torch sees a GPU")
    parser.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    parser.add_argument("--test-every", type=int, default=8, metavar="K",
                        help="hold out every K-th image for testing (0: none); default 8")
    parser.add_argument("--max-views", type=int, metavar="N", help="use only the first N images")
    parser.add_argument("--no-depth", action="store_true", help="do not write per-view depth maps")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch (default: follow the machine's load)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import sys

    import torch

    from render.nerf.trainer import NerfConfig, train

    def log(msg):
        print(f"[nerf] {msg}", file=sys.stderr)

    for name in ("steps", "rays_per_batch", "max_views", "threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected >= 1, got {v}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise ValueError(f"--max-seconds: expected > 0, got {args.max_seconds}")
    preset = args.preset
    if preset == "auto":
        on_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
        preset = "default" if on_cuda else "cpu"
    cfg = NerfConfig.preset(preset)
    over = {"resolution_scale": args.resolution_scale, "bounds": args.bounds, "device": args.device,
            "test_every": args.test_every, "seed": args.seed, "max_views": args.max_views,
            "max_seconds": args.max_seconds, "amp": not args.no_amp, "write_depth": not args.no_depth}
    if args.steps is not None:
        over["steps"] = args.steps
    elif args.max_seconds is not None:
        over["steps"] = 1_000_000  # the budget decides
    if args.rays_per_batch is not None:
        over["rays_per_batch"] = args.rays_per_batch
    if args.background is not None:
        over["background"] = tuple(args.background)
    if args.lambda_distortion is not None:
        over["lambda_distortion"] = args.lambda_distortion
    if args.lambda_depth is not None:
        if args.lambda_depth < 0:
            raise ValueError(f"--lambda-depth: expected >= 0, got {args.lambda_depth}")
        over["lambda_depth"] = args.lambda_depth
        if args.lambda_depth == 0:
            over["lambda_depth_final"] = None
    cfg = dataclasses.replace(cfg, **over)
    log(f"preset {preset}")
    result = train(args.data, args.output, cfg, resume=args.resume, progress=not args.quiet, log=log,
                   data_path=args.data, threads=args.threads if args.threads is not None else "auto")
    r = result.report
    print(f"nerf: {r['steps']} steps in {r['seconds']:.1f} s; {r['eval_split']} PSNR {r['psnr']:.2f} dB, "
          f"SSIM {r['ssim']:.4f} -> {args.output}/model.pt")
    return 0
