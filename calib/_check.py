"""Input checks for public boundaries: errors name the argument, the expected and the found."""

from __future__ import annotations

import numpy as np


def as_array(x, name: str, *, last: tuple[int, ...] | None = None, ndim: int | None = None,
             dtype=np.float64, finite: bool = True) -> np.ndarray:
    """Convert to an array and check its trailing shape / rank / finiteness.

    ``last=(3,)`` accepts [..., 3]; ``ndim=2`` demands exactly two axes.
    """
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected a numeric array, got {type(x).__name__} ({e})") from None
    if ndim is not None and arr.ndim != ndim:
        want = f"{ndim} axes" + (f" [..., {', '.join(map(str, last))}]" if last else "")
        raise ValueError(f"{name}: expected {want}, got shape {arr.shape}")
    if last is not None and (arr.ndim < len(last) or arr.shape[arr.ndim - len(last):] != tuple(last)):
        raise ValueError(f"{name}: expected shape [..., {', '.join(map(str, last))}], got {arr.shape}")
    if finite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name}: contains {bad} NaN/Inf value(s)")
    return arr


def check_positive_int(value, name: str) -> int:
    """A positive integer; integral floats (640.0, e.g. from JSON) are accepted, bools are not."""
    ok = not isinstance(value, bool) and (
        isinstance(value, (int, np.integer))
        or (isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer()))
    if not ok or value <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)
