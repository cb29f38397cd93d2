"""The torch CPU thread count of a training run: the cores that other processes leave free.

Rule: ``threads = clamp(floor(cores - others + 0.5), 1, cores)`` where ``others`` is the CPU
(in cores) that processes OUTSIDE this process tree used over the last interval:
``(busy time of all CPUs from /proc/stat - CPU time of this process and its descendants) / wall``.
Both counters are exact and current; the 1-minute load average is neither (it lags by a minute,
so at the start of training it still holds the previous stage's own load, and it counts this
process's children as others).

The count starts from a 0.3 s sample and changes only when two consecutive checks
(``every_s`` apart) agree on the same new value, so one compiler burst does not make it flap.
Oversubscribed OpenMP threads (more runnable threads than free cores) wait on each other at
every parallel region and make a step many times slower; one thread too few costs at most the
parallel speed-up. ``bench/bench_threads.py`` measures steps/s idle and beside 1 and 2 CPU-bound
processes.

Off Linux (no /proc), the count is ``cores`` and stays there.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CpuSample", "ThreadGovernor", "cpu_sample"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_HISTORY_MAX = 2000  # entries kept in report.json; past it only changes are recorded


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class CpuSample:
    """Cumulative counters at ``wall`` (time.monotonic, s): ``busy_s`` CPU-seconds of all CPUs
    not idle, ``own_s`` CPU-seconds of this process tree, ``cpus`` CPUs counted in ``busy_s``."""

    wall: float
    busy_s: float
    own_s: float
    cpus: int


def _system_busy() -> tuple[float, int]:
    with open("/proc/stat") as f:
        lines = f.read().splitlines()
    v = [int(x) for x in lines[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user/nice)
    busy = v[0] + v[1] + v[2] + sum(v[5:8])
    cpus = sum(1 for ln in lines[1:] if ln.startswith("cpu"))
    return busy / _TICK, max(cpus, 1)


def _stat_fields(pid: str) -> tuple[int, int] | None:
    """(ppid, utime + stime + cutime + cstime in ticks) of a live pid, None if it vanished."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rfind(")") + 2:].split()  # the name may hold spaces and parentheses
    try:
        return int(rest[1]), int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    except (IndexError, ValueError):
        return None


def _tree_cpu_seconds(root: int | None = None) -> float:
    """CPU-seconds of process ``root`` (default: this one) and all its live descendants,
    including the reaped children each of them waited for (so a child's time is counted once,
    before and after it exits)."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        got = _stat_fields(name)
        if got is None:
            continue
        pid = int(name)
        children.setdefault(got[0], []).append(pid)
        ticks[pid] = got[1]
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total / _TICK


def cpu_sample() -> CpuSample:
    """The counters now (Linux /proc); OSError where /proc is missing."""
    busy, cpus = _system_busy()
    return CpuSample(time.monotonic(), busy, _tree_cpu_seconds(), cpus)


class ThreadGovernor:
    """torch CPU threads = the cores other processes leave free (rule in the module docstring).

    Args:
        fixed: a thread count to keep (no measuring), or None to follow the machine.
        every_s: seconds between checks during the run.
        log: ``log(message)`` for each change.
        sample: the counter source (tests pass a fake); default :func:`cpu_sample`.
        cores: the cores this process may use (default: its CPU affinity).
    Attributes:
        history: one dict per check, ``{"t": s since start, "threads": n, "others": cores busy
            with other processes (None at a fixed count), "why": ...}``; report.json keeps it.
    """

    def __init__(self, *, fixed: int | None = None, every_s: float = 5.0, log=None,
                 sample: Callable[[], CpuSample] | None = None, cores: int | None = None,
                 start_probe_s: float = 0.3):
        if fixed is not None and not (isinstance(fixed, int) and fixed >= 1):
            raise ValueError(f"fixed: expected an integer >= 1 or None, got {fixed!r}")
        if not every_s >= 0:
            raise ValueError(f"every_s: expected >= 0, got {every_s}")
        self.fixed, self.every_s, self.log = fixed, every_s, log or (lambda m: None)
        self.cores = cores or _cores()
        self._sample = sample or cpu_sample
        self.start_probe_s = start_probe_s
        self._last: CpuSample | None = None
        self._t0 = time.monotonic()
        self._pending: int | None = None
        self.threads = 0
        self.history: list[dict] = []

    # ---- measuring -----------------------------------------------------------------------
    def others(self, a: CpuSample, b: CpuSample) -> float:
        """Cores used by processes outside this tree between samples ``a`` and ``b``, scaled
        to this process's cores when /proc/stat counts more CPUs than it may use."""
        dt = b.wall - a.wall
        if dt <= 0:
            return 0.0
        o = max(0.0, (b.busy_s - a.busy_s) - (b.own_s - a.own_s)) / dt
        if b.cpus > self.cores:
            o *= self.cores / b.cpus
        return min(o, float(b.cpus))

    def choose(self, others: float) -> int:
        """Threads for ``others`` cores busy elsewhere."""
        return int(min(self.cores, max(1, math.floor(self.cores - others + 0.5))))

    # ---- running -------------------------------------------------------------------------
    def start(self) -> int:
        """Set torch's thread count (fixed, or from a short sample) and return it."""
        import torch

        if self.fixed is not None:
            self._apply(torch, self.fixed, None, "fixed")
            return self.threads
        try:
            a = self._sample()
            if self.start_probe_s > 0:
                time.sleep(self.start_probe_s)
            b = self._sample()
        except (OSError, ValueError) as e:
            self._apply(torch, self.cores, None, f"no CPU counters ({type(e).__name__}): all cores")
            return self.threads
        o = self.others(a, b)
        self._last = b
        self._apply(torch, self.choose(o), o, "start")
        return self.threads

    def maybe_update(self) -> int:
        """Re-measure when ``every_s`` has passed; change the count when two checks agree."""
        if self.fixed is not None or self._last is None:
            return self.threads
        if time.monotonic() - self._last.wall < self.every_s:
            return self.threads
        try:
            b = self._sample()
        except (OSError, ValueError):
            return self.threads
        o = self.others(self._last, b)
        self._last = b
        want = self.choose(o)
        if want == self.threads:
            self._pending = None
            self._record(self.threads, o, "check")
        elif self._pending == want:
            import torch

            self._pending = None
            self._apply(torch, want, o, f"{o:.2f} of {self.cores} cores busy with other processes")
        else:
            self._pending = want
            self._record(self.threads, o, f"check (wants {want}; waits for a second check)")
        return self.threads

    def _record(self, n: int, others: float | None, why: str) -> None:
        changed = not self.history or self.history[-1]["threads"] != n
        if len(self.history) >= _HISTORY_MAX and not changed:
            return
        self.history.append({"t": round(time.monotonic() - self._t0, 1), "threads": n,
                             "others": None if others is None else round(others, 2), "why": why})

    def _apply(self, torch, n: int, others: float | None, why: str) -> None:
        if n != self.threads:
            torch.set_num_threads(n)
            if self.threads:
                self.log(f"torch threads {self.threads} -> {n} ({why})")
            self.threads = n
        self._record(n, others, why)
