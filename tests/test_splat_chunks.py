"""Chunked Gaussian splatting (render.splat.chunks): the cut of a long synthetic scene into
ground cells, the merge that keeps each cell's own Gaussians (no seam of duplicates), the CLI
options, and (slow) the merged model against one model trained for the same total steps."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest


from recon.io import detect  # noqa: E402
from recon.io.gaussians import read_splat_ply  # noqa: E402
from render.splat.chunks import ChunkOptions, plan_chunks, train_chunked  # noqa: E402
from render.splat.toy import strip_scene  # noqa: E402
from render.splat.trainer import TrainConfig  # noqa: E402


def _cfg(steps: int) -> TrainConfig:
    base = TrainConfig.preset("cpu", steps=steps, background=(1.0, 1.0, 1.0), sh_degree=1,
                              sh_degree_interval=100, checkpoint_every=100_000)
    return dataclasses.replace(base, densify=dataclasses.replace(base.densify, refine_start=50, refine_every=50,
                                                                 max_gaussians=1500))


@pytest.fixture(scope="module")
def small_strip():
    return strip_scene(24, 32, 24, n_gaussians=900, n_points=400, background=(1.0, 1.0, 1.0))


def test_cells_tile_the_ground_and_views_see_their_cell(small_strip):
    scene = small_strip
    train = [i for i in range(len(scene.views)) if i % 8]
    plan = plan_chunks(scene, train, ChunkOptions(chunks=3, border=0.25))
    # the cameras walk in the plane z = 0.5: the ground axes are horizontal
    assert np.abs(plan.axes @ [0.0, 0.0, 1.0]).max() < 1e-9
    uv = plan.ground(scene.points_xyz)
    inside = np.stack([c.contains(uv) for c in plan.cells])
    assert (inside.sum(0) == 1).all()  # every point in exactly one cell
    for c, e, pts in zip(plan.cells, plan.expanded, plan.points, strict=True):
        assert e.contains(uv[c.contains(uv)]).all()  # the expanded cell holds its cell
        assert len(pts) > c.contains(uv).sum()  # and more: the border
    # the strip runs along x: its cells are ordered along x, and each chunk's cameras are the
    # ones walking past its cell (their mean x lies inside the cell's x range, widened by 1 m)
    xs = [np.mean([scene.views[i].cam_from_world.dst_origin_in_src()[0] for i in v]) for v in plan.views]
    cell_x = [scene.points_xyz[c.contains(uv), 0] for c in plan.cells]
    for x, px in zip(xs, cell_x, strict=True):
        assert px.min() - 1.0 < x < px.max() + 1.0, (x, px.min(), px.max())
    assert all(set(v) <= set(train) and len(v) < len(train) for v in plan.views)


def test_merge_keeps_each_cells_own_gaussians(small_strip, tmp_path):
    res = train_chunked(small_strip, tmp_path, _cfg(30), ChunkOptions(chunks=2), log=lambda m: None, threads=1)
    merged = read_splat_ply(tmp_path / "splat.ply")
    own, total = [], 0
    for k, cell in enumerate(res.plan.cells):
        chunk = read_splat_ply(tmp_path / "chunks" / f"{k:03d}" / "splat.ply")
        total += len(chunk.means)
        own.append(int(cell.contains(res.plan.ground(chunk.means)).sum()))
    assert len(merged.means) == sum(own) == res.report["num_gaussians"]  # bar: within 10 %; here exact
    assert len(merged.means) < total  # the borders' copies were dropped
    # no seam of duplicates: no Gaussian of the merged model appears twice
    assert len(np.unique(merged.means, axis=0)) == len(merged.means)
    art = detect(tmp_path)
    assert art.kind.value == "splat_output" and art.method == "splat"
    assert res.report["psnr_test"] is not None and res.report["test_views"] == 3
    # a re-run reuses the finished chunks (done-markers) and gives the same merged model
    again = train_chunked(small_strip, tmp_path, _cfg(30), ChunkOptions(chunks=2), log=lambda m: None, threads=1)
    assert again.report["num_gaussians"] == res.report["num_gaussians"]


def test_chunks_start_from_a_coarse_model_at_the_whole_scenes_extent(small_strip, tmp_path):
    """Each chunk trains at the whole scene's extent (its own camera spread would shrink the means'
    learning rate and the densification sizes) and starts from the coarse model's Gaussians in
    its grown cell."""
    import json

    from render.data import scene_extent
    from render.scaffold import Split

    res = train_chunked(small_strip, tmp_path, _cfg(20), ChunkOptions(chunks=2, coarse_steps=10),
                        log=lambda m: None, threads=1)
    train_views = Split.every(small_strip, test_every=8).train
    whole = scene_extent([small_strip.views[i].cam_from_world for i in train_views])
    coarse = read_splat_ply(tmp_path / "coarse" / "000" / "splat.ply")
    assert res.report["chunks"]["coarse"]["steps"] == 10 and res.report["steps"] == 10 + 2 * 20
    for k, views in enumerate(res.plan.views):
        cfg = json.loads((tmp_path / "chunks" / f"{k:03d}" / "config.json").read_text())
        assert cfg["extent"] == pytest.approx(whole)
        own = scene_extent([small_strip.views[i].cam_from_world for i in views])
        assert own < 0.95 * whole  # the chunk's own spread is smaller: the override matters
        log = json.loads((tmp_path / "chunks" / f"{k:03d}" / "report.json").read_text())
        n_init = int(res.plan.expanded[k].contains(res.plan.ground(coarse.means)).sum())
        assert n_init > 0 and log["init"]["gaussians"] == n_init


def test_chunk_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="chunks"):
        ChunkOptions(chunks=0)
    with pytest.raises(ValueError, match="min_visible"):
        ChunkOptions(min_visible=0)
    # the CLI: cluster options without --chunks, and a bad --chunks, are one-line exit-2 errors
    for extra, word in ((["--workers", "2"], "--chunks"), (["--chunks", "0"], "chunks")):
        p = subprocess.run([sys.executable, "-m", "recon", "train", "splat", str(tmp_path), "-o", str(tmp_path / "o"),
                            *extra], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, p.stderr
        lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("[splat]")]
        assert len(lines) == 1 and word in lines[0], p.stderr


@pytest.mark.slow
def test_two_chunks_on_two_workers_match_one_model_of_the_same_total_steps(tmp_path):
    """The #25 bar: `--chunks 2 --workers 2` within 1 dB test PSNR of one model trained for the
    same total steps (a coarse model of 400 + 2 chunks x 600 = 1600), Gaussian count = the
    chunks' own cells."""
    from recon.cluster import ClusterOptions, open_cluster
    from render.splat.trainer import train

    scene = strip_scene(40, 64, 48, n_gaussians=1500, n_points=600, background=(1.0, 1.0, 1.0))
    steps, coarse = 600, 400
    with open_cluster(ClusterOptions(workers=2), tmp_path / "chunked") as cluster:
        res = train_chunked(scene, tmp_path / "chunked", _cfg(steps),
                            ChunkOptions(chunks=2, min_visible=0.3, coarse_steps=coarse), cluster=cluster,
                            log=lambda m: None)
    one = train(scene, tmp_path / "one", _cfg(coarse + 2 * steps), progress=False, log=lambda m: None, threads=1)
    assert res.report["steps"] == one.report["steps"] == coarse + 2 * steps
    own = res.report["chunks"]["own_cell_gaussians"]
    print(f"chunked {res.report['psnr_test']:.2f} dB ({res.report['num_gaussians']} Gaussians, own {own}), "
          f"one model {one.report['psnr_test']:.2f} dB ({one.report['num_gaussians']})")
    assert res.report["cluster"]["workers"] == 2 and res.report["cluster"]["stages"]["chunks"]["tasks"] == 2
    assert abs(res.report["num_gaussians"] - sum(own)) <= 0.1 * sum(own)
    assert res.report["psnr_test"] >= one.report["psnr_test"] - 1.0


@pytest.mark.slow
def test_cli_chunks_on_two_workers_writes_one_model_others_read(tmp_path):
    """`recon train splat DATA --chunks 2 --workers 2` on a `recon synth` street walk: exit 0,
    both chunks ran as tasks on the 2-process cluster, the merged PLY holds exactly the chunks'
    own-cell Gaussians, and `recon render --cameras test` reads it."""
    import json

    def cli(*args):
        p = subprocess.run([sys.executable, "-m", "recon", *map(str, args)], capture_output=True, text=True,
                           timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        return p

    data, out = tmp_path / "data", tmp_path / "splat"
    cli("synth", "-o", data, "--views", 32, "--width", 64, "--height", 48, "--trajectory", "street",
        "--supersample", 1, "--points", 2000, "-q")
    cli("train", "splat", data, "-o", out, "--chunks", 2, "--workers", 2, "--steps", 40, "-q")
    rep = json.loads((out / "report.json").read_text())
    assert rep["cluster"]["workers"] == 2 and rep["cluster"]["stages"]["chunks"]["tasks"] == 2
    assert rep["num_gaussians"] == sum(rep["chunks"]["own_cell_gaussians"]) == len(read_splat_ply(out / "splat.ply").means)
    assert all(c["views"] < rep["train_views"] for c in rep["chunks"]["plan"]["chunks"])
    cli("render", out, "--cameras", "test", "-o", tmp_path / "frames")
    assert len(list((tmp_path / "frames").glob("*.png"))) == rep["test_views"]
