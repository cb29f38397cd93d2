"""Resumable stages: run a chain of named steps into one output folder, and on the next run
reuse every step whose inputs and options have not changed.

Each stage is recorded in ``OUT/pipeline.json`` (written atomically after every change) with
the fingerprint it ran with: a hash of its options, of what it reads (files by name, size and
modification time) and of the fingerprint of the stage before it, so a change anywhere
invalidates that stage and everything after it, and nothing before it::

    runner = StageRunner(out, from_stage=None)
    sfm = runner.run("sfm", {"photos": file_fingerprint(photos), "quality": "fast"}, do_sfm,
                     outputs=[out / "sfm" / "sparse" / "0"])
    splat = runner.run("train", {"steps": 3000}, do_train, outputs=[out / "splat" / "splat.ply"])

A stage's function receives a :class:`StageContext` (``ctx.resume`` is True when the same
stage, with the same fingerprint, was interrupted last time, so a trainer can continue from
its checkpoint) and returns a JSON-able dict of results. ``how`` in the record says whether the
stage ``ran``, ``resumed`` (continued an interrupted run) or was ``reused``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["StageContext", "StageFailed", "StageRecord", "StageRunner", "file_fingerprint"]

RECORD_VERSION = 1


class StageFailed(RuntimeError):
    """A stage raised; ``stage`` names it and ``__cause__`` is the original error."""

    def __init__(self, stage: str, message: str):
        super().__init__(f"stage {stage!r} failed: {message}")
        self.stage = stage


@dataclass
class StageRecord:
    name: str
    status: str  # "running" | "done" | "failed"
    fingerprint: str
    how: str = "ran"  # "ran" | "resumed" | "reused"
    seconds: float = 0.0
    started: float = 0.0  # UNIX time
    finished: float | None = None
    outputs: list[str] = field(default_factory=list)
    result: dict = field(default_factory=dict)
    error: str | None = None
    options: dict = field(default_factory=dict)


@dataclass
class StageContext:
    name: str
    out: Path
    resume: bool  # the same stage with the same fingerprint was interrupted: continue it
    log: Callable[[str], None]


def file_fingerprint(paths) -> list:
    """[name, size, mtime_ns] for each file under ``paths`` (files or folders, recursively,
    sorted): cheap to compute for thousands of photos, and it changes when a file is replaced,
    edited or added."""
    out = []
    for p in [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            out.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    return out


def _hash(doc) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageRunner:
    """Runs stages in order into ``out`` and keeps ``out/pipeline.json``.

    from_stage: redo this stage and every later one even when their fingerprints match.
    """

    def __init__(self, out, *, from_stage: str | None = None, log: Callable[[str], None] | None = None,
                 record_name: str = "pipeline.json"):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / record_name
        self.from_stage = from_stage
        self._forcing = False
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._prev_fp = ""
        self.order: list[str] = []
        self.records: dict[str, StageRecord] = {}
        self._old: dict[str, StageRecord] = {}
        if self.path.is_file():
            try:
                doc = json.loads(self.path.read_text())
                if doc.get("version") == RECORD_VERSION:
                    self._old = {s["name"]: StageRecord(**s) for s in doc.get("stages", [])}
            except (ValueError, TypeError, KeyError) as e:
                self.log(f"[pipeline] ignoring unreadable {self.path.name} ({e}); every stage runs")

    # ---- record ----
    def save(self, **extra) -> None:
        from recon.io import files  # here: `recon --help` imports this module and must stay light

        doc = {"version": RECORD_VERSION, "stages": [asdict(self.records[n]) for n in self.order], **extra}
        files.atomic_write_text(self.path, json.dumps(doc, indent=2, default=str) + "\n")

    def _save_for(self, name: str) -> None:
        """save(), failing as the stage ``name`` (e.g. a full disk while recording it)."""
        try:
            self.save()
        except OSError as e:
            raise StageFailed(name, f"cannot record the stage in {self.path}: {e}") from e

    def previous(self, name: str) -> StageRecord | None:
        """The record of ``name`` from the last run (None if it never ran)."""
        return self._old.get(name)

    # ---- running ----
    def run(self, name: str, options: dict, fn: Callable[[StageContext], dict], *,
            outputs=(), index: str = "") -> dict:
        """Run (or reuse) stage ``name``; returns its result dict. Raises StageFailed."""
        if name in self.records:
            raise ValueError(f"name: stage {name!r} already ran in this pipeline")
        if self.from_stage is not None and name == self.from_stage:
            self._forcing = True
        fp = _hash({"options": options, "upstream": self._prev_fp, "stage": name})
        outputs = [str(Path(o)) for o in outputs]
        old = self._old.get(name)
        prefix = f"[{index or name}]"
        self.order.append(name)
        if (old is not None and old.status == "done" and old.fingerprint == fp and not self._forcing
                and all(Path(o).exists() for o in old.outputs)):
            rec = StageRecord(**{**asdict(old), "how": "reused"})
            self.records[name] = rec
            self._prev_fp = fp
            self._save_for(name)
            self.log(f"{prefix} {name}: reused (inputs and options unchanged; finished in "
                     f"{old.seconds:.1f} s last time)")
            return rec.result
        resume = (old is not None and old.status in ("running", "failed") and old.fingerprint == fp
                  and not self._forcing)
        rec = StageRecord(name=name, status="running", fingerprint=fp, how="resumed" if resume else "ran",
                          started=time.time(), outputs=outputs, options=_jsonable(options))
        self.records[name] = rec
        self._save_for(name)
        self.log(f"{prefix} {name}: " + ("resuming the interrupted run" if resume else "running"))
        t0 = time.perf_counter()
        try:
            result = fn(StageContext(name, self.out, resume, self.log)) or {}
        except BaseException as e:
            rec.status, rec.error = "failed", f"{type(e).__name__}: {e}"
            rec.seconds = round(time.perf_counter() - t0, 2)
            rec.finished = time.time()
            try:
                self.save()
            except OSError as e_save:
                # e.g. the disk that just filled up: pipeline.json keeps its last complete
                # version (this stage "running"), which the next run treats as interrupted
                self.log(f"{prefix} {name}: could not record the failure in {self.path.name}: {e_save}")
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise StageFailed(name, str(e)) from e
        rec.status, rec.result = "done", _jsonable(result)
        rec.seconds = round(time.perf_counter() - t0, 2)
        rec.finished = time.time()
        self._prev_fp = fp
        try:
            self._save_for(name)  # until this is on disk the stage counts as interrupted
        except StageFailed as e:
            rec.status, rec.error = "failed", str(e)
            raise
        self.log(f"{prefix} {name}: done in {rec.seconds:.1f} s")
        return rec.result

    def skip(self, name: str, reason: str) -> None:
        """Record a stage that does not apply to this run (e.g. labels without --labels)."""
        self.order.append(name)
        self.records[name] = StageRecord(name=name, status="skipped", fingerprint="", how="skipped",
                                         result={"reason": reason})
        self._save_for(name)


def _jsonable(doc):
    return json.loads(json.dumps(doc, default=str))
