"""Time to first display of a large point cloud and a large splat set in `recon view`.

    PYTHONPATH=. python bench/bench_viewer.py [--points 1000000] [--splats 500000] [--no-browser]

For each case it measures (viser imported beforehand, so neither side pays its ~1 s import)
  * server load: from the in-memory arrays to a running viewer with the scene queued
    (SceneViewer construction: colour modes, subsampling order, covariances from log-scales and
    quaternions, GUI, message serialisation);
  * browser first frame: from the page opening in headless Chromium (SwiftShader WebGL, no GPU)
    to the first screenshot in which the content is drawn (polled every 0.25 s), including the
    websocket transfer;
and the same two numbers for the peer, bare viser (``add_point_cloud`` / ``add_gaussian_splats``
called directly with ready-made arrays), as a ratio. Target: under 10 s to first display.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _red(img: np.ndarray) -> int:
    return int(((img[..., 0] > 150) & (img[..., 1] < 100) & (img[..., 2] < 100)).sum())


def _browser_first_frame(url: str, min_red: int, timeout: float) -> float:
    from viewer.headless import HeadlessChromium

    with HeadlessChromium(width=1024, height=700) as b:
        t0 = time.perf_counter()
        try:
            b.navigate(url, timeout=timeout)
            b.wait_for(lambda im: _red(im[:, :680]) > min_red, timeout=timeout, interval=0.25)
        except TimeoutError:  # also a single screenshot that the busy renderer never delivered
            return float("inf")
        return time.perf_counter() - t0


def _point_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xyz = np.c_[rng.uniform(-1, 1, (n, 2)), 0.05 * rng.normal(size=n)].astype(np.float32)
    rgb = np.zeros((n, 3), np.uint8)
    rgb[:, 0] = rng.integers(180, 256, n)
    rgb[:, 1:] = rng.integers(0, 60, (n, 2))
    return xyz, rgb


def _splat_data(n: int, seed: int = 1):
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    means = np.c_[rng.uniform(-1, 1, (n, 2)), 0.05 * rng.normal(size=n)].astype(np.float32)
    return SimpleNamespace(
        means=means, log_scales=np.full((n, 3), np.log(0.004), np.float32) + 0.3 * rng.normal(size=(n, 3)),
        quats_wxyz=rng.normal(size=(n, 4)).astype(np.float32), opacity_logits=np.full(n, 3.0, np.float32),
        sh_dc=np.tile(np.array([1.6, -1.6, -1.6], np.float32), (n, 1)))


def _view(content):
    from viewer.app import SceneViewer

    t0 = time.perf_counter()
    v = SceneViewer(content, port=0, verbose=False, load_thumbnails=False)
    return v, time.perf_counter() - t0


def _bare_viser(kind: str, data):
    import contextlib
    import io

    import viser

    from viewer.convert import rgb_from_sh_dc, sigmoid, splat_covariances

    if kind == "splats":  # the peer gets its inputs precomputed: only viser's own work is timed
        cov = splat_covariances(data.log_scales, data.quats_wxyz)
        rgb = rgb_from_sh_dc(data.sh_dc)
        op = sigmoid(data.opacity_logits)[:, None]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    if kind == "points":
        server.scene.add_point_cloud("/pc", data[0], data[1], point_size=0.002, precision="float32")
    else:
        server.scene.add_gaussian_splats("/gs", centers=data.means, covariances=cov, rgbs=rgb, opacities=op)
    server.initial_camera.position = (0.0, -2.2, 1.6)
    server.initial_camera.look_at = (0.0, 0.0, 0.0)
    return server, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--splats", type=int, default=500_000)
    ap.add_argument("--no-browser", action="store_true", help="server-side times only")
    ap.add_argument("--timeout", type=float, default=90.0, help="browser wait per case, seconds")
    args = ap.parse_args()

    import matplotlib  # noqa: F401 - imported once, outside the timings, for both sides
    import viser  # noqa: F401

    from viewer.content import PointLayer, SceneContent, splats_from_gaussians
    from viewer.headless import find_chromium

    browser = not args.no_browser and find_chromium() is not None
    rows = []
    cases = []
    if args.points:
        xyz, rgb = _point_data(args.points)
        cases.append(("points", f"{args.points:,} points", (xyz, rgb),
                      lambda: SceneContent(points=PointLayer(xyz, rgb))))
    if args.splats:
        g = _splat_data(args.splats)
        cases.append(("splats", f"{args.splats:,} splats", g,
                      lambda: SceneContent(splats=splats_from_gaussians(g))))
    for kind, label, data, make in cases:
        t0 = time.perf_counter()
        content = make()
        v, _ = _view(content)
        ours_load = time.perf_counter() - t0
        ours_browser = _browser_first_frame(v.url, 2000, args.timeout) if browser else float("nan")
        v.close()
        server, peer_load = _bare_viser(kind, data)
        peer_browser = _browser_first_frame(f"http://127.0.0.1:{server.get_port()}", 2000, args.timeout) \
            if browser else float("nan")
        server.stop()
        rows.append((label, ours_load, peer_load, ours_browser, peer_browser))
        print(f"{label}: recon view load {ours_load:.2f} s, browser {ours_browser:.2f} s; "
              f"bare viser load {peer_load:.2f} s, browser {peer_browser:.2f} s", flush=True)

    print()
    print("| case | recon view: server load s | bare viser: server load s | ratio | "
          "recon view: browser first frame s | bare viser: browser first frame s | ratio | "
          "recon view total s (target < 10) |")
    print("|---|---|---|---|---|---|---|---|")
    def fmt(x):
        return f"> {args.timeout:.0f} (timed out)" if x == float("inf") else f"{x:.2f}"

    for label, ol, pl, ob, pb in rows:
        ratio = ob / pb if np.isfinite(ob) and np.isfinite(pb) else float("nan")
        print(f"| {label} | {ol:.2f} | {pl:.2f} | {ol / pl:.2f} | {fmt(ob)} | {fmt(pb)} | {ratio:.2f} | "
              f"{fmt(ol + ob)} |")
    print("\nbrowser: headless Chromium, SwiftShader WebGL (no GPU); first frame = first screenshot "
          "with the content drawn, polled every 0.25 s, including the websocket transfer")


if __name__ == "__main__":
    main()
