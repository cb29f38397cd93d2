"""recon demo: the built-in end-to-end reconstruction on a synthetic scene with known truth."""

from __future__ import annotations

import argparse

from recon.cli._style import add_output

NAME = "demo"
HELP = "run the demo (synthetic scene -> SfM -> splats -> mesh -> labels) with every stage's accuracy vs truth"
ORDER = 1
DESCRIPTION = """\
Run the whole journey on the built-in sample scene, where the truth is known exactly:

  1. render a synthetic room (table, chairs, vase, shelf) from an orbit of cameras
     (recon.synth: known intrinsics, poses, depth, labels)        -> OUT/scene/
  2. structure from motion on the images alone (pycolmap + our BA)  -> OUT/sfm/
  3. camera accuracy against the truth after a similarity alignment
  4. Gaussian splatting on the SfM output, PSNR on held-out views  -> OUT/splat/
  5. a mesh from the splats (recon export: TSDF of rendered depth),
     Chamfer distance to the true surface                          -> OUT/export/mesh.ply
  6. the true 2D class maps lifted onto the SfM points (recon label),
     3D label accuracy judged in the true views                    -> OUT/labels/
  7. OUT/summary.png (truth vs render, camera top view) and OUT/report.json

Then look at the results in a browser:
  recon view OUT/sfm            # cameras and sparse points
  recon view OUT/splat          # the trained Gaussians

On this 2-core CPU the default run takes a few minutes; use --steps 0 to skip training.

Example:
  recon demo                      # into out/demo
  recon demo out/demo --view      # then open the viewer on the splats
  recon demo -o out/demo --views 40 --width 480 --height 360 --steps 3000
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("demo_dir", nargs="?", metavar="DEMO_DIR", default=None,
                   help="output folder (created; same as -o; default out/demo)")
    add_output(p, "output folder (created; default out/demo)", required=False)
    p.add_argument("--views", type=int, default=30, help="orbit views to render (default 30)")
    p.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    p.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    p.add_argument("--steps", type=int, default=2500, help="Gaussian splatting steps; 0 skips training (default 2500)")
    p.add_argument("--train-scale", type=float, default=0.5, help="image scale for training (default 0.5)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="training device")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.add_argument("--no-mesh", action="store_true", help="skip the mesh export and its Chamfer distance")
    p.add_argument("--no-labels", action="store_true", help="skip the 3D label lifting and its accuracy")
    p.add_argument("--view", action="store_true", help="open `recon view` on the result when done")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from recon.pipeline.demo import DemoConfig, run_demo

    if args.demo_dir and args.output and args.demo_dir != args.output:
        raise ValueError(f"DEMO_DIR: given twice ({args.demo_dir} and -o {args.output})")
    out = args.output or args.demo_dir or "out/demo"
    cfg = DemoConfig(views=args.views, width=args.width, height=args.height, seed=args.seed,
                     train_steps=args.steps, train_scale=args.train_scale, device=args.device,
                     mesh=not args.no_mesh, labels=not args.no_labels)
    result = run_demo(out, cfg, progress=not args.quiet)
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
    m = r.get("mesh") or {}
    if "chamfer_rel" in m:
        print(f"  mesh: {m['faces']} faces, Chamfer to the true surface {100 * m['chamfer_rel']:.3f}% of the scene "
              f"diagonal ({1000 * m['chamfer_m']:.1f} mm) -> {m['path']}")
    elif m:
        print(f"  mesh: failed ({m.get('message')})")
    lab = r.get("labels") or {}
    if "class_accuracy" in lab:
        print(f"  labels (true 2D maps lifted to 3D): {100 * lab['class_accuracy']:.2f}% of labelled points right, "
              f"{100 * lab['labelled_fraction']:.1f}% labelled, instances {100 * lab['instance_accuracy']:.1f}% right")
    elif lab:
        print(f"  labels: failed ({lab.get('message')})")
    print(f"  outputs: {result.out_dir}/ (report.json, summary.png, scene/, sfm/, splat/, export/, labels/)")
    print(f"  look at it: recon view {result.out_dir}/sfm   |   recon view {result.out_dir}/splat")
    if args.view and r["status"] == "ok":
        from recon.cli import main

        main(["view", str(result.out_dir / ("splat" if (result.out_dir / "splat").is_dir() else "sfm"))])
    return 0 if r["status"] == "ok" else 1
