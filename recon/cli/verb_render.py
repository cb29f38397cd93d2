"""`recon render MODEL -o FRAMES`: render novel views / a turntable from a trained splat output."""

from __future__ import annotations

import argparse

from recon.cli._style import add_output

NAME = "render"
HELP = "render images or a turntable from a trained Gaussian-splatting or NeRF output"
ORDER = 65
DESCRIPTION = """\
Render frames from OUT/splat.ply (written by `recon train splat`) or OUT/model.pt (written by
`recon train nerf`), through:
  --cameras test    the held-out test cameras of the run (the split recorded in OUT/report.json)
  --cameras train   every training camera
  --cameras orbit   a turntable around what the cameras look at (--frames N frames), at the
                    height and distance of the training cameras
Frames are written as FRAMES/frame_0000.png ...; --video FILE.mp4 also writes a video (OpenCV).
The dataset and resolution are taken from OUT/report.json; --data overrides the dataset path.

Example:
  recon render out/splat --cameras orbit --frames 120 -o out/frames --video out/turntable.mp4
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="MODEL",
                        help="trained model: a `recon train` output folder (splat.ply, or a NeRF model.pt)")
    add_output(parser, "folder for the frames", metavar="FRAMES")
    parser.add_argument("--cameras", choices=["test", "train", "orbit"], default="orbit",
                        help="which cameras to render (default orbit); ignored with --camera-path")
    parser.add_argument("--camera-path", metavar="PATH.json",
                        help="render the frames of a camera path recorded in `recon view` (recon.camera_path JSON)")
    parser.add_argument("--frames", type=int, default=60, help="orbit frames (default 60)")
    parser.add_argument("--data", help="dataset folder (default: the one recorded in OUT/report.json)")
    parser.add_argument("--resolution-scale", type=float,
                        help="image scale (default: the one used for training)")
    parser.add_argument("--sh-degree", type=int, choices=[0, 1, 2, 3], help="default: all bands in the PLY")
    parser.add_argument("--background", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="default: the training background")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--video", metavar="FILE.mp4", help="also write the frames as a video")
    parser.add_argument("--fps", type=int, default=30)


def run(args: argparse.Namespace) -> int:
    from render.frames import RenderFramesOptions, render_run_frames

    opts = RenderFramesOptions(
        cameras=args.cameras, camera_path=args.camera_path, frames=args.frames, data=args.data,
        resolution_scale=args.resolution_scale, sh_degree=args.sh_degree,
        background=None if args.background is None else tuple(args.background), device=args.device,
        video=args.video, fps=args.fps)
    r = render_run_frames(args.run_dir, args.output, opts)
    print(f"render: {len(r.frames)} frames -> {args.output}" + (f", video {args.video}" if args.video else ""))
    return 0
