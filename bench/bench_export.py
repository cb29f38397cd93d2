"""TSDF fusion: recon.export.fuse_tsdf (sparse VoxelBlockGrid, automatic bounds and voxel) against
Open3D's legacy pipeline (UniformTSDFVolume with a hand-set cube, as the issue's reference) on
the same recon.synth depth maps. Prints time per megapixel of depth, peak memory and Chamfer
distance to the true visible surface (% of the bounding-box diagonal).

Each method runs in its own process so its peak RSS is its own (ru_maxrss after fusion minus
the RSS once the depth maps are loaded).

    python bench/bench_export.py                       # 24 views at 320x240 (the issue's scene)
    python bench/bench_export.py --width 640 --height 480 --views 24
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(method: str, data: str, voxel: float) -> dict:
    import numpy as np

    from recon.export import Mesh, backproject, chamfer_distance, fuse_tsdf, load_depth_views

    views = load_depth_views(data)
    truth = np.concatenate([backproject(v)[0] for v in views])
    import open3d as o3d

    base = _rss_mb()
    t0 = time.perf_counter()
    if method == "recon":
        res = fuse_tsdf(views)
        mesh, voxel_used = res.mesh, res.volume.voxel_size
    else:
        # The reference: UniformTSDFVolume, cube set by hand around the room (8 x 8 m floor).
        length, origin = 8.4, np.array([-4.2, -4.2, -0.2])
        res_vox = int(np.ceil(length / voxel))
        vol = o3d.pipelines.integration.UniformTSDFVolume(
            length=length, resolution=res_vox, sdf_trunc=4 * voxel,
            color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8, origin=origin)
        for v in views:
            cam = v.camera
            intr = o3d.camera.PinholeCameraIntrinsic(cam.width, cam.height, *cam.focal, *cam.principal_point)
            rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
                o3d.geometry.Image(v.rgb), o3d.geometry.Image(np.where(v.valid, v.depth, 0).astype(np.float32)),
                depth_scale=1.0, depth_trunc=100.0, convert_rgb_to_intensity=False)
            vol.integrate(rgbd, intr, v.cam_from_world.matrix())
        m = vol.extract_triangle_mesh()
        m.compute_vertex_normals()
        mesh, voxel_used = Mesh.from_open3d(m), voxel
    seconds = time.perf_counter() - t0
    peak = _peak_mb() - base
    mp = sum(v.depth.size for v in views) / 1e6
    c = chamfer_distance(mesh, truth)
    return {"method": method, "seconds": seconds, "s_per_mp": seconds / mp, "peak_mb": peak,
            "voxel": voxel_used, "faces": mesh.num_faces, "chamfer_pct": 100 * c.relative}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=24)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--voxel", type=float, default=0.025, help="Open3D legacy voxel (m); ours chooses its own")
    ap.add_argument("--data", help="an existing recon synth folder (default: render one)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], float(args.child[2]))))
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = str(Path(tmp) / "scene")
            subprocess.run([sys.executable, "-m", "recon", "synth", data, "--views", str(args.views), "--width",
                            str(args.width), "--height", str(args.height), "-q"], check=True, env=env)
        rows = []
        for method in ("recon", "open3d-legacy"):
            out = subprocess.run([sys.executable, __file__, "--child", method, data, str(args.voxel)],
                                 capture_output=True, text=True, env=env, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    mp = args.views * args.width * args.height / 1e6
    print(f"TSDF fusion, {args.views} views {args.width}x{args.height} ({mp:.2f} MP of depth); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'method':<16}{'voxel m':>9}{'s':>8}{'s/MP':>8}{'peak MB':>9}{'faces':>10}{'Chamfer %diag':>15}")
    for r in rows:
        print(f"{r['method']:<16}{r['voxel']:>9.4f}{r['seconds']:>8.2f}{r['s_per_mp']:>8.2f}{r['peak_mb']:>9.0f}"
              f"{r['faces']:>10}{r['chamfer_pct']:>15.3f}")
    a, b = rows
    print(f"ratio recon / open3d-legacy: time {a['seconds'] / b['seconds']:.2f}x, peak memory "
          f"{a['peak_mb'] / max(b['peak_mb'], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
