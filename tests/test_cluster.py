"""recon.cluster: the Dask engine (start checks, done-markers, retries, faults) and the SfM task
graph (sharded features identical to one database, block matching, partitioned mapping) on a
2-process LocalCluster, against synthetic ground truth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from calib import Sim3


ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from recon.cluster import ClusterOptions, open_cluster

    with open_cluster(ClusterOptions(workers=2, retries=1), tmp_path_factory.mktemp("cluster")) as c:
        yield c


# ---- task functions (module level: the workers import them) ------------------------------

def _square(folder: Path, x: int) -> int:
    (folder / "out.txt").write_text(str(x * x))
    return x * x


def _always_crash(folder: Path, x: int) -> int:
    raise RuntimeError(f"bad input {x}")


def _die_once(folder: Path, x: int) -> int:
    """SIGKILLs its own worker process on the first attempt (the nanny restarts the worker and
    the scheduler re-runs the task elsewhere)."""
    if (folder / "attempts").read_text() == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 100


# ---- the engine ---------------------------------------------------------------------------

def test_tasks_run_and_are_reused_on_resume(cluster, tmp_path):
    from recon.cluster import Task

    tasks = [Task(f"t{i}", _square, (i,), {"x": i}) for i in range(5)]
    assert cluster.map("squares", tasks, tmp_path) == [0, 1, 4, 9, 16]
    assert (tmp_path / "squares" / "t3" / "out.txt").read_text() == "9"
    before = cluster.stages["squares"].reused
    # a re-run reuses the finished tasks; a task with other inputs runs again
    tasks[2] = Task("t2", _square, (7,), {"x": 7})
    assert cluster.map("squares", tasks, tmp_path) == [0, 1, 49, 9, 16]
    assert cluster.stages["squares"].reused - before == 4
    assert cluster.facts()["stages"]["squares"]["tasks"] == 10


def test_a_task_that_always_crashes_names_itself_and_keeps_finished_ones(cluster, tmp_path):
    from recon.cluster import ClusterError, Task

    cluster.map("first", [Task("a", _square, (3,), {"x": 3})], tmp_path)
    tasks = [Task("good", _square, (2,), {"x": 2}), Task("poison", _always_crash, (5,), {"x": 5})]
    with pytest.raises(ClusterError) as e:
        cluster.map("second", tasks, tmp_path)
    msg = str(e.value)
    assert "'poison'" in msg and "'second'" in msg and "bad input 5" in msg and "\n" not in msg
    assert (tmp_path / "poison" / "attempts").exists() is False
    assert (tmp_path / "second" / "poison" / "attempts").read_text() == str(1 + cluster.options.retries)
    assert json.loads((tmp_path / "first" / "a" / "done.json").read_text())["result"] == 9
    assert json.loads((tmp_path / "second" / "good" / "done.json").read_text())["result"] == 4
    assert cluster.stages["second"].failures == 1


def test_a_worker_killed_mid_task_is_survived(cluster, tmp_path):
    from recon.cluster import Task

    res = cluster.map("killed", [Task(f"k{i}", _die_once, (i,), {"x": i}) for i in range(2)], tmp_path)
    assert res == [100, 101]
    assert cluster.stages["killed"].retries >= 2  # each task ran twice
    cluster.client.wait_for_workers(2, timeout=30)  # the nanny restarted the workers


def test_gpu_tasks_are_refused_before_submission(cluster, tmp_path):
    from recon.cluster import ClusterError, ClusterOptions, Task, open_cluster

    with pytest.raises(ClusterError, match="needs a GPU"):
        cluster.map("gpu", [Task("g", _square, (1,), {"x": 1}, resources={"GPU": 1})], tmp_path)
    assert not (tmp_path / "gpu").exists()  # nothing was submitted
    with pytest.raises(ClusterError, match="--resources GPU=1"):
        open_cluster(ClusterOptions(address=cluster.address), tmp_path, need_gpu=True)


def test_cluster_options_are_checked():
    from recon.cluster import ClusterOptions

    with pytest.raises(ValueError, match="workers"):
        ClusterOptions()
    with pytest.raises(ValueError, match="workers"):
        ClusterOptions(workers=0)
    with pytest.raises(ValueError, match="address"):
        ClusterOptions(address="127.0.0.1:8786")


def test_unreachable_scheduler_exits_2_with_one_line(tmp_path):
    (tmp_path / "im").mkdir()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "recon", "sfm", str(tmp_path / "im"), "-o", str(tmp_path / "o"),
                        "--cluster", "tcp://127.0.0.1:1"], capture_output=True, text=True, env=_env(),
                       timeout=120, check=False)
    dt = time.perf_counter() - t0
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "tcp://127.0.0.1:1" in lines[0], p.stderr
    assert dt < 60


# ---- start checks against real `dask worker` processes in a changed environment ---------------

DASK = Path(sys.executable).with_name("dask")


@pytest.fixture
def bare_scheduler():
    """A scheduler without workers (its workers are started by each test)."""
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None, processes=True,
                      silence_logs=logging.ERROR) as lc:
        yield lc.scheduler_address


def _start_worker(address: str, tmp_path: Path, env: dict, prefix: list[str] = ()) -> subprocess.Popen:
    cmd = [*prefix, str(DASK), "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
           "--local-directory", str(tmp_path / "worker")]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _stop(p: subprocess.Popen) -> None:
    os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)


def _check_fails_fast(address: str, out: Path, match: str) -> str:
    from recon.cluster import ClusterError, ClusterOptions, open_cluster

    t0 = time.perf_counter()
    with pytest.raises(ClusterError, match=match) as info:
        open_cluster(ClusterOptions(address=address, timeout_s=60), out)
    msg = str(info.value)
    assert "\n" not in msg and time.perf_counter() - t0 < 60
    return msg


def test_a_worker_with_other_package_versions_is_refused(bare_scheduler, tmp_path):
    """The worker's Python finds another pycolmap distribution first (a real environment
    difference: its metadata says 0.0.1)."""
    shim = tmp_path / "shim" / "pycolmap-0.0.1.dist-info"
    shim.mkdir(parents=True)
    (shim / "METADATA").write_text("Metadata-Version: 2.1\nName: pycolmap\nVersion: 0.0.1\n")
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "shim"), env["PYTHONPATH"]])
    worker = _start_worker(bare_scheduler, tmp_path, env)
    try:
        msg = _check_fails_fast(bare_scheduler, tmp_path / "out", "other package versions")
    finally:
        _stop(worker)
    assert "pycolmap 0.0.1" in msg, msg


def test_a_worker_that_cannot_see_the_output_folder_is_refused(bare_scheduler, tmp_path):
    """The worker runs in its own mount namespace with an empty tmpfs over the output folder:
    it sees another folder at the same path (a worker on a host without the shared disk)."""
    out = tmp_path / "out"
    out.mkdir()
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", str(out)],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", f'mount -t tmpfs tmpfs "{out}" && exec "$@"',
              "sh"]
    worker = _start_worker(bare_scheduler, tmp_path, _env(), prefix)
    try:
        msg = _check_fails_fast(bare_scheduler, out, "cannot read the output folder")
    finally:
        _stop(worker)
    assert str(out.resolve()) in msg


# ---- the match-graph cut ---------------------------------------------------------------------

def test_normalized_cut_of_a_chain_gives_bounded_overlapping_leaves():
    from recon.cluster.sfm import cut_match_graph

    n = 90  # a walk: each image matches its 4 successors
    W = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, min(n, i + 5)):
            W[i, j] = W[j, i] = 100 - 10 * (j - i)
    plan = cut_match_graph(W, 25, overlap=0.2)
    assert len(plan.leaves) >= 4
    cores = set()
    for leaf in plan.leaves:
        assert len(leaf) <= 25 + max(6, round(0.2 * 25))
        # a leaf of a chain is one contiguous stretch (the cut follows the graph)
        assert max(leaf) - min(leaf) + 1 == len(leaf)
        cores |= set(leaf)
    assert cores == set(range(n))

    def leaves_of(node):
        return {node} if isinstance(node, int) else leaves_of(node[0]) | leaves_of(node[1])

    def check(node):  # siblings in the merge tree share images
        if isinstance(node, int):
            return
        a = set().union(*(plan.leaves[k] for k in leaves_of(node[0])))
        b = set().union(*(plan.leaves[k] for k in leaves_of(node[1])))
        assert len(a & b) >= 3
        check(node[0])
        check(node[1])

    check(plan.tree)
    with pytest.raises(ValueError, match="leaf_max_images"):
        cut_match_graph(W, 1)


def _loop_poses(n: int = 80) -> dict:
    """Cameras on a circle of radius 10 looking outwards (a loop), 5 deg of yaw each."""
    from calib import Rigid3

    poses = {}
    for i in range(n):
        a = 2 * np.pi * i / n
        c = np.array([10 * np.cos(a), 10 * np.sin(a), 0.3 * np.sin(3 * a)])
        z = np.array([np.cos(a), np.sin(a), 0.0])  # optical axis: outwards
        y = np.array([0.0, 0.0, -1.0])
        x = np.cross(y, z)
        R = np.stack([x, y, z])  # rows: the camera axes in the world
        poses[f"{i:03d}.png"] = Rigid3(R, -R @ c)
    return poses


def test_align_pieces_closes_a_loop_that_a_chain_leaves_open():
    """Four overlapping pieces of a loop, each exact in its own random similarity frame, one
    camera of one piece gone astray; the initial poses carry a drift that grows around the loop
    (what chaining pairwise alignments gives). align_pieces must land every camera on the truth
    (up to one similarity) and leave the stray camera's pair out of the fit."""
    from calib import Rigid3, Sim3
    from recon.cluster.sfm import align_pieces

    truth = _loop_poses()
    names = sorted(truth)
    rng = np.random.default_rng(3)
    pieces = []
    for k in range(4):  # 20-image stretches grown by 4 on each side; the last wraps to the first
        part = [names[(20 * k + j) % len(names)] for j in range(-4, 24)]
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        g = Sim3(float(rng.uniform(0.5, 2.0)), q, rng.normal(size=3) * 5)
        pieces.append({n: g.transform_pose(truth[n]) for n in part})
    stray = names[18]  # in pieces 0 and 1: piece 0 says where it is
    bad = pieces[1][stray]
    pieces[1][stray] = Rigid3(bad.rotation, bad.translation + np.array([3.0, 0.0, 0.0]))

    def bend(i: int) -> Sim3:  # the drift of a chain: a yaw and a shift that grow along the loop
        t = i / len(names)
        a = 0.15 * t
        Rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        return Sim3(1.0 + 0.1 * t, Rz, np.array([0.0, 2.0 * t, 0.0]))

    init = {n: bend(i).transform_pose(truth[n]) for i, n in enumerate(names)}

    good = [n for n in names if n != stray]  # the stray's two pieces disagree: no way to tell which is right

    def centre_error(poses: dict) -> float:
        est = np.array([poses[n].dst_origin_in_src() for n in good])
        ref = np.array([truth[n].dst_origin_in_src() for n in good])
        return float(np.linalg.norm(Sim3.align(est, ref).apply(est) - ref, axis=1).max())

    out, facts = align_pieces(pieces, init)
    assert set(out) == set(names)
    assert centre_error(init) > 0.5  # the chain's drift
    assert centre_error(out) < 1e-6, facts
    # the answer is in init's frame: up to the one similarity between it and the truth
    g = Sim3.align(np.array([out[n].dst_origin_in_src() for n in good]),
                   np.array([truth[n].dst_origin_in_src() for n in good]))
    rot = max(np.degrees(np.arccos(np.clip(
        (np.trace(g.transform_pose(out[n]).rotation @ truth[n].rotation.T) - 1) / 2, -1, 1))) for n in good)
    assert rot < 1e-4, rot
    assert facts["pairs_left_out"] == 1  # the stray's pair, and only it
    assert facts["aligned"] == 4


# ---- the SfM task graph ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_scene(tmp_path_factory):
    from recon import synth

    out = tmp_path_factory.mktemp("scene")
    cam = synth.make_camera("PINHOLE", 240, 180, fov_deg=60)
    opts = synth.DatasetOptions(progress=False, write_normals=False, write_labels=False, num_points=0,
                                render=synth.RenderOptions(supersample=1))
    return synth.write_dataset(out / "orbit", synth.make_scene(seed=0), cam, synth.orbit(16, radius=3.2),
                               options=opts)


def test_sharded_features_are_identical_to_one_database(cluster, small_scene, tmp_path):
    from recon.cluster.sfm import extract_features

    image_dir = Path(small_scene.image_paths[0]).parent
    names = sorted(p.name for p in image_dir.iterdir())
    reader = pycolmap.ImageReaderOptions()
    ext = pycolmap.FeatureExtractionOptions()
    ext.sift.max_num_features = 1024
    ext.num_threads = 1
    mode = pycolmap.CameraMode.SINGLE
    pycolmap.extract_features(str(tmp_path / "one.db"), str(image_dir), names, camera_mode=mode,
                              reader_options=reader, extraction_options=ext)
    info = extract_features(cluster, tmp_path / "master.db", image_dir, names, camera_mode=mode, reader=reader,
                            extraction=ext, root=tmp_path / "tasks", shard_size=5)
    assert info["shards"] == 4
    one, master = pycolmap.Database.open(str(tmp_path / "one.db")), pycolmap.Database.open(str(tmp_path / "master.db"))
    try:
        assert master.num_cameras() == one.num_cameras() == 1
        a = {im.name: im.image_id for im in one.read_all_images()}
        b = {im.name: im.image_id for im in master.read_all_images()}
        assert set(a) == set(b) == set(names)
        for nm in names:
            ka, kb = one.read_keypoints(a[nm]), master.read_keypoints(b[nm])
            assert len(ka) > 50 and np.array_equal(ka, kb)
            assert np.array_equal(np.asarray(one.read_descriptors(a[nm]).data),
                                  np.asarray(master.read_descriptors(b[nm]).data))
    finally:
        one.close()
        master.close()


def _centre_error(sparse: Path, ds) -> tuple[set, float]:
    from recon.io import read_colmap

    rec = read_colmap(sparse)
    gt = {Path(p).name: v.cam_from_world for p, v in zip(ds.image_paths, ds.views)}
    names = sorted(im.name for im in rec.registered_images)
    c_est = np.array([rec.image_by_name(n).cam_from_world.dst_origin_in_src() for n in names])
    c_ref = np.array([gt[n].dst_origin_in_src() for n in names])
    s = Sim3.align(c_est, c_ref)
    extent = np.ptp(c_ref, axis=0).max()
    return set(names), float(np.linalg.norm(s.apply(c_est) - c_ref, axis=1).max() / extent)


def _kill_first_started(root: Path, stage: str, done: dict, stop: threading.Event):
    """SIGKILL the worker running the first task of ``stage`` that has started (its pid is in
    started.json), once."""
    while not stop.is_set():
        for f in sorted((root / stage).glob("*/started.json")) if (root / stage).exists() else []:
            if (f.parent / "done.json").exists():
                continue
            try:
                info = json.loads(f.read_text())
            except ValueError:
                continue
            os.kill(int(info["pid"]), signal.SIGKILL)
            done["task"] = f.parent.name
            return
        time.sleep(0.02)


def _run_sfm_killing(cluster, image_dir, out, config, stage: str):
    """run_sfm on the cluster while a thread SIGKILLs the worker of the first ``stage`` task
    seen running; (the SfM report, what was killed: {} when nothing was)."""
    from recon.sfm import run_sfm

    killed: dict = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_started, args=(out / "tasks", stage, killed, stop))
    killer.start()
    try:
        rep = run_sfm(image_dir, out, config, progress=False, cluster=cluster)
    finally:
        stop.set()
        killer.join()
    return rep, killed


def test_sfm_on_the_cluster_survives_a_killed_worker_and_resumes(cluster, small_scene, tmp_path):
    from recon.sfm import SfMConfig, run_sfm

    image_dir = Path(small_scene.image_paths[0]).parent
    config = SfMConfig(max_num_features=1024, leaf_max_images=10)  # 2 leaves: the partitioned path
    rep, killed = _run_sfm_killing(cluster, image_dir, tmp_path / "out", config, "features")
    assert killed, "no feature task was seen running"
    assert rep.status == "ok", rep.message
    names, err = _centre_error(tmp_path / "out" / "sparse" / "0", small_scene)
    assert len(names) == 16
    assert err < 0.01, err
    stored = json.loads((tmp_path / "out" / "report.json").read_text())["cluster"]
    assert stored["workers"] == 2
    assert stored["stages"]["features"]["retries"] >= 1  # the killed task ran again
    assert stored["mapping"]["leaves"] == 2 and all(m["aligned"] for m in stored["mapping"]["merges"])
    assert {"features", "matching", "mapping"} <= set(stored["stages"])
    # the client is gone (same as killed after the stages): a re-run reuses every finished task
    rep2 = run_sfm(image_dir, tmp_path / "out", config, progress=False, cluster=cluster)
    assert rep2.images_registered == 16
    for stage in ("features", "matching", "mapping"):
        st = rep2.cluster["stages"][stage]
        assert st["reused"] >= rep.cluster["stages"][stage]["tasks"], (stage, st)


def test_a_worker_killed_during_leaf_mapping_is_survived(cluster, small_scene, tmp_path):
    """SIGKILL the worker of the first leaf-mapping task: the run finishes with the same
    registered set (all 16 views) and the leaf ran again."""
    from recon.sfm import SfMConfig

    image_dir = Path(small_scene.image_paths[0]).parent
    config = SfMConfig(max_num_features=1024, leaf_max_images=10)
    rep, killed = _run_sfm_killing(cluster, image_dir, tmp_path / "out", config, "mapping")
    assert killed, "no mapping task was seen running"
    assert rep.status == "ok", rep.message
    names, err = _centre_error(tmp_path / "out" / "sparse" / "0", small_scene)
    assert names == {Path(p).name for p in small_scene.image_paths}
    assert err < 0.01, err
    assert rep.cluster["stages"]["mapping"]["retries"] >= 1
    cluster.client.wait_for_workers(2, timeout=30)


# ---- scale (slow): a street walk of 240 views ------------------------------------------------

@pytest.fixture(scope="module")
def street(tmp_path_factory):
    from recon import synth

    out = tmp_path_factory.mktemp("street")
    scene = synth.make_scene(0, synth.SceneConfig(room_half_size=synth.STREET_ROOM_HALF_SIZE))
    cam = synth.make_camera("PINHOLE", 160, 120, fov_deg=70)
    opts = synth.DatasetOptions(progress=False, write_normals=False, write_labels=False, num_points=0,
                                render=synth.RenderOptions(supersample=1))
    return synth.write_dataset(out / "street", scene, cam, synth.street(240), options=opts)


@pytest.mark.slow
def test_street_sfm_with_two_workers_matches_one_process(cluster, street, tmp_path):
    from recon.sfm import SfMConfig, run_sfm

    image_dir = Path(street.image_paths[0]).parent
    config = SfMConfig(num_threads=1)
    one = run_sfm(image_dir, tmp_path / "one", config, progress=False)
    two = run_sfm(image_dir, tmp_path / "two", config, progress=False, cluster=cluster)
    names1, err1 = _centre_error(tmp_path / "one" / "sparse" / "0", street)
    names2, err2 = _centre_error(tmp_path / "two" / "sparse" / "0", street)
    print(f"street 240: one process {len(names1)} registered, centre error {err1:.2e}; "
          f"2 workers {len(names2)}, {err2:.2e}; cluster {two.cluster['stages']}")
    assert len(names1) >= 230
    assert names2 == names1
    assert abs(err2 - err1) <= 1e-3
    stored = json.loads((tmp_path / "two" / "report.json").read_text())["cluster"]
    assert stored["workers"] == 2 and stored["stages"]["features"]["tasks"] >= 2
    assert one.cluster is None


@pytest.mark.slow
def test_partitioned_mapper_vs_pycolmap_hierarchical(cluster, street, tmp_path):
    """Same database (features + matches), >= 3 leaves: camera-centre error against the truth
    within 1.5x of pycolmap's hierarchical mapper with the same leaf size."""
    from recon.cluster.sfm import partitioned_mapping
    from recon.sfm import SfMConfig, run_sfm

    image_dir = Path(street.image_paths[0]).parent
    # features and matches only: the mapping of this run is not used
    run_sfm(image_dir, tmp_path / "db", SfMConfig(num_threads=1, retriangulate=False, final_ba="none"),
            progress=False, cluster=cluster)
    db = tmp_path / "db" / "database.db"
    res = partitioned_mapping(cluster, db, image_dir, tmp_path / "ours", root=tmp_path / "tasks",
                              leaf_max_images=80)
    assert res.leaves >= 3
    opts = pycolmap.HierarchicalPipelineOptions()
    opts.num_threads = 2
    opts.clustering_options.leaf_max_num_images = 80
    models = pycolmap.hierarchical_mapping(str(db), str(image_dir), str(tmp_path / "hier"), opts)
    best = max(models.values(), key=lambda r: r.num_reg_images())
    (tmp_path / "hier_best").mkdir()
    best.write_binary(str(tmp_path / "hier_best"))
    names_o, err_o = _centre_error(tmp_path / "ours", street)
    names_h, err_h = _centre_error(tmp_path / "hier_best", street)
    print(f"partitioned ({res.leaves} leaves): {len(names_o)} registered, centre error {err_o:.2e}; "
          f"pycolmap hierarchical: {len(names_h)}, {err_h:.2e}")
    assert len(names_o) >= len(names_h) - 2
    assert err_o <= 1.5 * err_h
    assert len(res.refinement) == 2 and res.refinement[0]["points_after"] > 0  # BA, triangulation, BA
    assert res.alignment["aligned"] >= res.leaves
