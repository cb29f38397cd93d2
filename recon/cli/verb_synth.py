"""`recon synth -o OUT`: render a synthetic ground-truth dataset (scene, stereo pairs or boards)."""

from __future__ import annotations

import argparse

from recon.cli._style import add_output, add_quiet, add_threads

NAME = "synth"
HELP = "render a synthetic dataset with exact ground truth (scene, stereo pairs, calibration boards)"
ORDER = 15
DESCRIPTION = """\
Render a procedural room (floor, walls, table, chairs, vase, shelf, balls, crates) through any
COLMAP camera model (distortion and fisheye included) and write a dataset folder with exact
ground truth:

  images/  depth/ (float32 .npy, z in metres)  normals/  labels/class/  labels/instance/
  sparse/0/ (ground-truth COLMAP model)  transforms.json  gt.json (cameras, poses, classes, seed)

--kind stereo writes left/right pairs of a rig with a known baseline, unrectified and rectified
(rectified/, with ground-truth disparity). --kind board renders calibration boards
(recon.synth.boards). Everything is deterministic in --seed.

examples:
  recon synth -o out/orbit --views 30 --width 640 --height 480
  recon synth -o out/fish --model OPENCV_FISHEYE --fov 170 --trajectory walk --views 60
  recon synth -o out/stereo --kind stereo --views 5 --baseline 0.12
"""

_KINDS = ("scene", "stereo", "board")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_output(p, "output folder (created)")
    p.add_argument("--kind", choices=_KINDS, default="scene", help="what to render (default: scene)")
    p.add_argument("--views", type=int, default=30, help="number of views (stereo: pairs) (default: 30)")
    p.add_argument("--width", type=int, default=640, help="image width in pixels (default: 640)")
    p.add_argument("--height", type=int, default=480, help="image height in pixels (default: 480)")
    p.add_argument("--model", default="PINHOLE",
                   help="COLMAP camera model: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, "
                        "FULL_OPENCV, OPENCV_FISHEYE, SIMPLE_RADIAL_FISHEYE, RADIAL_FISHEYE (default: PINHOLE)")
    p.add_argument("--fov", type=float, default=None,
                   help="horizontal field of view in degrees (default: 60, fisheye models 150)")
    p.add_argument("--distortion", default=None,
                   help="comma-separated distortion coefficients in COLMAP order (default: moderate "
                        "built-in values for the model; '0' entries for none)")
    p.add_argument("--trajectory", choices=("orbit", "walk", "hemisphere", "street"), default="orbit",
                   help="camera path: orbit around the table, forward walk-through (small baselines), "
                        "random hemisphere, or street: a long loop past the walls of a 12 m room "
                        "(hundreds of views; default: orbit)")
    p.add_argument("--radius", type=float, default=3.2, help="orbit / hemisphere radius in metres (default: 3.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of scene, trajectory and sampling (default: 0)")
    p.add_argument("--supersample", type=int, default=2,
                   help="anti-aliasing rays per pixel side (default: 2, i.e. 4 rays per pixel)")
    p.add_argument("--points", type=int, default=4000,
                   help="ground-truth 3D points sampled for sparse/0 (default: 4000)")
    p.add_argument("--baseline", type=float, default=0.12, help="stereo baseline in metres (default: 0.12)")
    p.add_argument("--noise", type=float, default=0.0, help="image noise std in 8-bit units (default: 0)")
    p.add_argument("--blur", type=float, default=0.0, help="Gaussian blur sigma in pixels (default: 0)")
    p.add_argument("--exposure", type=float, default=1.0, help="exposure gain (default: 1)")
    p.add_argument("--texel-size", type=float, default=0.004,
                   help="texture resolution in metres per texel (default: 0.004)")
    p.add_argument("--board", default="chessboard",
                   help="--kind board: chessboard, charuco or another board type of recon.synth.boards "
                        "(default: chessboard)")
    p.add_argument("--board-cols", type=int, default=9, help="--kind board: inner corners per row (default: 9)")
    p.add_argument("--board-rows", type=int, default=6, help="--kind board: inner corners per column (default: 6)")
    p.add_argument("--board-square", type=float, default=0.03, help="--kind board: square size in metres (default: 0.03)")
    add_threads(p, "processes rendering views in parallel (default: 1; output identical for any value)",
                default=1, workers_alias=True)
    add_quiet(p, "no progress bar")


def _distortion(text):
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--distortion: expected comma-separated numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from recon import synth

    if args.views < 1:
        raise ValueError(f"--views: expected a positive number of views, got {args.views}")
    for name in ("width", "height"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name}: expected a positive number of pixels, got {getattr(args, name)}")
    if args.radius <= 0:
        raise ValueError(f"--radius: expected > 0 m, got {args.radius}")
    try:
        camera = synth.make_camera(args.model, args.width, args.height, fov_deg=args.fov,
                                   distortion=_distortion(args.distortion))
    except ValueError as e:
        msg = str(e)
        for key, opt in (("model:", "--model"), ("fov_deg:", "--fov"), ("distortion:", "--distortion")):
            msg = msg.replace(key, opt + ":", 1) if msg.startswith(key) else msg
        raise ValueError(msg) from None
    out = Path(args.output)

    if args.kind == "board":
        try:
            from recon.synth.boards import write_board_dataset
        except ImportError:
            print("recon synth: --kind board needs recon.synth.boards (calibration boards), which is not "
                  "available in this installation yet", file=sys.stderr)
            return 2
        write_board_dataset(out, kind=args.board, cols=args.board_cols, rows=args.board_rows,
                            square=args.board_square, num_views=args.views, camera=camera, seed=args.seed,
                            image_noise=args.noise, blur_px=args.blur)
        print(f"wrote {args.views} {args.board} views ({args.board_cols}x{args.board_rows} inner corners) to {out}")
        return 0

    render = synth.RenderOptions(supersample=args.supersample, exposure=args.exposure,
                                 blur_sigma=args.blur, noise_sigma=args.noise, noise_seed=args.seed)
    if args.threads < 1:
        raise ValueError(f"--threads: expected a positive number of processes, got {args.threads}")
    options = synth.DatasetOptions(render=render, num_points=args.points, progress=not args.quiet,
                                   workers=args.threads)
    room = {"room_half_size": synth.STREET_ROOM_HALF_SIZE} if args.trajectory == "street" else {}
    scene = synth.make_scene(args.seed, synth.SceneConfig(texel_size=args.texel_size, **room))
    if args.kind == "stereo":
        from recon.synth.stereo import write_stereo_dataset

        rig = synth.StereoRig.horizontal(camera, args.baseline, toe_in_deg=1.0, vertical_offset=0.002, roll_deg=0.5)
        poses = _trajectory(args, synth, n=args.views)
        ds = write_stereo_dataset(out, scene, rig, poses, options=options)
        print(f"wrote {len(poses)} stereo pairs (baseline {rig.baseline:.3f} m) to {out}")
        return 0

    poses = _trajectory(args, synth, n=args.views)
    ds = synth.write_dataset(out, scene, camera, poses, options=options,
                             extra_gt={"trajectory": {"kind": args.trajectory, "radius": args.radius}})
    pts = ds.gt.get("points") or {}
    print(f"wrote {len(ds)} views ({camera.model} {camera.width}x{camera.height}) and "
          f"{pts.get('count', 0)} ground-truth points to {out}")
    return 0


def _trajectory(args, synth, n: int):
    if args.trajectory == "orbit":
        return synth.orbit(n, radius=args.radius)
    if args.trajectory == "walk":
        return synth.walkthrough(n, seed=args.seed)
    if args.trajectory == "street":  # a loop past the walls of a larger room (synth.street)
        return synth.street(n, seed=args.seed)
    return synth.hemisphere(n, radius=args.radius, seed=args.seed)
