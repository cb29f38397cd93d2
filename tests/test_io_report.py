"""recon.io.report.write_report: the one report.json writer (strict JSON, atomic, versioned)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from recon.io.report import REPORT_VERSION, write_report


@dataclass
class _Result:
    rms: float

    def to_json(self) -> dict:
        return {"rms": self.rms, "where": Path("/tmp/x")}


def test_nan_becomes_null_and_numpy_becomes_json(tmp_path):
    doc = {"a": float("nan"), "b": [1.0, float("inf"), -float("inf")], "c": np.float32(0.5), "d": np.arange(3),
           "e": {"nested": np.nan}, "f": _Result(float("nan")), "g": np.int64(7), "h": True}
    path = write_report(tmp_path / "report.json", doc)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back == {"version": REPORT_VERSION, "a": None, "b": [1.0, None, None], "c": 0.5, "d": [0, 1, 2],
                    "e": {"nested": None}, "f": {"rms": None, "where": "/tmp/x"}, "g": 7, "h": True}
    assert next(iter(back)) == "version"
    assert doc["a"] != doc["a"]  # the caller's dict is not modified


def test_the_callers_version_is_kept(tmp_path):
    back = json.loads(write_report(tmp_path / "r.json", {"x": 1, "version": 3}).read_text())
    assert back == {"version": 3, "x": 1} and next(iter(back)) == "version"


def test_a_failed_write_leaves_the_old_report(tmp_path):
    path = write_report(tmp_path / "report.json", {"x": 1})
    with pytest.raises(TypeError, match="report: expected a dict"):
        write_report(path, [1, 2])
    assert json.loads(path.read_text()) == {"version": REPORT_VERSION, "x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary left behind


def test_a_full_disk_is_a_disk_full_error_naming_the_file(tmp_path, monkeypatch):
    import errno

    import calib.files
    from recon.errors import DiskFullError

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(calib.files, "_atomic_write", full)
    with pytest.raises(DiskFullError, match="report.json"):
        write_report(tmp_path / "report.json", {"x": 1})


def test_calibration_reports_go_through_the_same_writer(tmp_path):
    """calib.files.write_report IS recon's writer (calib is the bottom layer): same rules."""
    import calib.files

    back = json.loads(calib.files.write_report(tmp_path / "c.json", {"rms": np.float64("nan")}).read_text())
    assert back == {"version": REPORT_VERSION, "rms": None}
