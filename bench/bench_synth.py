"""Speed and memory of recon.synth rendering; peer: Open3D's RaycastingScene on the same scene.

Renders N views (default 40) at WxH (default 640x480) of the default scene on an orbit and
prints seconds and peak memory (target: 40 views at 640x480 in < 60 s, < 2 GiB). The peer row
casts the same pixel-centre rays with Open3D's RaycastingScene (Embree, multi-threaded) into the
triangle mesh of the same scene: geometry only (t, primitive id), no texturing, shading or
anti-aliasing, so it is a lower bound for the geometry part of our renderer.

    python bench/bench_synth.py [--views 40] [--width 640] [--height 480] [--write OUT]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


class _Timer:
    """Wall and CPU seconds of a block (CPU time is robust to other processes sharing the
    cores; for multi-threaded code it sums the threads)."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=40)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--model", default="PINHOLE")
    ap.add_argument("--write", default=None, help="also time write_dataset into this folder")
    ap.add_argument("--no-open3d", action="store_true")
    args = ap.parse_args()

    from recon import synth
    from recon.synth._raycast import cast

    rows = []
    with _Timer() as t:
        scene = synth.make_scene(0)
        _ = scene.atlas
    t_scene = t
    rows.append(("scene + texture bake (once)", t, None))

    cam = synth.make_camera(args.model, args.width, args.height)
    poses = synth.orbit(args.views, radius=3.2)
    with _Timer() as t:
        synth.camera_rays(cam, 1)
        synth.camera_rays(cam, 2)
        synth.pixel_angles(cam)
    rows.append(("camera rays (once per camera)", t, None))

    with _Timer() as t:
        for T in poses:
            synth.render_view(scene, cam, T)
    t_render = t
    rows.append((f"render_view x{args.views} (RGB+depth+normals+labels)", t, None))

    import os

    from recon.synth.dataset import _render_all

    workers = max(2, os.cpu_count() or 1)
    with _Timer() as t:
        for _ in _render_all(scene, [cam] * len(poses), poses, synth.DatasetOptions(workers=workers)):
            pass
    t_par = t
    rows.append((f"render x{args.views} in {workers} processes (DatasetOptions.workers)", t, None))

    dirs, _ = synth.camera_rays(cam, 1)
    with _Timer() as t:
        for T in poses:
            d_w = dirs @ T.rotation
            for i in range(0, len(d_w), 1 << 17):
                cast(scene, T.dst_origin_in_src(), d_w[i:i + (1 << 17)])
    t_geom = t
    rows.append((f"ours: pixel-centre ray cast x{args.views} (geometry only)", t, None))
    peak_ours = _peak_rss_gib()

    if args.write:
        with _Timer() as t:
            synth.write_dataset(args.write, scene, cam, poses, options=synth.DatasetOptions(progress=False))
        rows.append((f"write_dataset x{args.views} (render + files + GT points + sparse/0)", t, None))
        peak_ours = _peak_rss_gib()

    if not args.no_open3d:
        try:
            import open3d as o3d
        except Exception as e:  # noqa: BLE001 - optional peer: any import failure means 'unavailable'
            print(f"open3d unavailable: {e}", file=sys.stderr)
        else:
            from recon.synth.mesh import scene_mesh

            m = scene_mesh(scene)
            rs = o3d.t.geometry.RaycastingScene()
            rs.add_triangles(o3d.core.Tensor(m.vertices.astype(np.float32)),
                             o3d.core.Tensor(m.faces.astype(np.uint32)))
            with _Timer() as t:
                for T in poses:
                    d_w = (dirs @ T.rotation).astype(np.float32)
                    o = np.broadcast_to(T.dst_origin_in_src().astype(np.float32), d_w.shape)
                    rays = o3d.core.Tensor(np.ascontiguousarray(np.concatenate([o, d_w], 1)))
                    rs.cast_rays(rays)
            rows.append((f"open3d RaycastingScene x{args.views} (geometry only, {len(m.faces)} tris)", t,
                         (t_geom.wall / t.wall, t_geom.cpu / t.cpu)))

    print(f"\nrecon.synth: {args.views} views {args.model} {args.width}x{args.height}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'step':<70} {'wall s':>8} {'cpu s':>8} {'ours/peer wall':>15} {'ours/peer cpu':>14}")
    for name, t, ratio in rows:
        r = "" if ratio is None else f"{ratio[0]:15.2f} {ratio[1]:14.2f}"
        print(f"{name:<70} {t.wall:8.2f} {t.cpu:8.2f} {r}")
    print(f"{'per view (render_view)':<70} {t_render.wall / args.views:8.3f} {t_render.cpu / args.views:8.3f}")
    print(f"peak memory (RSS) after our rendering: {peak_ours:.2f} GiB")
    print(f"total scene + {args.views} views: {t_scene.wall + t_render.wall:.1f} s wall in one process, "
          f"{t_scene.wall + t_par.wall:.1f} s wall with {workers} processes, "
          f"{t_scene.cpu + t_render.cpu:.1f} s CPU (target < 60 s); memory {peak_ours:.2f} GiB (target < 2 GiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
