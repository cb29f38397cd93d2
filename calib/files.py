"""Calibration files: the ONE reader and writer of every calibration format recon reads or writes.

Every verb that takes ``--calib`` (``recon sfm``, ``twoview``, ``stereo``, ``undistort``) and
every writer (``recon calibrate``, ``recon.stereo``) goes through this module.

Public API (re-exported from ``calib``)::

    read_camera(path, *, which="left") -> Camera      # one camera from any format below
    read_rig(path) -> StereoRig                        # a stereo rig (OpenCV stereo YAML, stereo report.json)
    read_camera_pair(path) -> (Camera, Camera)         # a rig's two cameras, or one camera twice
    write_opencv_yaml(path, camera, *, rms_px=None) -> Path          # mono
    write_opencv_yaml(path, rig=StereoRig | StereoResult) -> Path    # stereo
    read_status(path) -> CalibrationStatus             # "ok" / "failed" (recon calibrate's quality gate)
    colmap_camera_line(camera, camera_id=1) -> str     # one cameras.txt line (COLMAP convention)
    write_cameras_txt(path, cameras) -> Path           # cameras.txt, camera k has id k + 1
    write_report(path, report) -> Path                 # THE report.json writer (NaN -> null, atomic, versioned)
    parse_colmap_camera_line(line) -> (camera_id, Camera)
    camera_json(camera, std=None) -> dict / camera_from_json(d) -> Camera   # report.json entries
    report_dict(result, ...) / stereo_report_dict(stereo, ...) -> dict      # recon's report.json

Formats (the reader decides by content, not only by the suffix): OpenCV FileStorage mono and
stereo, recon's report.json, COLMAP cameras.txt; the keys each one holds are in
docs/calibration.md, "Calibration files".

Pixel convention: every camera returned uses ours, (0, 0) = centre of the top-left pixel, like
OpenCV; the COLMAP line is converted with :meth:`Camera.corner_params` /
:meth:`Camera.from_corner_params` (the one pixel-centre conversion), nothing else is shifted.

Errors: a missing file raises FileNotFoundError, a malformed one :class:`CalibFileError` (a
ValueError) whose ``path`` names the file and whose message starts with it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from calib.cameras import MODEL_BY_ID, MODELS, Camera
from calib.rig import StereoRig
from calib.transforms import Rigid3

__all__ = [
    "CalibFileError",
    "CalibrationStatus",
    "StereoRig",
    "camera_from_json",
    "camera_json",
    "colmap_camera_line",
    "parse_colmap_camera_line",
    "read_camera",
    "read_camera_pair",
    "read_rig",
    "read_status",
    "report_dict",
    "rig_json",
    "stereo_report_dict",
    "write_opencv_yaml",
]


class CalibFileError(ValueError):
    """A calibration file that cannot be read: ``path`` names it, ``detail`` says why; the
    message is "PATH: DETAIL"."""

    def __init__(self, path, detail: str):
        self.path, self.detail = str(path), detail
        super().__init__(f"{path}: {detail}")


def _names_the_file(reader):
    """A reader ``reader(path, ...)`` whose ValueErrors about the file (their message starts with
    the path, the rule of this module) come out as CalibFileError, and so do the lower-level
    errors of a malformed file (TypeError, IndexError, KeyError, OverflowError, undecodable
    text); a ValueError that does not name the file is an argument error and passes."""

    @functools.wraps(reader)
    def wrapper(path, *args, **kwargs):
        try:
            return reader(path, *args, **kwargs)
        except (CalibFileError, FileNotFoundError):
            raise
        except UnicodeDecodeError as e:
            raise CalibFileError(str(Path(path)), f"cannot parse (not text: {e.reason})") from None
        except ValueError as e:
            p = str(Path(path))
            if str(e).startswith(p + ":"):
                raise CalibFileError(p, str(e)[len(p) + 1:].lstrip()) from None
            raise
        except (TypeError, IndexError, KeyError, OverflowError) as e:
            # a lower-level parse failure that does not name the file: the file is at fault
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CalibFileError(str(Path(path)),
                                 f"cannot parse ({type(e).__name__}: {msg})") from None

    return wrapper


# =========================================================================================
# COLMAP camera lines
# =========================================================================================

def colmap_camera_line(camera: Camera, camera_id: int = 1) -> str:
    """``CAMERA_ID MODEL WIDTH HEIGHT PARAMS...`` (17 significant digits, as COLMAP writes), the
    principal point in COLMAP's pixel-corner convention."""
    return (f"{int(camera_id)} {camera.model} {camera.width} {camera.height} "
            + " ".join(f"{v:.17g}" for v in camera.corner_params()))


CAMERAS_TXT_HEADER = ("# Camera list with one line of data per camera:\n"
                      "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                      "# (COLMAP convention: principal point relative to the top-left pixel CORNER)\n")


def write_cameras_txt(path, cameras: list[Camera]) -> Path:
    """COLMAP ``cameras.txt``: the header, then one :func:`colmap_camera_line` per camera,
    camera k with id k + 1 (a rig: left 1, right 2)."""
    cameras = list(cameras)
    if not cameras or not all(isinstance(c, Camera) for c in cameras):
        raise ValueError("cameras: expected a non-empty list of calib.Camera")
    path = Path(path)
    _atomic_write(path, CAMERAS_TXT_HEADER + "".join(colmap_camera_line(c, k + 1) + "\n"
                                                      for k, c in enumerate(cameras)))
    return path


REPORT_VERSION = 1


def jsonable(obj):
    """``obj`` as plain JSON types: NaN / inf -> None, NumPy -> Python, Path / Enum -> str,
    dataclasses -> dicts (their ``to_json()`` when they have one), anything else -> ``str``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, Enum):
        return str(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "to_json") and callable(obj.to_json):
        return jsonable(obj.to_json())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "tolist"):  # NumPy / torch arrays and scalars
        return jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return jsonable(obj.item())
    return str(obj)


def write_report(path, report, *, indent: int = 1) -> Path:
    """THE writer of every ``report.json`` (calibration, verbs, pipeline stages, trainers; recon
    re-exports it as ``recon.io.report.write_report``). Rules: NaN and +-inf become ``null``
    (strict JSON any parser reads); NumPy, paths, enums and dataclasses are converted
    (:func:`jsonable`); the file is written atomically (a temporary name in the same folder, then
    ``os.replace``: a crash leaves the previous complete report or none); every report carries a
    ``"version"`` field first (the caller's, else :data:`REPORT_VERSION`). Returns ``path``.

    ``report``: a dict, or an object with ``to_json()`` returning one (TypeError otherwise).
    """
    doc = jsonable(report)
    if not isinstance(doc, dict):
        raise TypeError(f"report: expected a dict or an object with to_json(), got {type(report).__name__}")
    doc = {"version": doc.pop("version", REPORT_VERSION), **doc}
    path = Path(path)
    _atomic_write(path, json.dumps(doc, indent=indent, allow_nan=False) + "\n")
    return path


def _atomic_write(path: Path, text: str) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_colmap_camera_line(line: str) -> tuple[int, Camera]:
    """(camera_id, camera) of one cameras.txt data line; the model may be a name or COLMAP's
    numeric id. Inverse of :func:`colmap_camera_line`. ValueError says what is wrong."""
    tok = line.split()
    if len(tok) < 4:
        raise ValueError(f"expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[], got {len(tok)} field(s)")

    def integer(what, t):
        try:
            return int(t)
        except ValueError:
            raise ValueError(f"{what} must be an integer, got {t!r}") from None

    camera_id = integer("CAMERA_ID", tok[0])
    spec = MODELS.get(tok[1])
    if spec is None:
        if tok[1].lstrip("-").isdigit() and int(tok[1]) in MODEL_BY_ID:
            spec = MODEL_BY_ID[int(tok[1])]
        else:
            raise ValueError(f"unknown camera model {tok[1]!r} (known: {', '.join(MODELS)})")
    width, height = integer("WIDTH", tok[2]), integer("HEIGHT", tok[3])
    if width <= 0 or height <= 0:
        raise ValueError(f"camera {camera_id} has size {width}x{height}")
    if len(tok) - 4 != spec.num_params:
        raise ValueError(f"{spec.name} takes {spec.num_params} params ({' '.join(spec.param_names)}), "
                         f"found {len(tok) - 4}")
    params = np.empty(len(tok) - 4)
    for k, t in enumerate(tok[4:]):
        try:
            params[k] = float(t)
        except ValueError:
            raise ValueError(f"PARAMS must be a number, got {t!r}") from None
        if not np.isfinite(params[k]):
            raise ValueError(f"camera {camera_id}: PARAMS {t} (NaN/Inf not allowed)")
    try:
        return camera_id, Camera.from_corner_params(spec.name, width, height, params)
    except ValueError as e:
        raise ValueError(f"camera {camera_id}: {e}") from None


def _colmap_cameras(path: Path, text: str) -> list[Camera]:
    cams = []
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            cams.append(parse_colmap_camera_line(s)[1])
        except ValueError as e:
            raise ValueError(f"{path}: line {n}: {e}") from None
    if not cams:
        raise ValueError(f"{path}: no camera line found")
    return cams


# =========================================================================================
# report.json entries
# =========================================================================================

def camera_json(camera: Camera, std: np.ndarray | None = None) -> dict:
    """A camera as report.json holds it (``params`` in our pixel convention; ``K``, ``D`` and
    the COLMAP line for other tools)."""
    try:
        D = [float(v) for v in camera.opencv_dist()]
    except ValueError:  # a model OpenCV cannot express (FOV, thin-prism): no D
        D = None
    d = {"model": camera.model, "width": camera.width, "height": camera.height,
         "params": [float(v) for v in camera.params], "param_names": list(camera.spec.param_names),
         "K": camera.K.tolist(), "D": D, "colmap_camera_line": colmap_camera_line(camera)}
    if std is not None:
        d["param_std"] = [float(v) for v in std]
    return d


def camera_from_json(d: dict) -> Camera:
    """Inverse of :func:`camera_json` (reads model, width, height, params)."""
    try:
        return Camera(d["model"], int(d["width"]), int(d["height"]), np.asarray(d["params"], dtype=np.float64))
    except (KeyError, TypeError) as e:
        raise ValueError(f"camera entry: expected model, width, height, params ({e})") from None


def rig_json(rig) -> dict:
    """``left``, ``right``, ``right_from_left`` of a rig (StereoRig or StereoResult)."""
    return {"left": camera_json(rig.left), "right": camera_json(rig.right),
            "right_from_left": {"rotation": rig.right_from_left.rotation.tolist(),
                                "translation": rig.right_from_left.translation.tolist()}}


def _read_json(path: Path, text: str) -> dict:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object")  # noqa: TRY004 - bad file content
    return d


def _json_camera(path: Path, d: dict, which: str) -> Camera:
    entry = d.get("camera") if which == "left" and "camera" in d else d.get(which)
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: no {'camera' if which == 'left' else which!r} entry (a report.json "  # noqa: TRY004
                         "from `recon calibrate` has 'camera', or 'left' and 'right')")
    try:
        return camera_from_json(entry)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


# =========================================================================================
# OpenCV FileStorage
# =========================================================================================

class _Storage:
    """Typed access to the nodes of a cv2.FileStorage (closed on construction)."""

    def __init__(self, path: Path):
        import cv2

        if path.stat().st_size == 0:
            raise ValueError(f"{path}: empty file (expected an OpenCV FileStorage YAML/XML/JSON file)")
        try:
            fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        except (cv2.error, SystemError) as e:  # SystemError: cv2 wraps some parse errors in it
            cause = e.__cause__ or e.__context__ or e
            raise ValueError(f"{path}: not an OpenCV FileStorage YAML/XML/JSON file "
                             f"({(str(cause).strip().splitlines() or [''])[-1]})") from None
        if not fs.isOpened():
            raise ValueError(f"{path}: cannot be opened as an OpenCV FileStorage file")
        self.path = path
        self.nodes = {}
        try:
            root = fs.root()
            for key in root.keys():  # noqa: SIM118 - a cv2.FileNode, not a dict
                node = root.getNode(key)
                if node.isMap():  # an !!opencv-matrix; other maps are not ours to read
                    m = node.mat()
                    if m is not None:
                        self.nodes[key] = np.asarray(m, dtype=np.float64)
                elif node.isString():
                    self.nodes[key] = node.string()
                elif node.isReal() or node.isInt():
                    self.nodes[key] = node.real()
                elif node.isSeq():
                    self.nodes[key] = np.array([node.at(i).real() for i in range(node.size())])
        except cv2.error as e:  # OpenCV asserts on malformed nodes (a matrix without dt, ...)
            raise ValueError(f"{path}: malformed OpenCV FileStorage file "
                             f"({(str(e).strip().splitlines() or [''])[-1]})") from None
        finally:
            fs.release()

    def has(self, *keys) -> bool:
        return any(k in self.nodes for k in keys)

    def mat(self, *keys, shape=None):
        for k in keys:
            if k in self.nodes:
                v = self.nodes[k]
                if isinstance(v, str):
                    raise ValueError(f"{self.path}: key {k!r} is a string, expected a matrix")
                m = np.asarray(v, dtype=np.float64)
                if shape is not None and m.shape != shape:
                    raise ValueError(f"{self.path}: {k}: expected a {shape[0]}x{shape[1]} matrix, got shape {m.shape}")
                return m
        return None

    def text(self, *keys):
        for k in keys:
            if isinstance(self.nodes.get(k), str):
                return self.nodes[k]
        return None

    def size(self) -> tuple[int, int]:
        for wk, hk in (("image_width", "image_height"), ("width", "height")):
            if wk in self.nodes and hk in self.nodes:
                return int(self.nodes[wk]), int(self.nodes[hk])
        s = self.mat("image_size", "size")
        if s is not None and s.size == 2:
            return int(s.ravel()[0]), int(s.ravel()[1])
        raise ValueError(f"{self.path}: no image size (expected image_width and image_height)")


def _opencv_camera(st: _Storage, K, D, model: str | None) -> Camera:
    w, h = st.size()
    d = None if D is None else D.ravel()
    try:
        if model and model in MODELS:
            return Camera.from_K(K, w, h, d, model=model)
        fisheye = model is not None and "fisheye" in model.lower()
        return Camera.from_K(K, w, h, d, fisheye=fisheye)
    except ValueError as e:
        raise ValueError(f"{st.path}: {e}") from None


def _mono_from_storage(st: _Storage) -> Camera:
    K = st.mat("K", "camera_matrix", "cameraMatrix", shape=(3, 3))
    if K is None:
        raise ValueError(f"{st.path}: no camera matrix (expected K or camera_matrix for a mono calibration, "
                         "K1 D1 K2 D2 R T for a stereo one)")
    D = st.mat("D", "distortion_coefficients", "dist", "dist_coeffs", "distCoeffs")
    return _opencv_camera(st, K, D, st.text("camera_model", "distortion_model", "model"))


def _stereo_cameras(st: _Storage) -> tuple[Camera, Camera]:
    K1 = st.mat("K1", "M1", shape=(3, 3))
    K2 = st.mat("K2", "M2", shape=(3, 3))
    missing = [n for n, v in (("K1", K1), ("K2", K2)) if v is None]
    if missing:
        raise ValueError(f"{st.path}: missing key(s) {missing}; a stereo calibration needs K1 D1 K2 D2 R T "
                         "image_width image_height")
    model1 = st.text("camera_model", "distortion_model", "model")
    model2 = st.text("camera_model_right") or model1
    return (_opencv_camera(st, K1, st.mat("D1"), model1), _opencv_camera(st, K2, st.mat("D2"), model2))


def _rig_from_storage(st: _Storage) -> StereoRig:
    left, right = _stereo_cameras(st)
    R = st.mat("R", shape=(3, 3))
    T = st.mat("T")
    missing = [n for n, v in (("R", R), ("T", T)) if v is None]
    if missing:
        raise ValueError(f"{st.path}: missing key(s) {missing}; a stereo calibration needs K1 D1 K2 D2 R T "
                         "image_width image_height")
    if T.size != 3:
        raise ValueError(f"{st.path}: T: expected 3 values, got shape {T.shape}")
    try:
        right_from_left = Rigid3(R, T.ravel())
    except ValueError as e:
        raise ValueError(f"{st.path}: {e}") from None
    if right_from_left.translation @ right_from_left.translation <= 0:
        raise ValueError(f"{st.path}: T: zero baseline")
    return StereoRig(left, right, right_from_left)


def write_opencv_yaml(path, camera: Camera | None = None, *, rms_px: float | None = None, rig=None,
                      status: str | None = None, failure: str = "") -> Path:
    """Write a ``cv2.FileStorage`` YAML that OpenCV and :func:`read_camera` / :func:`read_rig` read.

    Mono (``camera``): K, D (OpenCV order), image_width/height, camera_model (COLMAP name),
    pixel_convention, rms_px. Stereo (``rig``, a :class:`StereoRig` or a
    :class:`calib.stereo.StereoResult`): K1 D1 K2 D2 R T camera_model(_right), R1 R2 P1 P2 Q
    (from the result, or :func:`calib.stereo.rectify` with alpha 0 for a bare rig), baseline, and
    for a result also E F rms_px rectified_vertical_rms_px. ``status`` ("ok" / "failed") and
    ``failure`` (the cause) are written as ``calibration_status`` / ``calibration_failure``
    (:func:`read_status`)."""
    import cv2

    if (camera is None) == (rig is None):
        raise ValueError("write_opencv_yaml: give exactly one of camera (mono) or rig (stereo)")
    if status not in (None, "ok", "failed"):
        raise ValueError(f"status: expected None, 'ok' or 'failed', got {status!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cam = camera if camera is not None else rig.left
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    try:
        fs.write("image_width", int(cam.width))
        fs.write("image_height", int(cam.height))
        fs.write("camera_model", cam.model)
        fs.write("pixel_convention", "opencv: (0,0) is the centre of the top-left pixel")
        if camera is not None:
            fs.write("K", cam.K)
            fs.write("D", np.asarray(cam.opencv_dist(), dtype=np.float64).reshape(1, -1))
            if rms_px is not None:
                fs.write("rms_px", float(rms_px))
        else:
            r = getattr(rig, "rectification", None)
            if r is None:
                from calib.stereo import rectify

                r = rectify(rig.left, rig.right, rig.right_from_left)
            fs.write("K1", rig.left.K)
            fs.write("D1", np.asarray(rig.left.opencv_dist(), dtype=np.float64).reshape(1, -1))
            fs.write("K2", rig.right.K)
            fs.write("D2", np.asarray(rig.right.opencv_dist(), dtype=np.float64).reshape(1, -1))
            fs.write("camera_model_right", rig.right.model)
            fs.write("R", rig.right_from_left.rotation)
            fs.write("T", rig.right_from_left.translation.reshape(3, 1))
            if getattr(rig, "E", None) is not None:
                fs.write("E", rig.E)
                fs.write("F", rig.F)
            for k in ("R1", "R2", "P1", "P2", "Q"):
                fs.write(k, getattr(r, k))
            if getattr(rig, "rms_px", None) is not None:
                fs.write("rms_px", float(rig.rms_px))
            fs.write("baseline", float(rig.baseline))
            if getattr(rig, "rectified_vertical_rms_px", None) is not None:
                fs.write("rectified_vertical_rms_px", float(rig.rectified_vertical_rms_px))
        if status is not None:
            fs.write("calibration_status", status)
            if failure:
                fs.write("calibration_failure", str(failure))
    finally:
        fs.release()
    return path


# =========================================================================================
# The readers
# =========================================================================================

def _open(path) -> tuple[Path, str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file not found")
    head = path.read_bytes()[:4096]
    return path, head.decode("utf-8", errors="replace")


def _kind(path: Path, head: str) -> str:
    """'json' (report.json), 'colmap' (cameras.txt) or 'opencv' (FileStorage)."""
    s = head.lstrip()
    if s.startswith(("%YAML", "<?xml", "<opencv_storage")):
        return "opencv"
    if path.suffix.lower() == ".json":
        return "json"  # OpenCV FileStorage JSON has "K": {"type_id": "opencv-matrix", ...}; handled below
    if path.suffix.lower() == ".txt":
        return "colmap"
    return "opencv"


@_names_the_file
def read_camera(path, *, which: str = "left") -> Camera:
    """One camera from any calibration file (module docstring). ``which``: "left" (or the only
    camera) or "right" of a stereo file (for cameras.txt: the second line)."""
    if which not in ("left", "right"):
        raise ValueError(f"which: expected 'left' or 'right', got {which!r}")
    path, head = _open(path)
    kind = _kind(path, head)
    if kind == "json":
        d = _read_json(path, path.read_text(errors="replace"))
        if "camera" in d or "left" in d:
            return _json_camera(path, d, which)
        kind = "opencv"  # an OpenCV FileStorage JSON
    if kind == "colmap":
        cams = _colmap_cameras(path, path.read_text(errors="replace"))
        if which == "right":
            if len(cams) < 2:
                raise ValueError(f"{path}: which='right' needs a second camera line")
            return cams[1]
        return cams[0]
    st = _Storage(path)
    if st.has("K1", "M1"):
        return _stereo_cameras(st)[0 if which == "left" else 1]
    return _mono_from_storage(st)


@_names_the_file
def read_rig(path) -> StereoRig:
    """The stereo rig of an OpenCV stereo YAML (``recon calibrate`` with two folders, or
    ``cv2.stereoCalibrate`` output with K1 D1 K2 D2 R T) or a stereo report.json."""
    path, head = _open(path)
    kind = _kind(path, head)
    if kind == "json":
        d = _read_json(path, path.read_text(errors="replace"))
        if "left" in d or "camera" in d:
            if "right_from_left" not in d or "right" not in d:
                raise ValueError(f"{path}: a mono calibration report; a stereo rig needs left, right and "
                                 "right_from_left")
            try:
                T = Rigid3(np.asarray(d["right_from_left"]["rotation"], dtype=np.float64),
                           np.asarray(d["right_from_left"]["translation"], dtype=np.float64))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}: right_from_left: expected rotation and translation ({e})") from None
            return StereoRig(_json_camera(path, d, "left"), _json_camera(path, d, "right"), T)
        kind = "opencv"
    if kind == "colmap":
        raise ValueError(f"{path}: a COLMAP cameras.txt holds no relative pose; a stereo rig needs an OpenCV "
                         "stereo YAML (K1 D1 K2 D2 R T) or a stereo report.json")
    st = _Storage(path)
    if not st.has("K1", "M1"):
        raise ValueError(f"{path}: a mono calibration; a stereo calibration needs K1 D1 K2 D2 R T "
                         "image_width image_height")
    return _rig_from_storage(st)


@dataclass(frozen=True)
class CalibrationStatus:
    """What a calibration file says about its own quality (:func:`read_status`)."""

    status: str  # "ok", "failed", or "unknown" (no status written: other tools' files, older files)
    cause: str = ""  # why it failed

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@_names_the_file
def read_status(path) -> CalibrationStatus:
    """The quality-gate status ``recon calibrate`` wrote into a calibration file (YAML
    ``calibration_status`` / ``calibration_failure``, report.json ``status`` /
    ``quality_gate.cause``); "unknown" when the file has none. Other formats: "unknown"."""
    path, head = _open(path)
    kind = _kind(path, head)
    if kind == "json":
        d = _read_json(path, path.read_text(errors="replace"))
        if "left" in d or "camera" in d:
            st = d.get("status", "unknown")
            cause = (d.get("quality_gate") or {}).get("cause", "") if isinstance(d.get("quality_gate"), dict) else ""
            return CalibrationStatus(st if st in ("ok", "failed") else "unknown", cause)
        kind = "opencv"
    if kind == "colmap":
        return CalibrationStatus("unknown")
    st = _Storage(path)
    status = st.text("calibration_status")
    cause = st.text("calibration_failure") or ""
    return CalibrationStatus(status if status in ("ok", "failed") else "unknown", cause)


@_names_the_file
def read_camera_pair(path) -> tuple[Camera, Camera]:
    """(camera of image A, camera of image B): a stereo file's left and right cameras (no pose
    needed), else its one camera twice."""
    path, head = _open(path)
    kind = _kind(path, head)
    if kind == "json":
        d = _read_json(path, path.read_text(errors="replace"))
        if "left" in d and "right" in d:
            return _json_camera(path, d, "left"), _json_camera(path, d, "right")
        if "camera" in d:
            cam = _json_camera(path, d, "left")
            return cam, cam
        kind = "opencv"
    if kind == "colmap":
        cam = _colmap_cameras(path, path.read_text(errors="replace"))[0]
        return cam, cam
    st = _Storage(path)
    if st.has("K1", "M1"):
        return _stereo_cameras(st)
    cam = _mono_from_storage(st)
    return cam, cam


# =========================================================================================
# recon's report.json (the writer; read by read_camera / read_rig)
# =========================================================================================

def report_dict(result, *, detection_failures=(), uncertainty=None, coverage=None, board: str = "",
                extra: dict | None = None) -> dict:
    """The JSON report of a mono calibration (a :class:`calib.calibrate.CalibrationResult`).
    ``views_rejected`` lists every view not used, with the reason (detection failures first,
    then calibration outliers); ``model_selection`` the cross-validated scores of ``--model auto``."""
    cam = result.camera
    rejected = [r.to_json() for r in detection_failures] + [r.to_json() for r in result.rejected_views]
    d = {
        "version": 1,
        "model": cam.model,
        "image_size": [cam.width, cam.height],
        "rms_px": float(result.rms_px),
        "sigma_px": float(result.sigma_px),
        "params": {n: float(v) for n, v in zip(cam.spec.param_names, cam.params)},
        "param_std": {n: float(v) for n, v in zip(cam.spec.param_names, result.param_std)},
        "camera": camera_json(cam, result.param_std),
        "pixel_convention": "(0, 0) is the centre of the top-left pixel; the COLMAP line adds 0.5",
        "board": board,
        "views_used": [v.name for v in result.views],
        "views_rejected": rejected,
        "corners_rejected": [r.to_json() for r in result.rejected_corners],
        "num_views_used": len(result.views),
        "num_corners_used": int(sum(len(v.corners) for v in result.views)),
        "per_view_rms_px": {v.name: float(v.rms_px) for v in result.views},
        "cam_from_board": {v.name: {"rotation": v.cam_from_board.rotation.tolist(),
                                    "translation": v.cam_from_board.translation.tolist()} for v in result.views},
        "opencv_flags": int(result.opencv_flags),
    }
    if result.model_scores:
        d["model_selection"] = _model_selection_json(result)
    if uncertainty is not None:
        s = uncertainty.std_px
        d["projection_uncertainty"] = {
            "method": "mrcal-style: ray at the working distance fixed to the boards, covariance of "
                      "(intrinsics, poses) propagated; worst-direction 1-sigma",
            "distance": uncertainty.distance, "center_px": uncertainty.at_center(),
            "median_px": float(np.nanmedian(s)), "max_px": float(np.nanmax(s))}
    if coverage is not None:
        d["coverage"] = {"covered_fraction": coverage.covered_fraction, "advice": coverage.advice}
    if extra:
        d.update(extra)
    return d


def _finite(v):
    return float(v) if v is not None and np.isfinite(v) else None


def _model_selection_json(result) -> dict:
    scores = []
    for s in result.model_scores:
        e = {"model": s.model, "cv_rms_px": _finite(s.cv_rms_px), "fit_rms_px": _finite(s.fit_rms_px)}
        se = getattr(s, "cv_rms_se_px", None)
        if se is not None:
            e["cv_rms_se_px"] = _finite(se)
            e["fold_rms_px"] = [_finite(v) for v in getattr(s, "fold_rms_px", ())]
        if s.failed:
            e["failed"] = s.failed
        scores.append(e)
    d = {"method": "cross-validated reprojection RMS over held-out views (pose refitted)", "scores": scores}
    rule = getattr(result, "model_rule", None)
    if rule:
        d["rule"] = rule
    return d


def stereo_report_dict(stereo, *, left_report: dict | None = None, right_report: dict | None = None) -> dict:
    """The JSON report of a stereo calibration (a :class:`calib.stereo.StereoResult`);
    :func:`read_rig` reads its ``left``, ``right`` and ``right_from_left`` back."""
    d = {
        "version": 1,
        "kind": "stereo",
        "model": stereo.left.model,
        "image_size": [stereo.left.width, stereo.left.height],
        "rms_px": float(stereo.rms_px),
        "baseline": float(stereo.baseline),
        "rectified_vertical_rms_px": float(stereo.rectified_vertical_rms_px),
        "fix_intrinsics": bool(stereo.fix_intrinsics),
        **rig_json(stereo),
        "E": stereo.E.tolist(), "F": stereo.F.tolist(),
        "R1": stereo.rectification.R1.tolist(), "R2": stereo.rectification.R2.tolist(),
        "P1": stereo.rectification.P1.tolist(), "P2": stereo.rectification.P2.tolist(),
        "Q": stereo.rectification.Q.tolist(),
        "views_used": stereo.pairs_used,
        "views_rejected": [r.to_json() for r in stereo.pairs_rejected],
    }
    if left_report is not None:
        d["left_calibration"] = left_report
        d["params"] = left_report["params"]
        d["param_std"] = left_report["param_std"]
    if right_report is not None:
        d["right_calibration"] = right_report
    return d
