"""Devices for every trainer and renderer in ``render``: picking one from a ``--device`` option,
recognising an out-of-memory error, and the peak memory a run used."""

from __future__ import annotations

import torch

from recon.errors import ReconError

__all__ = ["is_oom", "peak_memory_mb", "pick_device"]


def pick_device(name: str) -> torch.device:
    """``name``: "auto" (CUDA when torch sees a GPU, else CPU), "cpu" or "cuda"; ReconError naming
    --device when CUDA is asked for and not available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ReconError("--device cuda: torch.cuda.is_available() is False (CPU-only torch build or no GPU)")
    return torch.device(name)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA's max allocated on a GPU, the process's max RSS on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB -> MiB (process RSS)


def is_oom(e: BaseException) -> bool:
    """True for CUDA's OutOfMemoryError and the RuntimeErrors CPU allocators raise."""
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)
