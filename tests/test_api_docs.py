"""docs/api.md is executed: every ```python block runs, in order, in one namespace and one
temporary folder (the blocks share ``work/``). Blocks whose first line says ``(slow)`` run only
in the slow test (together with all the others)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
JOBS = {"data", "calibrate", "sfm", "train", "export", "label", "view"}


def blocks() -> list[tuple[str, bool, str]]:
    """(job, slow, code) of each python block of docs/api.md."""
    out = []
    for code in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL):
        head = code.splitlines()[0]
        m = re.match(r"# job: (\w+)( \(slow\))?$", head)
        assert m, f"docs/api.md: a python block must start with '# job: NAME', got {head!r}"
        out.append((m.group(1), bool(m.group(2)), code))
    return out


def _run(tmp_path, monkeypatch, *, slow: bool) -> list[str]:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "api_doc"}
    ran = []
    for job, is_slow, code in blocks():
        if is_slow and not slow:
            continue
        exec(compile(code, f"docs/api.md ({job})", "exec"), namespace)  # noqa: S102 - our own docs
        ran.append(job)
    return ran


def test_every_job_has_an_example():
    assert {job for job, _, _ in blocks()} == JOBS


def test_api_examples_run(tmp_path, monkeypatch):
    ran = _run(tmp_path, monkeypatch, slow=False)
    assert ran == [j for j, s, _ in blocks() if not s]
    assert (tmp_path / "work" / "mesh.ply.report.json").is_file()
    assert (tmp_path / "work" / "labels" / "labels.ply").is_file()


@pytest.mark.slow
def test_api_examples_run_with_sfm(tmp_path, monkeypatch):
    _run(tmp_path, monkeypatch, slow=True)
    assert (tmp_path / "work" / "sfm" / "sparse" / "0").is_dir()
