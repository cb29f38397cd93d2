"""recon demo: the built-in end-to-end reconstruction on a synthetic scene with known truth."""

from __future__ import annotations

import argparse

from recon.cli._style import add_output

NAME = "demo"
HELP = "run the demo reconstruction (synthetic scene -> SfM -> Gaussian splatting) with accuracy vs truth"
ORDER = 1
DESCRIPTION = """\
Run the whole journey on the built-in sample scene, where the truth is known exactly:

  1. render a synthetic room (table, chairs, vase, shelf) from an orbit of cameras
     (recon.synth: known intrinsics, poses, depth, labels)        -> OUT/scene/
  2. structure from motion on the images alone (pycolmap + our BA)  -> OUT/sfm/
  3. camera accuracy against the truth after a similarity alignment
  4. Gaussian splatting on the SfM output, PSNR on held-out views  -> OUT/splat/
  5. OUT/summary.png (truth vs render, camera top view) and OUT/report.json

Then look at the results in a browser:
  recon view OUT/sfm            # cameras and sparse points
  recon view OUT/splat          # the trained Gaussians

On this 2-core CPU the default run takes a few minutes; use --steps 0 to skip training.

Example:
  recon demo -o out/demo
  recon demo -o out/demo --views 40 --width 480 --height 360 --steps 3000
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_output(p, "output folder (created)")
    p.add_argument("--views", type=int, default=30, help="orbit views to render (default 30)")
    p.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    p.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    p.add_argument("--steps", type=int, default=1500, help="Gaussian splatting steps; 0 skips training (default 1500)")
    p.add_argument("--train-scale", type=float, default=0.5, help="image scale for training (default 0.5)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="training device")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from recon.pipeline.demo import DemoConfig, run_demo

    cfg = DemoConfig(views=args.views, width=args.width, height=args.height, seed=args.seed,
                     train_steps=args.steps, train_scale=args.train_scale, device=args.device)
    result = run_demo(args.output, cfg, progress=not args.quiet)
    r = result.report
    print(f"demo: {r['status']}" + (f" ({r.get('message')})" if r.get("message") else ""))
    if "sfm" in r:
        s, a = r["sfm"], r.get("sfm_accuracy", {})
        print(f"  SfM: {s['images_registered']}/{s['images_total']} images registered, {s['points3D']} points, "
              f"reprojection error {s['mean_reprojection_error_px']:.3f} px")
        if a:
            print(f"  vs truth: rotation error {a['rotation_error_deg_mean']:.3f} deg (max {a['rotation_error_deg_max']:.3f}), "
                  f"camera centre error {100 * a['centre_error_rel_mean']:.3f}% of extent, focal error "
                  f"{100 * a['focal_error_rel']:.2f}%")
    if "splat" in r:
        s = r["splat"]
        print(f"  splatting: test PSNR {s['psnr_test']:.2f} dB, SSIM {s['ssim_test']:.3f}, "
              f"{s['num_gaussians']} Gaussians, {s['steps']} steps in {s['seconds']:.0f} s on {s['device']}")
    print(f"  outputs: {result.out_dir}/ (report.json, summary.png, scene/, sfm/, splat/)")
    print(f"  look at it: recon view {result.out_dir}/sfm   |   recon view {result.out_dir}/splat")
    return 0 if r["status"] == "ok" else 1
