"""One concept, one home (issue 24): a static scan of our sources for second copies of concepts
that have a single home. Each check is shown to catch a planted copy.

- report.json is written only by calib.files.write_report (re-exported as recon.io.report):
  no other module writes a file named "report.json" with json.dumps / write_text.
- The image extensions are one tuple, calib.calibrate_images.IMAGE_EXTENSIONS (re-exported by
  recon.io.images beside LOSSLESS_EXTENSIONS): no other module-level constant holds three or more
  image-extension strings (an inline capability check such as "formats with a JPEG quality" is
  not a list of images).
- One camera guess (recon.io.guess_camera), one calibration reader (calib.files): no other
  function named guess_camera, read_opencv_calibration or read_stereo_calibration.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("calib", "recon", "render", "viewer")
_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm"}
_HOMES = {"report": {"calib/files.py"}, "exts": {"calib/calibrate_images.py", "recon/io/images.py"},
          "guess_camera": {"recon/io/images.py"}}
_GONE = ("read_opencv_calibration", "read_stereo_calibration")


def _sources(root: Path):
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            yield f.relative_to(root).as_posix(), f.read_text(encoding="utf-8")


def problems(root: Path = ROOT) -> list[str]:
    out = []
    for rel, text in _sources(root):
        tree = ast.parse(text)
        for node in tree.body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, (ast.Tuple, ast.List, ast.Set)):
                lits = {e.value.lower() for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if len(lits & _EXTS) >= 3 and rel not in _HOMES["exts"]:
                    out.append(f"{rel}:{node.lineno} lists image extensions (use recon.io.images.IMAGE_EXTENSIONS)")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.name == "guess_camera" and rel not in _HOMES["guess_camera"]:
                    out.append(f"{rel}:{node.lineno} defines guess_camera (use recon.io.guess_camera)")
                if node.name in _GONE:
                    out.append(f"{rel}:{node.lineno} defines {node.name} (use calib.read_camera / read_rig)")
            if isinstance(node, ast.Call) and rel not in _HOMES["report"]:
                writes = isinstance(node.func, ast.Attribute) and node.func.attr in ("write_text", "dump")
                writes = writes or (isinstance(node.func, ast.Name) and node.func.id.startswith("atomic_write"))
                if writes and "report.json" in ast.unparse(node):
                    out.append(f"{rel}:{node.lineno} writes report.json itself (use recon.io.report.write_report)")
    return sorted(out, key=lambda p: (p.split(":")[0], int(p.split(":")[1].split()[0])))


def test_one_home_for_reports_extensions_camera_guess_and_calibration_readers():
    assert problems() == []


def test_the_scan_catches_second_copies(tmp_path):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    (tmp_path / "recon" / "bad.py").write_text(
        "import json\n"
        "EXTS = ('.png', '.JPG', '.jpeg')\n"
        "def guess_camera(w, h):\n    return None\n"
        "def read_stereo_calibration(p):\n    return None\n"
        "def save(out, doc):\n    (out / 'report.json').write_text(json.dumps(doc))\n")
    (tmp_path / "render" / "ok.py").write_text(
        "from recon.io.report import write_report\n"
        "def save(out, doc, ext):\n    write_report(out / 'report.json', doc)\n"
        "    return ext in ('.jpg', '.jpeg', '.webp')\n")
    found = problems(tmp_path)
    assert found == ["recon/bad.py:2 lists image extensions (use recon.io.images.IMAGE_EXTENSIONS)",
                     "recon/bad.py:3 defines guess_camera (use recon.io.guess_camera)",
                     "recon/bad.py:5 defines read_stereo_calibration (use calib.read_camera / read_rig)",
                     "recon/bad.py:8 writes report.json itself (use recon.io.report.write_report)"], found
