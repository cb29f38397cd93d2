"""bench/run_all.py: its parsers read the tables the stage benchmarks print (snippets taken from
real runs), and one benchmark runs through it end to end."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import run_all  # noqa: E402 - after the sys.path set-up above

sys.path.remove(str(ROOT / "bench"))

BA = """recon.ba (numpy) vs Ceres (pycolmap 4.2.1); cost = 1/2 sum |r|^2, same objective and tolerances
images  points      obs      cost ours     cost ceres  rel diff it ours it ceres runs t ours s t ceres s  ratio
    10    1000     3954     598.696707     598.696707  -5.5e-13       4        4    1    0.514     0.230   2.23
    20   10000    40330    6327.819023    6327.819023  -2.6e-12       4        5    1    5.066     8.129   0.62
load average after: 15.10 15.75 12.33
"""
IO = """operation                                          ours (s)      peer   peer (s)  ours/peer
PLY write 100,000 pts (binary)                        0.421    open3d      0.403       1.04
PLY write 100,000 pts (ASCII)                         8.223         -        nan        nan
read COLMAP bin (20 img, 2,000 pts, 40,000 obs)       0.543  pycolmap      0.074       7.30
"""
STEREO = """method                        MP/s  vs opencv  bad-2 %  density %
opencv SGBM                  0.772      1.00x     0.30       99.9
ours raw + LR                0.233      0.30x     0.30       99.9
"""
CAMERAS = """model           op           ours s peer                       peer s  ratio  max diff px
OPENCV          project       0.113 cv2.projectPoints           0.733   0.15     4.55e-13
OPENCV          unproject     2.683 pycolmap cam_from_img       0.256  10.46     1.39e-11
"""


def test_parsers_read_the_printed_tables():
    ba = run_all.parse_ba(BA)
    assert [(r.case, r.ratio) for r in ba] == [("1,000 points, 3,954 obs", 2.23), ("10,000 points, 40,330 obs", 0.62)]
    io = run_all.parse_io(IO)
    assert [(r.case, r.peer, r.ratio) for r in io] == [("PLY write 100,000 pts (binary)", "open3d", 1.04),
                                                      ("read COLMAP bin (20 img, 2,000 pts, 40,000 obs)", "pycolmap", 7.3)]
    st = run_all._parse_vs_opencv("stereo", "MP/s")(STEREO)
    assert len(st) == 1 and st[0].case == "ours raw + LR" and st[0].ratio == pytest.approx(1 / 0.30)
    cams = run_all.parse_cameras(CAMERAS)
    assert [(r.case, r.peer, r.ratio) for r in cams] == [("OPENCV project", "cv2.projectPoints", 0.15),
                                                        ("OPENCV unproject", "pycolmap cam_from_img", 10.46)]
    assert run_all.parse_sfm("time ratio recon sfm / pycolmap default: 0.85\n")[0].ratio == 0.85
    assert run_all.parse_ba("no table here") == []


def test_one_benchmark_end_to_end(tmp_path):
    bench = run_all.Bench("cameras", ("--n", "2000"), (), run_all.parse_cameras, timeout_s=240)
    rows, secs, status = run_all.run_bench(bench, full=False, log_dir=tmp_path)
    assert status == "ok", status
    assert len(rows) >= 8 and all(r.ratio is not None and r.ratio > 0 and not math.isnan(r.ratio) for r in rows)
    assert {r.peer for r in rows} >= {"cv2.projectPoints"}
    assert (tmp_path / "bench_cameras.log").is_file()
    table = run_all.table([{"bench": "cameras", "rows": [r.__dict__ for r in rows], "seconds": secs, "status": status}])
    assert table.count("\n") == len(rows) + 1 and "| cameras | OPENCV project | cv2.projectPoints |" in table
