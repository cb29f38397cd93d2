"""The one loader of recon's fused C++ CPU kernels: built on first use with torch's C++ extension
loader (a C++ compiler and ninja; cached in ``$TORCH_EXTENSIONS_DIR`` or
``~/.cache/torch_extensions``), None where they cannot be built or ``RECON_NO_CPP_KERNELS=1``."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def simd_cflags() -> list[str]:
    """Compiler flags for kernels written to auto-vectorise: ``-fopenmp-simd`` (honours
    ``#pragma omp simd``, no OpenMP runtime) and, where the CPU running this build has them
    (``torch.backends.cpu.get_cpu_capability()``), ``-mavx2 -mfma``. Not ``-march=native``: the
    flags are part of the extension's name (:func:`load_cpu_extension`), so a cache shared by
    machines of different CPUs keeps one build per flag set and never loads an AVX2 build on a
    CPU without AVX2."""
    flags = ["-fopenmp-simd"]
    try:
        import torch

        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - an old torch without the query: the portable flags
        cap = "DEFAULT"
    if cap in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


def load_cpu_extension(cache: dict, name: str, source: Path, what: str, *, log=None,
                       warn_fallback: str | None = None, simd: bool = False):
    """The extension module built from ``source`` as ``name``, memoised in ``cache`` ("mod";
    "error" holds why it is None). ``what`` names it in the build message; ``warn_fallback``,
    when given, is warned with the reason on a failed build (the caller's slower path).
    ``simd``: build with :func:`simd_cflags`, named ``name`` + ``_avx2`` where those hold AVX2."""
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
                cflags = ["-O3"] + (simd_cflags() if simd else [])
                if "-mavx2" in cflags:
                    name += "_avx2"
                mod = cpp_extension.load(name=name, sources=[str(source)], extra_cflags=cflags, verbose=False)
        except Exception as e:  # noqa: BLE001 - no compiler, no ninja, a build error: the PyTorch path still works
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else ""
            cache["error"] = f"{type(e).__name__}: {msg}"
            if warn_fallback:
                warnings.warn(f"{what} unavailable ({cache['error']}); {warn_fallback}", stacklevel=3)
            mod = None
    cache["mod"] = mod
    return mod
