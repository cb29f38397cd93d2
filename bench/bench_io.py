"""Benchmark recon.io against the peer readers/writers, measured in the same run.

    PYTHONPATH=. python bench/bench_io.py [--points 1000000] [--colmap-points 20000] [--repeat 3]

Prints a table: operation, ours (s), peer (s), ours/peer (lower is better). Peers: Open3D and
plyfile for PLY point clouds, pycolmap for COLMAP models. Best of --repeat runs each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _colmap_rows(pycolmap, ref, tmp: Path, kind: str, repeat: int, read_colmap, write_colmap):
    d = tmp / f"colmap_{kind}"
    d.mkdir()
    ref_write = ref.write if kind == "bin" else ref.write_text
    ref_write(str(d))
    rec = read_colmap(d)
    obs = int(rec.track_lengths().sum())
    label = f"COLMAP {kind} ({len(rec.images)} img, {len(rec.points3D):,} pts, {obs:,} obs)"
    out = tmp / f"out_{kind}"
    out.mkdir()
    return [
        (f"read {label}", best(lambda: read_colmap(d), repeat), "pycolmap",
         best(lambda: pycolmap.Reconstruction(str(d)), repeat)),
        (f"write {label}", best(lambda: write_colmap(rec, out, binary=kind == "bin"), repeat), "pycolmap",
         best(lambda: ref_write(str(out)), repeat)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--colmap-points", type=int, default=20_000)
    ap.add_argument("--colmap-frames", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from recon.io import PointCloud, read_colmap, read_ply, write_colmap, write_ply

    rng = np.random.default_rng(0)
    n = args.points
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # ---- PLY: xyz float64 + rgb + normals (what Open3D stores) ----
        cloud = PointCloud(rng.normal(size=(n, 3)), rng.integers(0, 256, (n, 3), dtype=np.uint8),
                           rng.normal(size=(n, 3)))
        ours_w = best(lambda: write_ply(tmp / "ours.ply", cloud), args.repeat)
        ours_r = best(lambda: read_ply(tmp / "ours.ply"), args.repeat)
        peers = {}
        try:
            import open3d as o3d

            pc = o3d.geometry.PointCloud()
            pc.points = o3d.utility.Vector3dVector(cloud.xyz)
            pc.colors = o3d.utility.Vector3dVector(cloud.rgb / 255.0)
            pc.normals = o3d.utility.Vector3dVector(cloud.normals)
            peers["open3d"] = (best(lambda: o3d.io.write_point_cloud(str(tmp / "o3d.ply"), pc), args.repeat),
                               best(lambda: o3d.io.read_point_cloud(str(tmp / "ours.ply")), args.repeat))
        except ImportError:
            pass
        try:
            import plyfile

            def pf_read():
                v = plyfile.PlyData.read(str(tmp / "ours.ply"))["vertex"].data
                return np.stack([v["x"], v["y"], v["z"]], 1)

            def pf_write():
                dt = [("x", "f8"), ("y", "f8"), ("z", "f8"), ("nx", "f8"), ("ny", "f8"), ("nz", "f8"),
                      ("red", "u1"), ("green", "u1"), ("blue", "u1")]
                a = np.empty(n, dt)
                for j, c in enumerate("xyz"):
                    a[c] = cloud.xyz[:, j]
                    a["n" + c] = cloud.normals[:, j]
                a["red"], a["green"], a["blue"] = cloud.rgb.T
                plyfile.PlyData([plyfile.PlyElement.describe(a, "vertex")]).write(str(tmp / "pf.ply"))

            peers["plyfile"] = (best(pf_write, args.repeat), best(pf_read, args.repeat))
        except ImportError:
            pass
        for peer, (pw, pr) in peers.items():
            rows.append((f"PLY write {n:,} pts (binary)", ours_w, peer, pw))
            rows.append((f"PLY read {n:,} pts (binary)", ours_r, peer, pr))
        if not peers:
            rows += [(f"PLY write {n:,} pts", ours_w, "-", float("nan")),
                     (f"PLY read {n:,} pts", ours_r, "-", float("nan"))]
        m = min(n, 200_000)
        small = PointCloud(cloud.xyz[:m], cloud.rgb[:m], cloud.normals[:m])
        aw = best(lambda: write_ply(tmp / "a.ply", small, binary=False), 1)
        ar = best(lambda: read_ply(tmp / "a.ply"), 1)
        rows.append((f"PLY write {m:,} pts (ASCII)", aw, "-", float("nan")))
        rows.append((f"PLY read {m:,} pts (ASCII)", ar, "-", float("nan")))

        # ---- COLMAP ----
        try:
            import pycolmap
        except ImportError:
            pycolmap = None
        if pycolmap is not None:
            opts = pycolmap.SyntheticDatasetOptions()
            opts.num_points3D = args.colmap_points
            opts.num_frames_per_rig = args.colmap_frames
            ref = pycolmap.synthesize_dataset(opts)
            for kind in ("bin", "txt"):
                rows += _colmap_rows(pycolmap, ref, tmp, kind, args.repeat, read_colmap, write_colmap)

    w = max(len(r[0]) for r in rows)
    print(f"{'operation':<{w}}  {'ours (s)':>9}  {'peer':>8}  {'peer (s)':>9}  {'ours/peer':>9}")
    for op, ours, peer, theirs in rows:
        ratio = ours / theirs if np.isfinite(theirs) and theirs > 0 else float("nan")
        print(f"{op:<{w}}  {ours:9.3f}  {peer:>8}  {theirs:9.3f}  {ratio:9.2f}")


if __name__ == "__main__":
    main()
