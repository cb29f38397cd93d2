"""The one home of recon's cluster: a Dask ``distributed`` client, started or attached, checked
at start, and a task runner that records what the cluster did.

* ``ClusterOptions(workers=N)``: a ``LocalCluster`` of N single-thread worker processes (no
  dashboard); ``ClusterOptions(address="tcp://host:8786")`` or ``scheduler_file=...``: a running
  scheduler (``dask scheduler`` / ``dask worker``, dask-jobqueue, dask-kubernetes; docs/cluster.md).
* :func:`open_cluster` checks, before any task is submitted, that every worker sees the output
  folder (a token file written here is read on each worker), runs the same versions of recon,
  pycolmap, numpy and torch, and, when GPU tasks are coming, that some worker offers the
  ``GPU`` resource (a task asking for a resource no worker has waits forever in Dask). Any failed
  check is a :class:`ClusterError`: one line, exit status 2 in the CLI.
* :meth:`Cluster.map` runs one stage's tasks. A task is a pure function of (inputs, options,
  seed) called as ``fn(folder, *args)``; it writes only ``folder`` and returns small JSON
  metadata. A done-marker (``folder/done.json``, holding a hash of the inputs) makes a finished
  task reused on resume; a task is re-run by the engine when its worker dies (SIGKILL: the nanny
  restarts the worker) or when it raises (``retries``). A task that still fails ends the stage
  with one line naming it; finished tasks keep their markers.

:func:`run_tasks` runs the same tasks with or without a cluster (without: one after another in
this process, same folders and markers), so a library function has one code path.

Per stage, :meth:`Cluster.facts` reports the tasks, tasks reused, wall seconds, the sum of the
tasks' own seconds, retries (attempts beyond the first, counted by the tasks themselves, so a
re-run after a killed worker counts too) and failures; the SfM report stores them as ``cluster``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

from recon.errors import ReconError

__all__ = ["Cluster", "ClusterError", "ClusterOptions", "StageFacts", "Task", "input_hash",
           "open_cluster", "package_versions", "run_tasks"]

VERSIONED_PACKAGES = ("recon", "pycolmap", "numpy", "torch")
DONE_MARKER = "done.json"


class ClusterError(ReconError):
    """The cluster cannot be used (unreachable, misconfigured) or a task failed for good."""


@dataclass(frozen=True)
class ClusterOptions:
    """Where tasks run.

    workers:        start a LocalCluster of this many single-thread worker processes
    address:        attach to a running scheduler (``tcp://host:port``)
    scheduler_file: attach through a scheduler file (``dask scheduler --scheduler-file F``)
    timeout_s:      seconds to wait for the scheduler (and for the first worker)
    retries:        re-runs of a task that raised (a worker killed mid-task is handled by Dask
                    itself: the task runs elsewhere, up to ``distributed.scheduler.allowed-failures``)
    threads_per_task: pycolmap threads inside one task; None: the machine's cores shared by the
                    local workers, or all of a remote worker's cores (-1)
    """

    workers: int | None = None
    address: str | None = None
    scheduler_file: str | None = None
    timeout_s: float = 30.0
    retries: int = 2
    threads_per_task: int | None = None

    def __post_init__(self):
        given = [k for k in ("workers", "address", "scheduler_file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"workers, address, scheduler_file: give exactly one, got {given or 'none'}")
        if self.workers is not None and (isinstance(self.workers, bool) or int(self.workers) < 1):
            raise ValueError(f"workers: expected a positive number of worker processes, got {self.workers!r}")
        if self.address is not None and "://" not in self.address:
            raise ValueError(f"address: expected a scheduler address such as tcp://host:8786, got {self.address!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s: expected > 0, got {self.timeout_s}")
        if self.retries < 0:
            raise ValueError(f"retries: expected >= 0, got {self.retries}")


@dataclass
class Task:
    """One unit of work: ``fn(folder, *args)`` run on a worker; ``key`` names it (unique in its
    stage, safe as a folder name); ``inputs`` is hashed into the done-marker (anything JSON)."""

    key: str
    fn: Callable
    args: tuple
    inputs: object
    resources: dict[str, float] | None = None


@dataclass
class StageFacts:
    """What one stage cost on the cluster (seconds are wall-clock)."""

    tasks: int = 0
    reused: int = 0
    wall_s: float = 0.0
    task_seconds_sum: float = 0.0
    task_seconds_max: float = 0.0
    retries: int = 0
    failures: int = 0


def input_hash(inputs) -> str:
    """SHA-256 of the canonical JSON of ``inputs`` (first 16 hex digits)."""
    text = json.dumps(inputs, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    """Versions of the packages a task's result depends on, without importing them."""
    from importlib import metadata

    import recon

    out = {"recon": recon.__version__}
    for name in VERSIONED_PACKAGES[1:]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _read_token(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _worker_gpus() -> int:
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def _run_task(fn: Callable, folder: str, digest: str, args: tuple) -> dict:
    """Runs on a worker: clear the folder of a previous attempt, call ``fn``, write the marker."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    attempts_file = d / "attempts"
    attempts = int(attempts_file.read_text() or 0) + 1 if attempts_file.exists() else 1
    for p in d.iterdir():  # a pure task starts from an empty folder (a killed attempt left files)
        if p.name != "attempts":
            _remove(p)
    attempts_file.write_text(str(attempts))
    (d / "started.json").write_text(json.dumps({"pid": os.getpid(), "attempt": attempts}))
    t0 = time.perf_counter()
    result = fn(d, *args)
    seconds = time.perf_counter() - t0
    marker = {"input_hash": digest, "result": result, "seconds": round(seconds, 4),
              "attempts": attempts, "pid": os.getpid()}
    tmp = d / (DONE_MARKER + ".tmp")
    tmp.write_text(json.dumps(marker))
    os.replace(tmp, d / DONE_MARKER)
    return marker


def _remove(p: Path) -> None:
    import shutil

    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def read_marker(folder: Path, digest: str) -> dict | None:
    """The done-marker of a finished task with these inputs, or None."""
    try:
        marker = json.loads((Path(folder) / DONE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if marker.get("input_hash") == digest else None


@dataclass
class Cluster:
    """A connected, checked client (made by :func:`open_cluster`; close it, or use ``with``)."""

    client: object
    options: ClusterOptions
    kind: str  # "local" | "remote"
    address: str
    workers: int
    worker_gpus: int
    threads_per_task: int
    stages: dict[str, StageFacts] = field(default_factory=dict)
    _local: object = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._local is not None:
                self._local.close()

    def new_run(self) -> None:
        """Forget the stage facts of an earlier run on this client (one report per run)."""
        self.stages.clear()

    def facts(self) -> dict:
        """JSON for report.json: the cluster and, per stage, :class:`StageFacts`."""
        return {"kind": self.kind, "address": self.address, "workers": self.workers,
                "gpu_workers": self.worker_gpus, "threads_per_task": self.threads_per_task,
                "retries_allowed": self.options.retries,
                "stages": {k: asdict(v) for k, v in self.stages.items()},
                "task_seconds_sum": round(sum(v.task_seconds_sum for v in self.stages.values()), 3)}

    def map(self, stage: str, tasks: Sequence[Task], root: Path) -> list:
        """Run ``tasks`` (one stage) with their folders under ``root/stage``; returns each task's
        result in order. Finished tasks with the same inputs are reused, not re-run. Raises
        ClusterError naming the first task that failed after the retries (other finished tasks
        keep their markers, so a re-run resumes)."""
        from distributed import as_completed

        keys = [t.key for t in tasks]
        if len(set(keys)) != len(keys):
            raise ValueError(f"tasks: keys repeat in stage {stage!r}")
        for t in tasks:
            if t.resources and t.resources.get("GPU", 0) > 0 and self.worker_gpus == 0:
                raise ClusterError(f"stage {stage!r}: task {t.key!r} needs a GPU and no worker of "
                                   f"{self.address} offers one (start workers with --resources GPU=1)")
        facts = self.stages.setdefault(stage, StageFacts())
        t0 = time.perf_counter()
        base = Path(root) / stage
        results: list = [None] * len(tasks)
        futures = {}
        for i, t in enumerate(tasks):
            folder = base / t.key
            digest = input_hash(t.inputs)
            marker = read_marker(folder, digest)
            facts.tasks += 1
            if marker is not None:
                facts.reused += 1
                results[i] = marker["result"]
                continue
            fut = self.client.submit(_run_task, t.fn, str(folder), digest, t.args, key=f"{stage}-{t.key}-{digest}",
                                     retries=self.options.retries, resources=t.resources, pure=False)
            futures[fut] = i
        failed = None
        for fut in as_completed(list(futures)):
            i = futures[fut]
            if fut.status == "error":
                facts.failures += 1
                if failed is None:
                    failed = (tasks[i].key, fut.exception())
                continue
            marker = fut.result()
            results[i] = marker["result"]
            facts.task_seconds_sum += marker["seconds"]
            facts.task_seconds_max = max(facts.task_seconds_max, marker["seconds"])
            facts.retries += marker["attempts"] - 1
        facts.wall_s += time.perf_counter() - t0
        facts.task_seconds_sum = round(facts.task_seconds_sum, 4)
        facts.wall_s = round(facts.wall_s, 4)
        if failed is not None:
            key, exc = failed
            why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            raise ClusterError(f"stage {stage!r}: task {key!r} failed after {self.options.retries} "
                               f"retries ({why}); finished tasks are kept in {base} for a re-run")
        return results


def run_tasks(cluster: Cluster | None, stage: str, tasks: Sequence[Task], root: Path) -> list:
    """``cluster.map(stage, tasks, root)``, or without a cluster the same tasks one after another
    in this process, with the same folders and done-markers (a finished task is reused)."""
    if cluster is not None:
        return cluster.map(stage, tasks, root)
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError(f"tasks: keys repeat in stage {stage!r}")
    results = []
    for t in tasks:
        folder, digest = Path(root) / stage / t.key, input_hash(t.inputs)
        marker = read_marker(folder, digest) or _run_task(t.fn, str(folder), digest, t.args)
        results.append(marker["result"])
    return results


def open_cluster(options: ClusterOptions, output_dir, *, need_gpu: bool = False) -> Cluster:
    """Start or attach the cluster of ``options`` and check it against ``output_dir`` (created);
    raises ClusterError (one line) when it cannot be used. ``need_gpu``: GPU tasks are coming
    (a local cluster's workers then offer this machine's CUDA GPU as the ``GPU`` resource; a
    remote cluster must have workers started with ``--resources GPU=1``)."""
    from distributed import Client, LocalCluster

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    local = None
    try:
        if options.workers is not None:
            # local GPU tasks: every worker offers this machine's GPU (they share it)
            gpu = {"GPU": 1} if need_gpu and _worker_gpus() > 0 else None
            local = LocalCluster(n_workers=int(options.workers), threads_per_worker=1, processes=True, host="127.0.0.1",
                                 dashboard_address=None, silence_logs=logging.ERROR,
                                 local_directory=str(out / ".dask"), resources=gpu)
            client = Client(local, timeout=f"{options.timeout_s}s")
            kind, address = "local", local.scheduler_address
        else:
            where = options.address or f"scheduler file {options.scheduler_file}"
            if options.scheduler_file is not None and not Path(options.scheduler_file).is_file():
                raise ClusterError(f"--scheduler-file {options.scheduler_file}: no such file")
            client = Client(options.address, scheduler_file=options.scheduler_file,
                            timeout=f"{options.timeout_s}s")
            kind, address = "remote", client.scheduler.address
    except ClusterError:
        raise
    except (OSError, TimeoutError) as e:
        if local is not None:
            local.close()
        raise ClusterError(f"cannot reach the Dask scheduler at {where} within {options.timeout_s:g} s "
                           f"({type(e).__name__})") from None
    try:
        return _checked(client, options, kind, address, out, need_gpu, local)
    except BaseException:
        client.close()
        if local is not None:
            local.close()
        raise


def _checked(client, options: ClusterOptions, kind: str, address: str, out: Path, need_gpu: bool,
             local) -> Cluster:
    try:
        client.wait_for_workers(1, timeout=options.timeout_s)
    except (TimeoutError, OSError):
        raise ClusterError(f"the Dask scheduler at {address} has no worker (waited "
                           f"{options.timeout_s:g} s): start some with `dask worker {address}`") from None
    workers = list(client.scheduler_info(n_workers=-1)["workers"])
    # every worker must see the output folder: tasks write there and the client reads it back
    token_path = out / f".cluster-token-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    token_path.write_text(token)
    try:
        seen = client.run(_read_token, str(token_path.resolve()))
    finally:
        token_path.unlink(missing_ok=True)
    blind = sorted(w for w, v in seen.items() if v != token)
    if blind:
        raise ClusterError(f"{len(blind)} of {len(workers)} Dask workers ({blind[0]}...) cannot read the "
                           f"output folder {out.resolve()}: it must be on a file system all workers share")
    mine = package_versions()
    for w, theirs in client.run(package_versions).items():
        diff = [f"{k} {theirs.get(k)} (here {v})" for k, v in mine.items() if theirs.get(k) != v]
        if diff:
            raise ClusterError(f"Dask worker {w} runs other package versions: {', '.join(diff)}; "
                               "install the same versions on every worker")
    info = client.scheduler_info(n_workers=-1)["workers"]
    gpus = sum(1 for w in info.values() if w.get("resources", {}).get("GPU", 0) > 0)
    if need_gpu and gpus == 0:
        raise ClusterError(f"GPU tasks need workers started with --resources GPU=1; none of the "
                           f"{len(workers)} workers at {address} offers one")
    if options.threads_per_task is not None:
        threads = int(options.threads_per_task)
    elif kind == "local":
        threads = max(1, (os.cpu_count() or 1) // max(1, len(workers)))
    else:
        threads = -1
    return Cluster(client, options, kind, address, len(workers), gpus, threads, _local=local)
