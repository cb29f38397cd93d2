"""Benchmark: `recon sfm` vs pycolmap's default pipeline on the same images, in the same run.

Peer: pycolmap defaults end to end (SIFT with default FeatureExtractionOptions, i.e.
max_image_size 3200 and 8192 features; exhaustive matching; incremental mapping), as a user
following pycolmap's README would run it. Ours: `recon sfm` defaults (right-sized extraction,
automatic matching, isolated mapper, retriangulation, our final BA), or with --mapper global.

Accuracy: on sceaux-castle the focal length vs K.txt (2905.88 px); on a recon.synth dataset
(--synth orbit|walk) rotation / camera-centre errors after similarity alignment with the truth.

    PYTHONPATH=. python bench/bench_sfm.py [--images DIR] [--synth orbit] [--mapper global]
    PYTHONPATH=. python bench/bench_sfm.py --sets [NAME,...] [--out FILE] [--config JSON] [--skip-peer]

--sets: every real set (sceaux; phototourism-sample per landmark and all 13; heterogeneous sets
built from them by bench/sfm_sets.py: crops, rescales to 700-1100 px, no EXIF, mixed unions;
the synthetic room; demo_room: `recon demo`'s 30 views at 320x240 with its SfM options): per
set, registered images and seconds of `recon sfm` and of pycolmap's
defaults in the same run, their ratio, ours' attempts and the cameras it flags implausible, and
the peer's cameras outside [0.3, 5] x the larger side or with |k| > 1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

F_REF_SCEAUX = 2905.88
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pycolmap_default(image_dir: Path, work: Path,
                     stages: dict | None = None) -> tuple[float, object]:
    """Seconds and largest model of pycolmap's default pipeline; ``stages`` gets the seconds of
    extraction, matching and mapping."""
    import pycolmap

    pycolmap.logging.minloglevel = 2
    work.mkdir(parents=True, exist_ok=True)
    db = work / "database.db"
    t0 = time.perf_counter()
    pycolmap.extract_features(str(db), str(image_dir))
    t1 = time.perf_counter()
    pycolmap.match_exhaustive(str(db))
    t2 = time.perf_counter()
    models = pycolmap.incremental_mapping(str(db), str(image_dir), str(work / "sparse"))
    dt = time.perf_counter() - t0
    if stages is not None:
        stages.update(features=t1 - t0, matching=t2 - t1, mapping=t0 + dt - t2)
    best = max(models.values(), key=lambda r: r.num_reg_images()) if models else None
    return dt, best


def _pose_errors(rec, gt_by_name):
    from calib import Sim3, rotation_angle_deg

    names = sorted(n for n in (im.name for im in rec.registered_images) if Path(n).name in gt_by_name)
    if len(names) < 3:
        return float("nan"), float("nan")
    est = [rec.image_by_name(n).cam_from_world for n in names]
    ref = [gt_by_name[Path(n).name] for n in names]
    ce = np.array([p.dst_origin_in_src() for p in est])
    cr = np.array([p.dst_origin_in_src() for p in ref])
    s = Sim3.align(ce, cr)
    rot = max(float(rotation_angle_deg(e.rotation @ s.rotation.T @ r.rotation.T)) for e, r in zip(est, ref))
    return rot, float(np.linalg.norm(s.apply(ce) - cr, axis=1).max() / np.ptp(cr, axis=0).max())


SETS = ("sceaux", "pt_london_bridge", "pt_piazza_san_marco", "pt_st_pauls", "pt_united_states", "pt_all",
        "het_sceaux", "mixed", "synth_room", "demo_room")


def build_set(name: str, root: Path, data: Path) -> Path:
    """The folder of set ``name`` (SETS), built under ``root`` when it is not a shared folder."""
    from sfm_sets import make_heterogeneous_set, phototourism_subset

    d = root / name
    pt = data / "phototourism-sample"
    if name == "sceaux":
        return data / "sceaux-castle"
    if name.startswith("pt_"):
        phototourism_subset(pt, d, None if name == "pt_all" else name[3:])
    elif name == "het_sceaux":
        make_heterogeneous_set([data / "sceaux-castle"], d, seed=0)
    elif name == "mixed":  # castle photos as 11 cameras, London Bridge and St Paul's as they are
        make_heterogeneous_set([data / "sceaux-castle"], d, seed=1)
        phototourism_subset(pt, d, "london_bridge")
        phototourism_subset(pt, d, "st_pauls")
    elif name in ("synth_room", "demo_room"):  # demo_room: `recon demo`'s 30 views at 320x240
        from recon import synth

        demo = name == "demo_room"
        cam = synth.make_camera("PINHOLE" if demo else "SIMPLE_RADIAL", 320 if demo else 640,
                                240 if demo else 480, fov_deg=60)
        opts = synth.DatasetOptions(progress=False, write_normals=False, write_labels=False)
        ds = synth.write_dataset(root / name, synth.make_scene(seed=0), cam,
                                 synth.orbit(30, radius=3.2), options=opts)
        return Path(ds.image_paths[0]).parent
    else:
        raise ValueError(f"--sets: unknown set {name!r} (known: {', '.join(SETS)})")
    return d


def _implausible(rec) -> int:
    """Registered cameras of a pycolmap model with focal outside [0.3, 5] x side or |k1| > 1."""
    n = 0
    for cid in {rec.image(i).camera_id for i in rec.reg_image_ids()}:
        c = rec.camera(cid)
        side = max(c.width, c.height)
        names = c.params_info.split(", ")
        k = [abs(float(c.params[names.index(x)])) for x in ("k", "k1") if x in names]
        n += not (0.3 * side <= c.mean_focal_length() <= 5 * side) or any(v > 1 for v in k)
    return n


def _shared_data() -> Path:
    """../shared/data as the tests find it: $RECON_SHARED_DATA, else the nearest parent folder
    holding shared/data (a worktree sits deeper than the main checkout)."""
    import os

    env = os.environ.get("RECON_SHARED_DATA")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def _uptime() -> str:
    import subprocess

    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def run_sets(names: list[str], out: Path | None = None, overrides: dict | None = None,
             peer: bool = True) -> None:
    """The --sets table, printed; also written to ``out`` (with the load before and after).
    ``overrides``: SfMConfig fields for recon's runs (--config); ``peer``: run pycolmap's
    defaults too (the ratio column is 0 without them)."""
    from recon.sfm import SfMConfig, run_sfm

    lines = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    say(f"load before: {_uptime()}")

    data = _shared_data()
    tmp = Path(tempfile.mkdtemp(prefix="bench_sfm_sets_"))
    say(f"{'set':<20} {'n':>3} | {'recon reg':>9} {'s':>6} {'attempts':<28} {'flagged':>7} | "
        f"{'colmap reg':>10} {'s':>6} {'bad cams':>8} | {'ratio':>5}")
    stages = []
    for name in names:
        d = build_set(name, tmp / "sets", data)
        n = len([p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")])
        t0 = time.perf_counter()
        # demo_room runs with the options of `recon demo` (recon.pipeline.demo)
        demo = name == "demo_room"
        extra = dict(camera_model="SIMPLE_PINHOLE", camera_mode="single") if demo else {}
        cfg = SfMConfig(**{**extra, **(overrides or {})})
        rep = run_sfm(d, tmp / name / "ours", cfg, progress=False)
        t_ours = time.perf_counter() - t0
        peer_stages: dict = {}
        t_peer, best = (pycolmap_default(d, tmp / name / "peer", peer_stages) if peer
                        else (float("nan"), None))
        reg = best.num_reg_images() if best is not None else 0
        att = ",".join(f"{a['recipe']}:{a['registered']}" for a in rep.attempts)
        flagged = len(rep.plausibility.get("problems_before_dropping") or rep.plausibility.get("problems", [])) \
            if rep.plausibility else 0
        bad = _implausible(best) if best is not None else 0
        say(f"{name:<20} {n:>3} | {rep.images_registered:>9} {t_ours:>6.1f} {att:<28} "
            f"{flagged:>7} | {reg:>10} {t_peer:>6.1f} {bad:>8} | {t_ours / t_peer:>5.2f}  "
            f"{rep.status}")
        ours = ", ".join(f"{k} {v:.1f}" for k, v in rep.stage_seconds.items())
        peer = ", ".join(f"{k} {v:.1f}" for k, v in peer_stages.items())
        stages.append(f"{name}: recon {ours} | pycolmap {peer}")
    say("stage seconds per set:\n  " + "\n  ".join(stages))
    say(f"load after: {_uptime()}")
    shutil.rmtree(tmp, ignore_errors=True)
    if out is not None:
        Path(out).write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default=None, help="image folder (default ../shared/data/sceaux-castle)")
    ap.add_argument("--synth", choices=("orbit", "walk"), default=None, help="use a recon.synth dataset instead")
    ap.add_argument("--views", type=int, default=30)
    ap.add_argument("--mapper", default="incremental", choices=("incremental", "global"))
    ap.add_argument("--max-image-size", type=int, default=1600)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--sets", nargs="?", const=",".join(SETS), default=None,
                    help=f"comma-separated real sets (default all: {', '.join(SETS)})")
    ap.add_argument("--out", default=None, help="--sets: also write the table to this file")
    ap.add_argument("--config", default=None,
                    help='--sets: SfMConfig fields for recon as JSON, e.g. \'{"first_octave": 0}\'')
    args = ap.parse_args()
    if args.sets:
        import json

        run_sets(args.sets.split(","), Path(args.out) if args.out else None,
                 json.loads(args.config) if args.config else None, peer=not args.skip_peer)
        return

    from recon.sfm import SfMConfig, run_sfm
    from recon.sfm._pycolmap import from_pycolmap

    tmp = Path(tempfile.mkdtemp(prefix="bench_sfm_"))
    gt_by_name = None
    if args.synth:
        from recon import synth

        scene = synth.make_scene(seed=0)
        cam = synth.make_camera("SIMPLE_RADIAL", 640, 480, fov_deg=60)
        poses = synth.orbit(args.views, radius=3.2) if args.synth == "orbit" else synth.walkthrough(args.views)
        ds = synth.write_dataset(tmp / "data", scene, cam, poses,
                                 options=synth.DatasetOptions(progress=False, write_normals=False,
                                                              write_labels=False))
        image_dir = Path(ds.image_paths[0]).parent
        gt_by_name = {Path(p).name: v.cam_from_world for p, v in zip(ds.image_paths, ds.views)}
    else:
        shared = _shared_data()
        image_dir = Path(args.images) if args.images else shared / "sceaux-castle"
    n_images = len([p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")])

    rows = []
    t0 = time.perf_counter()
    rep = run_sfm(image_dir, tmp / "ours", SfMConfig(mapper=args.mapper, max_image_size=args.max_image_size),
                  progress=False)
    t_ours = time.perf_counter() - t0
    from recon.io import read_colmap

    rec = read_colmap(tmp / "ours" / "sparse" / "0")
    rows.append(("recon sfm (" + args.mapper + f", {args.max_image_size}px)", t_ours, rep.images_registered,
                 rep.mean_reprojection_error_px, rep.cameras[0]["focal_px"], rec, rep.stage_seconds))
    if not args.skip_peer:
        t_peer, best = pycolmap_default(image_dir, tmp / "peer")
        if best is not None:
            r = from_pycolmap(best)
            cam = next(iter(r.cameras.values()))
            rows.append(("pycolmap default (3200px, exhaustive, incremental)", t_peer, best.num_reg_images(),
                         best.compute_mean_reprojection_error(), float(np.mean(cam.focal)), r, {}))
        else:
            rows.append(("pycolmap default", t_peer, 0, float("nan"), float("nan"), None, {}))

    print(f"\n{image_dir} ({n_images} images)")
    hdr = f"{'pipeline':<52} {'time s':>8} {'reg':>5} {'reproj px':>9} {'focal px':>9}"
    hdr += f" {'rot err deg':>11} {'centre err %':>12}" if gt_by_name else f" {'f err %':>8}"
    print(hdr)
    for name, t, reg, err, f, rec, _ in rows:
        line = f"{name:<52} {t:>8.1f} {reg:>5} {err:>9.3f} {f:>9.1f}"
        if gt_by_name and rec is not None:
            rot, ce = _pose_errors(rec, gt_by_name)
            line += f" {rot:>11.4f} {100 * ce:>12.3f}"
        elif not gt_by_name:
            line += f" {100 * (f / F_REF_SCEAUX - 1):>+8.2f}"
        print(line)
    if len(rows) == 2:
        print(f"time ratio recon sfm / pycolmap default: {rows[0][1] / rows[1][1]:.2f}")
    print("recon sfm stages (s):", rows[0][6])
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
