"""`recon view PATH`: open a COLMAP model, a recon sfm/train output, a PLY (points, labelled
points, 3DGS splats, mesh) or a mesh file in the browser (viser)."""

from __future__ import annotations

import argparse

from recon.cli._style import add_output

NAME = "view"
HELP = "show a reconstruction, point cloud, splats or mesh in the browser (viser)"
ORDER = 80
OPENS_IMAGES = True  # gets --max-image-pixels (recon.cli.build_parser)
DESCRIPTION = """\
Show PATH in a web viewer (viser) and print its URL. PATH may be:
  a COLMAP model folder (cameras/images/points3D .bin or .txt),
  a `recon sfm` output folder (sparse/0, report.json),
  a `recon train splat` output folder (splat.ply),
  a PLY point cloud (colour by RGB / height), a labelled PLY (class_id / instance_id),
  a 3DGS splat PLY (f_dc_*, opacity, scale_*, rot_*), a mesh (PLY with faces, OBJ, GLB, STL, OFF).

The server binds 127.0.0.1 (this machine only). Over SSH forward the port:
  ssh -L 8080:127.0.0.1:8080 HOST   then open http://127.0.0.1:8080
If the port is taken the next free one is used and announced. Stop with Ctrl-C.
Screenshots, camera paths and exported objects go to -o/--output (and are offered as a download).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="file or folder to show (see above)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to your network)")
    parser.add_argument("--port", type=int, default=8080, help="first port to try (default 8080)")
    parser.add_argument("--images", metavar="DIR", default=None,
                        help="folder with the photos of a COLMAP model (default: images/ next to it)")
    parser.add_argument("--point-budget", type=int, default=1_000_000, metavar="N",
                        help="most points sent to the browser (deterministic random subset; default 1e6)")
    parser.add_argument("--point-size", type=float, default=None, help="point size in world units")
    add_output(parser, "where screenshots, camera paths and exports are written (default ./recon-view)",
               metavar="DIR", default="recon-view")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="stop the server after S seconds (default: run until Ctrl-C)")
    parser.add_argument("--no-block", action="store_true",
                        help="load, start, print the URL and stop at once (checks that PATH loads)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from viewer.app import SceneViewer, ViewerOptions
    from viewer.detect import load

    if args.point_budget < 1:
        raise ValueError(f"--point-budget: expected a positive integer, got {args.point_budget}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port: expected 0..65535, got {args.port}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"recon view: warning: binding {args.host}: anyone who can reach this machine on the "
              "port can open the viewer (there is no password)", file=sys.stderr, flush=True)
    content = load(args.path, image_dir=args.images)
    opts = ViewerOptions(host=args.host, port=args.port, point_budget=args.point_budget,
                         point_size=args.point_size, output_dir=Path(args.output))
    viewer = SceneViewer(content, opts)
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        # a process started in the background of a non-interactive shell inherits SIGINT ignored,
        # and Python then never raises KeyboardInterrupt: Ctrl-C / kill -INT must still stop us
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        print(f"recon view: {content.title}", flush=True)
        for note in content.notes:
            print(f"  {note}", flush=True)
        print(f"recon view: open {viewer.url}  (Ctrl-C to stop)", flush=True)
        if not args.no_block:
            viewer.wait(args.timeout)
    finally:
        viewer.close()
    print("recon view: stopped", flush=True)
    return 0
