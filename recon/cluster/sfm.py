"""The SfM front end and mapper of ``recon sfm`` as Dask tasks (``--workers`` / ``--cluster``).

Every task is a pure function of (inputs, options, seed), writes only its own folder under
``OUT/tasks/<stage>/<key>`` and returns small metadata; the client process is the only writer
of the COLMAP database (``OUT/database.db``) and of the final model (STYLE.md item 14).

* :func:`extract_features`: the master database gets its cameras and images first
  (``pycolmap.import_images``, the same camera grouping as one ``extract_features`` call); each
  shard of images is extracted into a private database by a task; the client copies keypoints
  and descriptors into the master by image name. The result is identical to one database
  (tests/test_cluster.py compares them; DEPENDENCIES.md).
* :func:`match_pairs`: the chosen pairs in blocks; each task matches and verifies its block
  (``pycolmap.match_image_pairs``) in a private copy of a features-only snapshot of the master
  database; the client writes matches and two-view geometries into the master. Blocks are not
  bit-identical to one pass (RANSAC draws: +-1-2 inliers a pair), so compare with tolerances.
* :func:`partitioned_mapping`: the verified match graph cut by recursive normalized cuts (Shi &
  Malik 2000: the Fiedler vector of the normalized Laplacian, weights = inlier matches) into
  leaves of at most ``leaf_max_images`` images, each grown by its most strongly connected
  outside images (``overlap``) so that neighbours share images; each leaf is mapped as a task
  by pycolmap's incremental mapper (``IncrementalPipelineOptions.image_names``) in recon's
  child-process isolation; leaves are merged bottom-up along the cut tree by a Sim(3)
  (``pycolmap.align_reconstructions_via_reprojections``, falling back to camera centres),
  shared images keep the pose of the larger side, then each leaf's smaller models (its mapper's
  other components) are merged in the same way where they hold images the result lacks (a leaf
  that splits at the images closing a loop would lose the loop closure), and the points of the
  merged model are triangulated again from the database. Then :func:`refine_merged`: global
  bundle adjustments (recon.ba) alternating with re-triangulations that merge tracks across the
  seams spread the drift of the chained Sim(3)s over the whole model and close loops the tree
  did not (a street loop of 240 views: largest centre error 2.2e-2 -> 4.2e-3 of the extent,
  pycolmap's hierarchical mapper 1.3e-2).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from recon.cluster.engine import Cluster, Task

__all__ = ["LeafPlan", "MappingResult", "cut_match_graph", "extract_features", "match_pairs",
           "merge_models", "partitioned_mapping", "read_match_graph", "refine_merged"]


# =========================================================================================
# Feature extraction
# =========================================================================================

def _extract_shard(folder: Path, image_dir: str, names: list[str], spec: dict) -> dict:
    """Task: SIFT of ``names`` into ``folder/features.db``."""
    import pycolmap

    pycolmap.logging.minloglevel = 2
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = spec["camera_model"]
    reader.camera_params = spec["camera_params"]
    ext = pycolmap.FeatureExtractionOptions()
    ext.max_image_size = int(spec["max_image_size"])
    ext.sift.max_num_features = int(spec["max_num_features"])
    ext.sift.first_octave = int(spec["first_octave"])
    ext.num_threads = int(spec["num_threads"])
    pycolmap.extract_features(str(folder / "features.db"), image_dir, names,
                              camera_mode=pycolmap.CameraMode.__members__[spec["camera_mode"]],
                              reader_options=reader, extraction_options=ext)
    return {"images": len(names)}


def extract_features(cluster: Cluster, db_path, image_dir, names: list[str], *, camera_mode, reader,
                     extraction, root, shard_size: int | None = None) -> dict:
    """SIFT features of ``names`` (relative to ``image_dir``) into the database ``db_path``, on
    the cluster; ``camera_mode`` / ``reader`` / ``extraction`` are the pycolmap options one
    ``pycolmap.extract_features`` call would get. Returns {"shards", "shard_size"}."""
    import pycolmap

    if not names:
        raise ValueError("names: no images to extract")
    n = len(names)
    shard_size = shard_size or max(1, min(64, math.ceil(n / (4 * cluster.workers))))
    spec = {"camera_mode": camera_mode.name, "camera_model": reader.camera_model,
            "camera_params": reader.camera_params, "max_image_size": int(extraction.max_image_size),
            "max_num_features": int(extraction.sift.max_num_features),
            "first_octave": int(extraction.sift.first_octave), "num_threads": cluster.threads_per_task}
    shards = [names[i:i + shard_size] for i in range(0, n, shard_size)]
    image_dir = str(Path(image_dir).resolve())
    tasks = [Task(f"shard-{k:05d}", _extract_shard, (image_dir, shard, spec),
                  {"image_dir": image_dir, "names": shard, "spec": spec, "sizes": _file_stamps(image_dir, shard)})
             for k, shard in enumerate(shards)]
    # the master's cameras and images first, so camera grouping is that of one extraction
    pycolmap.Database.open(str(db_path)).close()  # import_images wants an existing database
    pycolmap.import_images(str(db_path), image_dir, camera_mode, names, reader)
    cluster.map("features", tasks, root)
    db = pycolmap.Database.open(str(db_path))
    try:
        ids = {im.name: im.image_id for im in db.read_all_images()}
        for k in range(len(shards)):
            shard_db = pycolmap.Database.open(str(Path(root) / "features" / tasks[k].key / "features.db"))
            try:
                for im in shard_db.read_all_images():
                    if im.name not in ids or db.exists_keypoints(ids[im.name]):
                        continue
                    db.write_keypoints(ids[im.name], shard_db.read_keypoints(im.image_id))
                    db.write_descriptors(ids[im.name], shard_db.read_descriptors(im.image_id))
            finally:
                shard_db.close()
    finally:
        db.close()
    return {"shards": len(shards), "shard_size": shard_size}


def _file_stamps(image_dir: str, names: list[str]) -> list:
    """(size, mtime_ns) of each image: a changed photo changes the task's input hash."""
    out = []
    for nm in names:
        st = (Path(image_dir) / nm).stat()
        out.append((st.st_size, st.st_mtime_ns))
    return out


# =========================================================================================
# Matching
# =========================================================================================

def _match_block(folder: Path, snapshot: str, pairs: list[tuple[str, str]], options: dict) -> dict:
    """Task: match and verify ``pairs`` (image names) in a private copy of ``snapshot``."""
    import pycolmap

    pycolmap.logging.minloglevel = 2
    pycolmap.set_random_seed(int(options["seed"]))
    db = folder / "block.db"
    shutil.copyfile(snapshot, db)
    pair_file = folder / "pairs.txt"
    pair_file.write_text("".join(f"{a} {b}\n" for a, b in pairs))
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = int(options["num_threads"])
    po = pycolmap.ImportedPairingOptions()
    po.match_list_path = str(pair_file)
    pycolmap.match_image_pairs(str(db), mo, po)
    # keep only what the client reads back: matches and geometries live in the block database
    return {"pairs": len(pairs)}


def match_pairs(cluster: Cluster, db_path, pairs: list[tuple[str, str]], *, root, seed: int = 0,
                block_size: int | None = None) -> dict:
    """Match and verify ``pairs`` (image names in ``db_path``, which holds their features) on
    the cluster, in blocks; matches and two-view geometries are written into ``db_path`` here.
    Returns {"blocks", "block_size", "pairs"}."""
    import pycolmap

    pairs = sorted({(a, b) if a < b else (b, a) for a, b in pairs if a != b})
    if not pairs:
        raise ValueError("pairs: no image pairs to match")
    block_size = block_size or max(20, min(2000, math.ceil(len(pairs) / (4 * cluster.workers))))
    root = Path(root)
    snap_dir = root / "matching"
    snap_dir.mkdir(parents=True, exist_ok=True)
    snapshot = snap_dir / "features.db"
    snapshot.unlink(missing_ok=True)
    shutil.copyfile(db_path, snapshot)  # features only: the client writes no match before this
    blocks = [pairs[i:i + block_size] for i in range(0, len(pairs), block_size)]
    db = pycolmap.Database.open(str(db_path))
    try:
        feats = {im.name: int(db.num_keypoints_for_image(im.image_id)) for im in db.read_all_images()}
    finally:
        db.close()
    options = {"seed": int(seed), "num_threads": cluster.threads_per_task}
    tasks = [Task(f"block-{k:05d}", _match_block, (str(snapshot.resolve()), blk, options),
                  {"pairs": blk, "options": options, "features": {nm: feats.get(nm) for p in blk for nm in p}})
                 for k, blk in enumerate(blocks)]
    cluster.map("matching", tasks, root)
    db = pycolmap.Database.open(str(db_path))
    try:
        ids = {im.name: im.image_id for im in db.read_all_images()}
        for k, blk in enumerate(blocks):
            bdb = pycolmap.Database.open(str(root / "matching" / tasks[k].key / "block.db"))
            try:
                bids = {im.name: im.image_id for im in bdb.read_all_images()}
                for a, b in blk:
                    ia, ib, ja, jb = ids[a], ids[b], bids[a], bids[b]
                    if db.exists_matches(ia, ib) or not bdb.exists_matches(ja, jb):
                        continue
                    db.write_matches(ia, ib, bdb.read_matches(ja, jb))
                    if bdb.exists_two_view_geometry(ja, jb):
                        db.write_two_view_geometry(ia, ib, bdb.read_two_view_geometry(ja, jb))
            finally:
                bdb.close()
    finally:
        db.close()
    snapshot.unlink(missing_ok=True)
    return {"blocks": len(blocks), "block_size": block_size, "pairs": len(pairs)}


# =========================================================================================
# Partitioned mapping
# =========================================================================================

def read_match_graph(db_path) -> tuple[list[str], np.ndarray]:
    """(image names, W [n, n] symmetric inlier-match counts of the verified pairs) of a database."""
    import pycolmap

    db = pycolmap.Database.open(str(db_path))
    try:
        images = sorted(db.read_all_images(), key=lambda im: im.name)
        index = {im.image_id: k for k, im in enumerate(images)}
        W = np.zeros((len(images), len(images)))
        pair_ids, geoms = db.read_two_view_geometries()
        for pid, g in zip(pair_ids, geoms):
            n = len(g.inlier_matches)
            if n == 0:
                continue
            i1, i2 = pycolmap.pair_id_to_image_pair(pid)
            a, b = index[i1], index[i2]
            W[a, b] = W[b, a] = n
    finally:
        db.close()
    return [im.name for im in images], W


@dataclass
class LeafPlan:
    """The cut of the match graph: ``leaves`` (image indices, overlap included) and ``tree``,
    a nested pair structure over leaf indices giving the bottom-up merge order."""

    leaves: list[list[int]]
    tree: object  # int (a leaf) or [left, right]


def cut_match_graph(W: np.ndarray, leaf_max_images: int, *, overlap: float = 0.25,
                    min_overlap: int = 6) -> LeafPlan:
    """Recursive normalized cut of the graph ``W`` [n, n] (symmetric, >= 0) into leaves of at
    most ``leaf_max_images`` core images; each leaf then gains its ``max(min_overlap, overlap *
    size)`` outside images most strongly connected to it (sum of weights)."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"W: expected a square [n, n] matrix, got shape {W.shape}")
    if leaf_max_images < 2:
        raise ValueError(f"leaf_max_images: expected >= 2, got {leaf_max_images}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap: expected in [0, 1), got {overlap}")
    leaves: list[list[int]] = []

    def split(idx: np.ndarray):
        if len(idx) <= leaf_max_images:
            leaves.append(sorted(int(i) for i in idx))
            return len(leaves) - 1
        a, b = _normalized_cut(W[np.ix_(idx, idx)])
        return [split(idx[a]), split(idx[b])]

    tree = split(np.arange(len(W)))
    grown = []
    for core in leaves:
        inside = np.zeros(len(W), bool)
        inside[core] = True
        strength = W[inside].sum(0)
        strength[inside] = 0
        k = min(int((strength > 0).sum()), max(min_overlap, round(overlap * len(core))))
        extra = np.argsort(-strength, kind="stable")[:k]
        grown.append(sorted(set(core) | {int(e) for e in extra}))
    return LeafPlan(grown, tree)


def _normalized_cut(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of a graph by the sign of the Fiedler vector of L_sym = I - D^-1/2 W D^-1/2,
    split at the median so the halves are balanced (boolean masks)."""
    from scipy.linalg import eigh

    d = W.sum(1)
    d_is = 1.0 / np.sqrt(np.maximum(d, 1e-12))
    L = np.eye(len(W)) - d_is[:, None] * W * d_is[None]
    _, vec = eigh(L, subset_by_index=[0, 1])
    f = vec[:, 1] * d_is  # the relaxed indicator of the cut (Shi & Malik 2000, eq. 9)
    order = np.argsort(f, kind="stable")
    a = np.zeros(len(W), bool)
    a[order[: len(W) // 2]] = True
    return a, ~a


def _map_leaf(folder: Path, db_path: str, image_dir: str, names: list[str], options: dict) -> dict:
    """Task: pycolmap's incremental mapper on ``names`` only, in a child process; the largest
    model is written to ``folder/model``."""
    import pycolmap

    from recon.sfm._worker import run_isolated  # the child-process isolation of recon.sfm

    models = folder / "models"
    models.mkdir()
    job = {"mapper": "incremental", "database": db_path, "image_dir": image_dir, "output": str(models),
           "num_threads": options["num_threads"], "seed": options["seed"],
           "fix_intrinsics": options["fix_intrinsics"], "min_model_size": 3,
           "global_ba_ratio": options["global_ba_ratio"], "image_names": names}
    err = run_isolated(job, folder / "mapper.log")
    best, size = None, 0
    for d in sorted(models.iterdir()):
        if d.is_dir() and (d / "images.bin").exists():
            n = pycolmap.Reconstruction(str(d)).num_reg_images()
            if n > size:
                best, size = d, n
    if best is None:
        raise RuntimeError(f"the leaf mapper registered no model ({err or 'no error reported'})")
    best.rename(folder / "model")
    return {"registered": size, "images": len(names), "error": err}


@dataclass
class MappingResult:
    """What :func:`partitioned_mapping` did (JSON in the report)."""

    leaves: int
    leaf_sizes: list[int]
    leaf_registered: list[int]
    merges: list[dict]
    registered: int
    dropped: list[str]  # images of leaves that could not be aligned to the rest
    refinement: list[dict] = field(default_factory=list)  # the global BA rounds (cost, points, seconds)
    alignment: dict | None = None  # align_pieces facts (None: the tree's chained Sim(3)s kept)

    def to_json(self) -> dict:
        return asdict(self)


def partitioned_mapping(cluster: Cluster, db_path, image_dir, out_model, *, root, leaf_max_images: int,
                        overlap: float = 0.25, seed: int = 0, fix_intrinsics: bool = False,
                        global_ba_ratio: float = 1.1, num_threads: int | None = None,
                        refine_rounds: int = 1, ba_loss: str = "huber",
                        joint_alignment: bool = True) -> MappingResult:
    """Map the database ``db_path`` as overlapping leaves on the cluster and merge them into one
    model written to ``out_model`` (COLMAP binary, points triangulated from the database).

    The merge chains pairwise Sim(3)s along the cut tree, so the drift of each link adds up and a
    loop through several leaves is not closed by it. With ``joint_alignment`` every leaf model is
    then aligned to all the others at once (:func:`align_pieces`, a generalised Procrustes over
    all overlapping pairs), and ``refine_rounds`` rounds of one global
    bundle adjustment (recon.ba, ``ba_loss``) followed by a re-triangulation that completes and
    merges tracks across the leaves' seams, then a last BA, spread that drift over the whole model
    (measured on a 240-view street loop, 4 leaves: largest camera-centre error 2.2e-2 of the
    extent -> 4.2e-3; 0 rounds: the merged model as chained)."""
    names, W = read_match_graph(db_path)
    keep = W.sum(1) > 0
    if keep.sum() < 2:
        raise ValueError(f"db_path: {db_path} has fewer than 2 images with verified matches")
    idx = np.flatnonzero(keep)
    plan = cut_match_graph(W[np.ix_(idx, idx)], leaf_max_images, overlap=overlap)
    leaves = [[names[idx[i]] for i in leaf] for leaf in plan.leaves]
    options = {"seed": int(seed), "fix_intrinsics": bool(fix_intrinsics), "global_ba_ratio": float(global_ba_ratio),
               "num_threads": cluster.threads_per_task if num_threads is None else int(num_threads)}
    db_path, image_dir = str(Path(db_path).resolve()), str(Path(image_dir).resolve())
    graph_digest = _graph_digest(names, W)
    tasks = [Task(f"leaf-{k:03d}", _map_leaf, (db_path, image_dir, leaf, options),
                  {"names": leaf, "options": options, "graph": graph_digest})
             for k, leaf in enumerate(leaves)]
    results = cluster.map("mapping", tasks, root)
    models = [Path(root) / "mapping" / t.key / "model" for t in tasks]
    merged, merges, dropped = _merge_tree(plan.tree, models, db_path, image_dir, Path(root) / "merge")
    merged = _merge_leftovers(merged, [Path(root) / "mapping" / t.key / "models" for t in tasks], db_path,
                              image_dir, Path(root) / "merge", merges, dropped)
    alignment = None
    if joint_alignment:
        merged, alignment = _align_jointly(merged, [Path(root) / "mapping" / t.key for t in tasks], db_path,
                                           image_dir, Path(root) / "merge" / "joint")
    merged, refinement = refine_merged(merged, db_path, image_dir, Path(root) / "merge" / "refine",
                                       rounds=refine_rounds, ba_loss=ba_loss, fix_intrinsics=fix_intrinsics)
    out_model = Path(out_model)
    out_model.mkdir(parents=True, exist_ok=True)
    merged.write_binary(str(out_model))
    return MappingResult(len(leaves), [len(v) for v in leaves], [r["registered"] for r in results], merges,
                         int(merged.num_reg_images()), sorted(dropped), refinement, alignment)


def _align_jointly(merged, leaf_folders: list[Path], db_path: str, image_dir: str, work: Path):
    """Re-pose the tree-merged model by :func:`align_pieces` over every model the leaves' mappers
    wrote (each leaf's largest and its other components, >= 3 images) and triangulate its points
    again from the database -> (model, facts)."""
    import pycolmap

    from recon.sfm._pycolmap import from_pycolmap, to_pycolmap

    pieces = []
    for folder in leaf_folders:
        dirs = [folder / "model"] + (sorted((folder / "models").iterdir()) if (folder / "models").is_dir() else [])
        for d in dirs:
            if (d / "images.bin").exists():
                rec = from_pycolmap(pycolmap.Reconstruction(str(d)))
                poses = {im.name: im.cam_from_world for im in rec.registered_images}
                if len(poses) >= 3:
                    pieces.append(poses)
    rec = from_pycolmap(merged)
    init = {im.name: im.cam_from_world for im in rec.registered_images}
    poses, facts = align_pieces(pieces, init)
    if not poses:
        return merged, facts
    for im in rec.images.values():
        if im.registered and im.name in poses:
            im.cam_from_world = poses[im.name]
        im.point3D_ids[:] = -1
    rec.points3D = {}
    work.mkdir(parents=True, exist_ok=True)
    out = pycolmap.triangulate_points(to_pycolmap(rec), db_path, image_dir, str(work), clear_points=True,
                                      options=pycolmap.IncrementalPipelineOptions(), refine_intrinsics=False)
    facts["points"] = int(out.num_points3D())
    return out, facts


def _global_ba(prec, *, loss: str, fix_intrinsics: bool):
    """One bundle adjustment of the whole pycolmap model with recon.ba -> (model, its facts)."""
    from recon.sfm._ba import adjust_pycolmap

    out, res = adjust_pycolmap(prec, loss=loss, refine_focal=not fix_intrinsics, refine_extra=not fix_intrinsics)
    return out, {"initial_cost": float(res.initial_cost), "final_cost": float(res.final_cost),
                 "iterations": int(res.iterations), "ba_s": round(float(res.time_s), 3)}


def refine_merged(merged, db_path: str, image_dir: str, work: Path, *, rounds: int = 1, ba_loss: str = "huber",
                  fix_intrinsics: bool = False):
    """``rounds`` x (global BA with recon.ba, then re-triangulation from the database keeping the
    points: tracks are completed and merged where the BA brought the leaves' seams together),
    then a last BA -> (refined model, one fact dict per BA). 0 rounds: ``merged`` unchanged."""
    import time

    import pycolmap

    facts: list[dict] = []
    if rounds <= 0:
        return merged, facts
    for r in range(rounds + 1):
        merged, row = _global_ba(merged, loss=ba_loss, fix_intrinsics=fix_intrinsics)
        row = {"round": r, **row}
        if r < rounds:
            t = time.perf_counter()
            folder = work / f"tri{r}"
            folder.mkdir(parents=True, exist_ok=True)
            before = int(merged.num_points3D())
            merged = pycolmap.triangulate_points(merged, db_path, image_dir, str(folder), clear_points=False,
                                                 options=pycolmap.IncrementalPipelineOptions(),
                                                 refine_intrinsics=False)
            row.update(points_before=before, points_after=int(merged.num_points3D()),
                       triangulation_s=round(time.perf_counter() - t, 3))
        facts.append(row)
    return merged, facts


def _graph_digest(names: list[str], W: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha256(json.dumps(names).encode())
    h.update(np.ascontiguousarray(W, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def _merge_tree(tree, models: list[Path], db_path: str, image_dir: str, work: Path):
    import pycolmap

    merges: list[dict] = []
    dropped: set[str] = set()

    def walk(node):
        if isinstance(node, int):
            return pycolmap.Reconstruction(str(models[node]))
        left, right = walk(node[0]), walk(node[1])
        big, small = (left, right) if left.num_reg_images() >= right.num_reg_images() else (right, left)
        merged, info = merge_models(big, small, db_path, image_dir, work / f"m{len(merges):03d}")
        merges.append(info)
        if not info["aligned"]:
            dropped.update(small.image(i).name for i in small.reg_image_ids()
                           if big.find_image_with_name(small.image(i).name) is None)
        return merged

    return walk(tree), merges, dropped


def _merge_leftovers(merged, model_dirs: list[Path], db_path: str, image_dir: str, work: Path, merges: list,
                     dropped: set):
    """Merge the smaller models of each leaf (its mapper's other components) into ``merged`` where
    they hold images it lacks and share >= 3 with it: a leaf that splits at a weak link (e.g. the
    images that close a loop) otherwise loses those images, and with them the loop closure."""
    import pycolmap

    for folder in model_dirs:
        for d in sorted(folder.iterdir()) if folder.is_dir() else []:
            if not (d / "images.bin").exists():
                continue
            extra = pycolmap.Reconstruction(str(d))
            have = {merged.image(i).name for i in merged.reg_image_ids()}
            if all(extra.image(i).name in have for i in extra.reg_image_ids()):
                continue
            out, info = merge_models(merged, extra, db_path, image_dir, work / f"m{len(merges):03d}")
            merges.append(dict(info, leftover=str(d.relative_to(folder.parent.parent))))
            if info["aligned"]:
                merged = out
                dropped.difference_update(merged.image(i).name for i in merged.reg_image_ids())
    return merged


def merge_models(tgt, src, db_path: str, image_dir: str, work: Path):
    """Merge pycolmap model ``src`` into ``tgt`` (same database, so same image and camera ids):
    ``src`` is brought into ``tgt``'s frame by the Sim(3) ``tgt_from_src`` found from their
    shared images, the images only in ``src`` are added with their transformed poses (shared
    images keep ``tgt``'s pose), and the points of the union are triangulated from the database.
    Returns (merged model, facts); when no Sim(3) is found, ``tgt`` is returned unchanged."""
    import pycolmap

    from recon.sfm._pycolmap import from_pycolmap, to_pycolmap

    shared = sorted(set(tgt.reg_image_ids()) & set(src.reg_image_ids()))
    facts = {"shared_images": len(shared), "tgt_images": int(tgt.num_reg_images()),
             "src_images": int(src.num_reg_images())}
    sim = None
    if len(shared) >= 3:
        sim = pycolmap.align_reconstructions_via_reprojections(src, tgt, min_inlier_observations=0.3,
                                                              max_reproj_error=8.0)
        facts["method"] = "reprojections"
        if sim is None:
            extent = float(np.linalg.norm(np.ptp([tgt.image(i).projection_center() for i in shared], 0)))
            sim = pycolmap.align_reconstructions_via_proj_centers(src, tgt, max(0.05 * extent, 1e-6))
            facts["method"] = "projection centres"
    if sim is None:
        facts.update(aligned=False, method="none")
        return tgt, facts
    facts.update(aligned=True, scale=float(sim.scale))
    src = pycolmap.Reconstruction(src)
    src.transform(sim)
    a, b = from_pycolmap(tgt), from_pycolmap(src)
    for iid, im in b.images.items():
        if iid not in a.images or not a.images[iid].registered:
            a.images[iid] = im
            a.cameras.setdefault(im.camera_id, b.cameras[im.camera_id])
    a.points3D = {}
    for im in a.images.values():
        im.point3D_ids[:] = -1
    work.mkdir(parents=True, exist_ok=True)
    opts = pycolmap.IncrementalPipelineOptions()
    merged = pycolmap.triangulate_points(to_pycolmap(a), db_path, image_dir, str(work), clear_points=True,
                                         options=opts, refine_intrinsics=False)
    facts["merged_images"] = int(merged.num_reg_images())
    return merged, facts


def align_pieces(pieces: list, init: dict, *, outlier_factor: float = 4.0) -> tuple[dict, dict]:
    """Jointly align overlapping partial models: one Sim(3) per piece such that every camera
    shared by several pieces lands in the same place in all of them, over ALL overlapping pairs
    at once, so that a chain of pieces closing a loop is closed with its error spread around the
    loop (a tree of pairwise alignments adds up the drift of each link instead).

    ``pieces``: one ``{image name: cam_from_world (calib.Rigid3)}`` per piece, in its own frame;
    ``init``: ``{image name: cam_from_world}`` in the target frame (e.g. the tree-merged model):
    it gives every piece its first Sim(3) (camera centres, Umeyama) and the gauge (the largest
    piece keeps it). The Sim(3)s then minimise (scipy least squares: soft-L1 at the median camera
    spacing ``d`` first, then plain least squares twice on the pairs within ``outlier_factor`` x
    the median residual) the differences of shared cameras' centres and of their rotations
    (chordal, times ``d``) between every two pieces holding them. A shared camera whose
    residual in a piece exceeds ``outlier_factor`` x the median is left out of its final pose.

    Returns (``{image name: cam_from_world in the target frame}`` for the cameras of the aligned
    pieces: centre averaged over their pieces, rotation the chordal mean; facts)."""
    from scipy.optimize import least_squares
    from scipy.sparse import lil_matrix
    from scipy.spatial.transform import Rotation

    from calib import Rigid3, Sim3

    names0 = sorted(init)
    if len(names0) < 3:
        return {}, {"pieces": len(pieces), "aligned": 0}
    cen = np.array([init[n].dst_origin_in_src() for n in names0])
    dist = np.linalg.norm(cen[:, None] - cen[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    d = float(np.median(dist.min(1)))
    if not np.isfinite(d) or d <= 0:
        d = 1.0
    G: list = []
    for piece in pieces:
        shared = [n for n in piece if n in init]
        g = None
        if len(shared) >= 3:
            try:
                g = Sim3.align(np.array([piece[n].dst_origin_in_src() for n in shared]),
                               np.array([init[n].dst_origin_in_src() for n in shared]))
            except ValueError:
                g = None
        G.append(g)
    live = [k for k, g in enumerate(G) if g is not None]
    if not live:
        return {}, {"pieces": len(pieces), "aligned": 0}
    gauge = max(live, key=lambda k: len(pieces[k]))
    owners: dict[str, list[int]] = {}
    for k in live:
        for n in pieces[k]:
            owners.setdefault(n, []).append(k)
    # every pair of pieces holding a camera: its centre and world-from-camera rotation in both
    rows = [(n, j, k) for n, ks in owners.items() for a, j in enumerate(ks) for k in ks[a + 1:]]
    free = [k for k in live if k != gauge]
    col = {k: 7 * i for i, k in enumerate(free)}
    facts = {"pieces": len(pieces), "aligned": len(live), "gauge": gauge, "camera_spacing": d,
             "shared_pairs": len(rows)}
    if rows and free:
        cj = np.array([pieces[j][n].dst_origin_in_src() for n, j, _ in rows])
        ck = np.array([pieces[k][n].dst_origin_in_src() for n, _, k in rows])
        Rj = np.array([pieces[j][n].rotation.T for n, j, _ in rows])
        Rk = np.array([pieces[k][n].rotation.T for n, _, k in rows])
        ij = np.array([j for _, j, _ in rows])
        ik = np.array([k for _, _, k in rows])
        S0 = np.array([G[k].scale if G[k] else 1.0 for k in range(len(pieces))])
        R0 = np.array([G[k].rotation if G[k] else np.eye(3) for k in range(len(pieces))])
        T0 = np.array([G[k].translation if G[k] else np.zeros(3) for k in range(len(pieces))])

        def unpack(x):
            S, R, T = S0.copy(), R0.copy(), T0.copy()
            for k, c in col.items():
                R[k] = Rotation.from_rotvec(x[c:c + 3]).as_matrix() @ R0[k]
                S[k] = S0[k] * np.exp(x[c + 3])
                T[k] = T0[k] + x[c + 4:c + 7] * d
            return S, R, T

        def residuals(x, mask=None):
            S, R, T = unpack(x)
            a, b = (ij, ik) if mask is None else (ij[mask], ik[mask])
            m = slice(None) if mask is None else mask
            pj = S[a, None] * np.einsum("nab,nb->na", R[a], cj[m]) + T[a]
            pk = S[b, None] * np.einsum("nab,nb->na", R[b], ck[m]) + T[b]
            rj = np.einsum("nab,nbc->nac", R[a], Rj[m])
            rk = np.einsum("nab,nbc->nac", R[b], Rk[m])
            return np.concatenate([pj - pk, d * (rj - rk).reshape(-1, 9)], axis=1).ravel()

        def solve(x, mask, loss, f_scale):
            sparsity = lil_matrix((12 * int(mask.sum()), 7 * len(free)), dtype=int)
            for r, (_, j, k) in enumerate(rows[i] for i in np.flatnonzero(mask)):
                for p in (j, k):
                    if p in col:
                        sparsity[12 * r:12 * r + 12, col[p]:col[p] + 7] = 1
            return least_squares(lambda v: residuals(v, mask), x, jac_sparsity=sparsity, loss=loss,
                                 f_scale=f_scale, method="trf", max_nfev=200)

        x0 = np.zeros(7 * len(free))
        mask = np.ones(len(rows), bool)
        # to the basin with a mild loss (the initial poses may be far off), then least squares on
        # the pairs within outlier_factor x the median residual, twice
        sol = solve(x0, mask, "soft_l1", d)
        for _ in range(2):
            r = np.linalg.norm(residuals(sol.x).reshape(-1, 12), axis=1)
            mask = r <= outlier_factor * max(float(np.median(r)), 1e-3 * d)
            if mask.sum() < 3:
                break
            sol = solve(sol.x, mask, "linear", 1.0)
        facts["pairs_left_out"] = int((~mask).sum())
        S, R, T = unpack(sol.x)
        for k in live:
            G[k] = Sim3(float(S[k]), R[k], T[k])
        res0 = np.linalg.norm(residuals(x0).reshape(-1, 12), axis=1)
        res = np.linalg.norm(residuals(sol.x).reshape(-1, 12), axis=1)
        facts.update(cost=float(sol.cost), evaluations=int(sol.nfev), status=int(sol.status),
                     residual_median_before=float(np.median(res0) / d), residual_median=float(np.median(res) / d),
                     residual_max=float(res.max() / d))
    # a camera's place in each of its pieces against the median over them: the outliers
    bad: set[tuple[str, int]] = set()
    world = {(n, k): G[k].apply(pieces[k][n].dst_origin_in_src()) for n, ks in owners.items() for k in ks}
    dev = {}
    for n, ks in owners.items():
        if len(ks) > 1:
            med = np.median([world[(n, k)] for k in ks], 0)
            for k in ks:
                dev[(n, k)] = float(np.linalg.norm(world[(n, k)] - med))
    if dev:
        cut = outlier_factor * max(float(np.median(list(dev.values()))), 1e-3 * d)
        bad = {key for key, v in dev.items() if v > cut}
    out = {}
    for n, ks in owners.items():
        ks = [k for k in ks if (n, k) not in bad] or ks
        poses = [G[k].transform_pose(pieces[k][n]) for k in ks]
        c = np.mean([p.dst_origin_in_src() for p in poses], 0)
        U, _, Vt = np.linalg.svd(sum(p.rotation for p in poses))
        Rm = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
        out[n] = Rigid3(Rm, -Rm @ c)
    facts["outliers"] = len(bad)
    return out, facts
