"""The one loader of recon's fused C++ CPU kernels: built on first use with torch's C++ extension
loader (a C++ compiler and ninja; cached in ``$TORCH_EXTENSIONS_DIR`` or
``~/.cache/torch_extensions``), None where they cannot be built or ``RECON_NO_CPP_KERNELS=1``."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def openmp_flags() -> list[str]:
    """``-fopenmp``, for kernels that use ``at::parallel_for``: ATen's parallel_for is a header
    template that runs ``#pragma omp parallel`` only where the extension itself is compiled with
    OpenMP (``_OPENMP``); without the flag every "parallel" loop runs on the calling thread alone.
    The extension then needs ``libgomp.so.1``, which the loader resolves to the one torch already
    loaded (same soname), so ``torch.set_num_threads`` governs these loops too."""
    return ["-fopenmp"]


def _build_name(name: str, source: Path, flags: list[str]) -> str:
    """``name`` + a digest of the source and flags: two checkouts with different kernels (or a
    rebuilt one) never share, rebuild over or wait on each other's build folder and lock."""
    import hashlib

    h = hashlib.sha256(Path(source).read_bytes() + " ".join(flags).encode()).hexdigest()[:10]
    return f"{name}_{h}"


def load_cpu_extension(cache: dict, name: str, source: Path, what: str, *, log=None,
                       warn_fallback: str | None = None, openmp: bool = False):
    """The extension module built from ``source`` as ``name``, memoised in ``cache`` ("mod";
    "error" holds why it is None). ``what`` names it in the build message; ``warn_fallback``,
    when given, is warned with the reason on a failed build (the caller's slower path).
    ``openmp``: compile and link with :func:`openmp_flags` (kernels using ``at::parallel_for``)."""
    if "mod" in cache:
        return cache["mod"]
    mod = None
    if os.environ.get("RECON_NO_CPP_KERNELS", "") not in ("", "0"):
        cache["error"] = "disabled by RECON_NO_CPP_KERNELS"
    else:
        import warnings

        try:
            from torch.utils import cpp_extension

            # the `ninja` pip package puts its binary next to the interpreter: on PATH even when
            # the virtualenv is not activated
            bindir = str(Path(sys.executable).parent)
            if bindir not in os.environ.get("PATH", "").split(os.pathsep):
                os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
            if log:
                log(f"building the {what} (once; cached afterwards)")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                omp = openmp_flags() if openmp else []
                mod = cpp_extension.load(name=_build_name(name, source, omp), sources=[str(source)],
                                         extra_cflags=["-O3"] + omp, extra_ldflags=omp, verbose=False)
        except Exception as e:  # noqa: BLE001 - no compiler, no ninja, a build error: the PyTorch path still works
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else ""
            cache["error"] = f"{type(e).__name__}: {msg}"
            if warn_fallback:
                warnings.warn(f"{what} unavailable ({cache['error']}); {warn_fallback}", stacklevel=3)
            mod = None
    cache["mod"] = mod
    return mod
