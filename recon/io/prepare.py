"""``recon data prepare``: a downloaded catalogued dataset -> the layout ``recon train`` /
``recon reconstruct`` / ``recon ba`` read.

What each preparer writes in ``out`` (images are symlinked, never copied, where the file system
allows it; the source folder is only read):

- ``nerf_synthetic`` (Blender: ``<scene>/transforms_{train,val,test}.json``, OpenGL camera axes,
  ``camera_angle_x``, ``file_path`` without extension, 800x800 RGBA): one ``transforms.json``
  (PINHOLE intrinsics from the field of view, file paths with their extension; the poses are
  converted by recon.io.transforms_json's paired converters when it is read), the split folders
  linked, and ``split.json`` with the official train / val / test names.
- ``mipnerf360`` (``<scene>/images, images_2, images_4, images_8, sparse/0``): ``images`` ->
  ``images_N`` and ``sparse/0`` with every camera resized to the size of its ``images_N``
  files (the published model holds the full-resolution intrinsics). N defaults to 4 for the
  outdoor scenes and 2 for the indoor ones (the 3DGS / gsplat benchmark convention).
- ``tandt_db`` (Tanks and Temples / Deep Blending, 3DGS preprocessed: ``images`` + ``sparse/0``):
  checked (every registered image present) and written as ``images`` + ``sparse/0``.
- ``dtu_2dgs`` (``scanN/images``, ``mask``, ``cameras.npz`` (IDR: ``world_mat_i``,
  ``scale_mat_i``) and/or ``sparse/0``): ``images`` + ``sparse/0`` (from ``cameras.npz`` when
  there is no COLMAP model), ``mask`` linked, and the reference points for Chamfer: the official
  DTU ``Points/stl/stlNNN_total.ply`` (+ ``ObsMask/ObsMaskN_10.mat``, ``PlaneN.mat`` when found)
  linked under ``reference/`` with ``reference.json`` giving ``reference_from_model``, the 4x4
  similarity from the model frame to the DTU frame (mm) of those points.
- ``bal`` (``problem-*.txt[.bz2]``): ``problem.txt`` (decompressed) and ``sparse/0``, the same
  problem as a COLMAP model (``recon ba`` reads either; ``recon view`` the model).

Every preparer writes ``prepared.json`` (what was read, what was written, notes) and returns a
:class:`PreparedDataset`. The source may also be the downloaded archive itself: it is unpacked
next to it first (recon.io.catalog.extract).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from recon.errors import FormatError, ReconError
from recon.io.images import resolve_image

__all__ = ["PREPARERS", "PreparedDataset", "prepare"]

MIPNERF360_OUTDOOR = ("bicycle", "flowers", "garden", "stump", "treehill")


@dataclass(frozen=True)
class PreparedDataset:
    """What :func:`prepare` wrote. ``path`` is what to hand to ``recon train`` (a folder with
    transforms.json or images + sparse/0) or ``recon ba`` (``problem.txt`` / ``sparse/0``)."""

    name: str  # catalog name
    scene: str
    path: Path  # the prepared folder
    kind: str  # "transforms" | "colmap" | "bal"
    num_images: int  # registered images (BAL: cameras)
    source: Path  # the scene folder (or file) that was read
    split: dict[str, list[str]] | None = None  # official split when the dataset has one
    reference: Path | None = None  # DTU: reference.json (reference points for Chamfer)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("path", "source", "reference"):
            d[k] = None if d[k] is None else str(d[k])
        d["notes"] = list(self.notes)
        d["version"] = 1
        return d


# =========================================================================================
# helpers
# =========================================================================================

def _link(src: Path, dst: Path) -> None:
    """dst -> src (a symlink; a copy where symlinks are not allowed). Replaces an old link."""
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    elif dst.is_dir():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())
    except OSError:
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


def _find_scene_dir(source: Path, scene: str, prefixes: tuple[str, ...], looks_right) -> Path:
    """The folder of ``scene`` under ``source``: source/<prefix>/<scene> for each prefix, or
    source itself when it already is the scene."""
    tried = []
    for prefix in prefixes:
        cand = source / prefix / scene if prefix else source / scene
        tried.append(cand)
        if cand.is_dir() and looks_right(cand):
            return cand
    if looks_right(source) and (source.name == Path(scene).name or not scene):
        return source
    raise ReconError(f"{source}: scene {scene!r} not found (looked for " + ", ".join(str(t) for t in tried)
                     + "); pass the folder `recon data download ... --extract` unpacked into")


def _image_size(path: Path) -> tuple[int, int]:
    from recon.io.images import open_image

    with open_image(path) as im:
        return im.size


def _has_colmap(folder: Path) -> bool:
    from recon.io.colmap import find_colmap_model

    return (folder / "sparse").is_dir() and find_colmap_model(folder / "sparse") is not None


def _read_model(folder: Path):
    from recon.io.colmap import find_colmap_model, read_colmap

    model = find_colmap_model(folder / "sparse")
    if model is None:
        raise ReconError(f"{folder}: no COLMAP model in sparse/ (expected sparse/0/cameras.bin|txt)")
    return read_colmap(model), model


def _check_images(rec, image_dir: Path, where: Path) -> int:
    missing = [im.name for im in rec.registered_images if not (image_dir / im.name).is_file()]
    if missing:
        raise ReconError(f"{where}: {len(missing)} of {len(rec.registered_images)} registered images are missing "
                         f"from {image_dir} (first: {missing[0]})")
    return len(rec.registered_images)


def _write_colmap_model(rec, out: Path) -> Path:
    from recon.io.colmap import write_colmap

    target = out / "sparse" / "0"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    return write_colmap(rec, target)


# =========================================================================================
# preparers
# =========================================================================================

def _prepare_blender(source: Path, scene: str, out: Path, **_) -> PreparedDataset:
    from calib import Camera
    from recon.io.transforms_json import cam_from_world_from_transform_matrix, write_transforms
    from recon.scene import Image, Reconstruction

    root = _find_scene_dir(source, scene, ("nerf_synthetic", "", "nerf_example_data/nerf_synthetic"),
                           lambda p: (p / "transforms_train.json").is_file())
    cameras, images, split = {}, {}, {}
    for part in ("train", "val", "test"):
        file = root / f"transforms_{part}.json"
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text())
            angle = float(data["camera_angle_x"])
            frames = data["frames"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise FormatError(file, f"not a Blender transforms file ({type(e).__name__}: {e})") from None
        split[part] = []
        for k, frame in enumerate(frames):
            rel = str(frame.get("file_path", "")).removeprefix("./")
            img = resolve_image(root, rel)
            if img is None:
                raise FormatError(file, f"frames[{k}]: image {rel!r} not found next to it")
            name = img.relative_to(root).as_posix()
            w, h = _image_size(img)
            f = 0.5 * w / math.tan(0.5 * angle)
            key = (w, h, round(f, 9))
            if key not in cameras:  # pixel centres: Blender's image centre w/2 (corner) = (w-1)/2 here
                cameras[key] = Camera("PINHOLE", w, h, [f, f, (w - 1) / 2.0, (h - 1) / 2.0])
            try:
                pose = cam_from_world_from_transform_matrix(np.asarray(frame["transform_matrix"], dtype=float))
            except (KeyError, ValueError) as e:
                raise FormatError(file, f"frames[{k}]: bad transform_matrix ({e})") from None
            iid = len(images) + 1
            images[iid] = Image(iid, name, list(cameras).index(key) + 1, pose)
            split[part].append(name)
    if not images:
        raise ReconError(f"{root}: no frames in transforms_train/val/test.json")
    rec = Reconstruction({i + 1: c for i, c in enumerate(cameras.values())}, images, {})
    out.mkdir(parents=True, exist_ok=True)
    for part in split:
        _link(root / part, out / part)
    write_transforms(rec, out / "transforms.json")
    (out / "split.json").write_text(json.dumps(split, indent=2) + "\n")
    notes = ("images are RGBA: train with a white background to match the published renders "
             "(recon train ... --background 1,1,1 where available)",
             "split.json holds the official train/val/test names; recon train holds out every 8th view by default")
    return PreparedDataset("nerf_synthetic", scene, out, "transforms", len(images), root, split=split, notes=notes)


def _rescaled_model(rec, image_dir: Path):
    """Cameras resized to the size of the images in ``image_dir`` (one image read per camera)."""
    from calib import Camera

    first = {}
    for im in rec.registered_images:
        first.setdefault(im.camera_id, im.name)
    cams = {}
    for cid, cam in rec.cameras.items():
        if cid not in first:
            cams[cid] = cam
            continue
        path = image_dir / first[cid]
        if not path.is_file():
            raise ReconError(f"{image_dir}: image {first[cid]!r} of camera {cid} is missing")
        w, h = _image_size(path)
        c = cam.resized(w, h)
        cams[cid] = Camera(c.model, w, h, c.params)
    rec.cameras = cams
    return rec


def _prepare_mipnerf360(source: Path, scene: str, out: Path, *, factor: int | None = None, **_) -> PreparedDataset:
    root = _find_scene_dir(source, scene, ("", "360_v2", "mipnerf360"), _has_colmap)
    if factor is None:
        factor = 4 if scene in MIPNERF360_OUTDOOR else 2
    if factor not in (1, 2, 4, 8):
        raise ValueError(f"factor: expected 1, 2, 4 or 8 (images, images_2, images_4, images_8), got {factor}")
    image_dir = root / ("images" if factor == 1 else f"images_{factor}")
    if not image_dir.is_dir():
        raise ReconError(f"{root}: {image_dir.name}/ not found (choose --factor among the images_N folders present)")
    rec, _model = _read_model(root)
    n = _check_images(rec, image_dir, root)
    rec = _rescaled_model(rec, image_dir)
    out.mkdir(parents=True, exist_ok=True)
    _link(image_dir, out / "images")
    _write_colmap_model(rec, out)
    notes = (f"images_{factor}: intrinsics resized to those images ({next(iter(rec.cameras.values())).width}x"
             f"{next(iter(rec.cameras.values())).height})",
             "the standard evaluation holds out every 8th image (recon train's default --test-every 8)")
    return PreparedDataset("mipnerf360", scene, out, "colmap", n, root, notes=notes)


def _prepare_colmap_scene(name: str, prefixes: tuple[str, ...]):
    def prep(source: Path, scene: str, out: Path, **_) -> PreparedDataset:
        root = _find_scene_dir(source, scene, prefixes, _has_colmap)
        rec, _model = _read_model(root)
        n = _check_images(rec, root / "images", root)
        out.mkdir(parents=True, exist_ok=True)
        _link(root / "images", out / "images")
        _write_colmap_model(rec, out)
        return PreparedDataset(name, scene, out, "colmap", n, root)
    return prep


def _idr_cameras(npz_path: Path, names: list[str]):
    """IDR / NeuS ``cameras.npz`` (world_mat_i = K [R | t] in the DTU frame, scale_mat_i the
    normalisation): -> ({i: (K, cam_from_world Rigid3) in the DTU frame}, scale_mat)."""
    import cv2

    from calib import Rigid3

    data = np.load(npz_path)
    out = {}
    for i in range(len(names)):
        key = f"world_mat_{i}"
        if key not in data:
            raise FormatError(npz_path, f"missing {key} (one per image, in name order)")
        P = np.asarray(data[key], dtype=np.float64)[:3, :4]
        K, R, c_h = cv2.decomposeProjectionMatrix(P)[:3]
        K = K / K[2, 2]
        c = (c_h[:3] / c_h[3]).ravel()
        S = np.diag(np.sign(np.diag(K)))  # make the focal lengths positive
        K, R = K @ S, S @ R
        if np.linalg.det(R) < 0:
            R = -R
        out[i] = (K, Rigid3(R, -R @ c))
    scale = np.asarray(data["scale_mat_0"], dtype=np.float64) if "scale_mat_0" in data else np.eye(4)
    return out, scale


def _dtu_reference(source: Path, root: Path, scan_id: int) -> dict:
    """The official DTU evaluation files for one scan, wherever they were unpacked."""
    found = {}
    for base in (source, source.parent, root.parent, root):
        for sub in ("", "SampleSet/MVS Data", "MVS Data", "Points", "dtu_eval"):
            b = base / sub if sub else base
            stl = b / "Points" / "stl" / f"stl{scan_id:03d}_total.ply"
            if stl.is_file() and "points" not in found:
                found["points"] = stl
            for key, rel in (("obs_mask", f"ObsMask/ObsMask{scan_id}_10.mat"), ("plane", f"ObsMask/Plane{scan_id}.mat")):
                if (b / rel).is_file() and key not in found:
                    found[key] = b / rel
    return found


def _prepare_dtu(source: Path, scene: str, out: Path, **_) -> PreparedDataset:
    from calib import Camera, Sim3
    from recon.scene import Image, Reconstruction

    looks = lambda p: (p / "images").is_dir() and (_has_colmap(p) or (p / "cameras.npz").is_file())
    root = _find_scene_dir(source, scene, ("", "DTU", "dtu", "2DGS_data/DTU"), looks)
    try:
        scan_id = int(scene.removeprefix("scan"))
    except ValueError:
        raise ValueError(f"scene: expected a DTU scan name like 'scan24', got {scene!r}") from None
    from recon.io.images import list_images

    names = [p.name for p in list_images(root / "images")]
    notes = []
    npz = root / "cameras.npz"
    idr = _idr_cameras(npz, names) if npz.is_file() else None
    if _has_colmap(root):
        rec, _model = _read_model(root)
        notes.append("COLMAP model: the one shipped with the scan")
    else:
        cams, images = {}, {}
        w, h = _image_size(root / "images" / names[0])
        for i, name in enumerate(names):
            K, pose = idr[0][i]
            cams[i + 1] = Camera("PINHOLE", w, h, [K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
            images[i + 1] = Image(i + 1, name, i + 1, pose)
        rec = Reconstruction(cams, images, {})
        notes.append("COLMAP model: converted from cameras.npz (IDR world_mat, DTU frame, mm)")
    n = _check_images(rec, root / "images", root)
    out.mkdir(parents=True, exist_ok=True)
    _link(root / "images", out / "images")
    if (root / "mask").is_dir():
        _link(root / "mask", out / "mask")
    _write_colmap_model(rec, out)
    ref = _dtu_reference(source, root, scan_id)
    reference = None
    if ref.get("points"):
        # reference_from_model: fit the model's camera centres to the DTU-frame centres of cameras.npz
        if idr is not None:
            by_name = {im.name: im for im in rec.registered_images}
            src_c = np.array([by_name[nm].cam_from_world.dst_origin_in_src() for nm in names if nm in by_name])
            dst_c = np.array([idr[0][i][1].dst_origin_in_src() for i, nm in enumerate(names) if nm in by_name])
            sim = Sim3.align(src_c, dst_c)
            rms = float(np.sqrt(np.mean(np.sum((sim.apply(src_c) - dst_c) ** 2, axis=1))))
            M = sim.matrix()
            how = f"camera centres of the model fitted to those of cameras.npz (rms {rms:.3g} mm)"
        else:
            M, rms, how = np.eye(4), None, "no cameras.npz: the model is assumed to be in the DTU frame"
        links = {}
        for key, p in ref.items():
            _link(p, out / "reference" / p.name)
            links[key] = f"reference/{p.name}"
        reference = out / "reference.json"
        reference.write_text(json.dumps({"scan": scan_id, "frame": "DTU (mm)", **links,
                                         "reference_from_model": M.tolist(), "how": how, "fit_rms_mm": rms},
                                        indent=2) + "\n")
    else:
        notes.append("no DTU reference points found (Points/stl/stlNNN_total.ply from the official "
                     "'SampleSet' / 'Points' archives of roboimagedata.compute.dtu.dk): Chamfer cannot be measured")
    return PreparedDataset("dtu_2dgs", scene, out, "colmap", n, root, reference=reference, notes=tuple(notes))


def _prepare_bal(source: Path, scene: str, out: Path, **_) -> PreparedDataset:
    from recon.ba.bal import read_bal
    from recon.ba.synthetic import reconstruction_from_problem
    from recon.io.catalog import extract

    base = Path(scene).name
    cands = [source] if source.is_file() else [
        source / f"{base}.txt", source / f"{base}.txt.bz2", source / f"{scene}.txt", source / f"{scene}.txt.bz2",
        source / f"{base}.bal", source / base]
    file = next((c for c in cands if c.is_file()), None)
    if file is None:
        raise ReconError(f"{source}: BAL problem {scene!r} not found (looked for "
                         + ", ".join(c.name for c in cands) + ")")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "problem.txt"
    if file.name.endswith((".bz2", ".gz")):
        extract(file, out)
        os.replace(out / file.name.rsplit(".", 1)[0], target)
    else:
        shutil.copyfile(file, target)
    prob = read_bal(target)
    _write_colmap_model(reconstruction_from_problem(prob), out)
    notes = (f"{prob.num_images} cameras, {prob.num_points} points, {prob.num_observations} observations",
             "recon ba reads problem.txt (BAL) or sparse/0 (the same problem as a COLMAP model)")
    return PreparedDataset("bal", scene, out, "bal", prob.num_images, file, notes=notes)


PREPARERS = {
    "nerf_synthetic": _prepare_blender,
    "mipnerf360": _prepare_mipnerf360,
    "tandt_db": _prepare_colmap_scene("tandt_db", ("", "tandt_db")),
    "dtu_2dgs": _prepare_dtu,
    "bal": _prepare_bal,
}


def prepare(name: str, source, scene: str | None = None, out=None, *, factor: int | None = None) -> PreparedDataset:
    """Convert scene ``scene`` of catalogued dataset ``name``, downloaded into ``source`` (the
    folder given to ``recon data download``, or the archive itself), into ``out`` (default
    ``source/prepared/<scene>``). ``factor``: Mip-NeRF 360 image pyramid level (1, 2, 4, 8).

    Raises ValueError for unknown names / scenes / factors, ReconError (FormatError) for a source
    that does not hold the dataset in its published layout.
    """
    from recon.io.catalog import extract, get_dataset

    if name not in PREPARERS:
        raise ValueError(f"name: no preparer for {name!r}; `recon data prepare` knows {', '.join(sorted(PREPARERS))}")
    info = get_dataset(name)
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(2, "No such file or folder", str(source))
    if scene is None:
        if len(info.scenes) != 1:
            raise ValueError(f"scene: {name!r} has several scenes; choose one of {', '.join(info.scenes)}")
        scene = info.scenes[0]
    if scene not in info.scenes and name != "bal":
        raise ValueError(f"scene: {scene!r} is not a scene of {name!r}; expected one of {', '.join(info.scenes)}")
    if source.is_file() and not (name == "bal" and source.name.endswith((".txt", ".bz2", ".bal"))):
        unpacked = source.parent / (source.name.split(".")[0] + "_unpacked")
        if not unpacked.is_dir():
            extract(source, unpacked)
        source = unpacked
    out = Path(out) if out is not None else (source if source.is_dir() else source.parent) / "prepared" / scene
    result = PREPARERS[name](source, scene, out, factor=factor)
    (out / "prepared.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result
