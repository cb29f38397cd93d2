"""Calibration pictures: residual vectors, coverage heatmap, uncertainty map, per-view errors
(matplotlib, Agg backend: works headless). The file formats (OpenCV YAML, COLMAP lines, the JSON
report) live in :mod:`calib.files`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calib.calibrate import CalibrationResult, CoverageMap, Rejection, UncertaintyMap

__all__ = ["PICTURES", "PictureProcess", "save_pictures"]


PICTURES = ("residuals", "coverage", "uncertainty", "view_errors")
_PNG = {"compress_level": 1}  # zlib level 1: ~25 % less encoding time, files ~10 % larger


def save_pictures(result: CalibrationResult, out_dir, *, uncertainty: UncertaintyMap | None = None,
                  coverage: CoverageMap | None = None, rejected: list[Rejection] = (), prefix: str = "",
                  parallel: bool = True) -> list[Path]:
    """residuals.png, coverage.png, uncertainty.png, view_errors.png in ``out_dir`` (coverage and
    uncertainty only when given).

    ``parallel``: draw them in forked processes (:class:`PictureProcess`) when this process has a
    single thread (forking a multi-threaded process can deadlock the child); otherwise, or where
    fork is not available, draw them here one after the other."""
    if parallel:
        pp = PictureProcess()
        if pp.active:
            pp.submit(result, out_dir, uncertainty=uncertainty, coverage=coverage, rejected=rejected,
                      prefix=prefix)
            return pp.close()
    return _save_here(result, Path(out_dir), uncertainty, coverage, list(rejected), prefix)


def _which(uncertainty, coverage) -> list[str]:
    return [w for w in PICTURES if not ((w == "coverage" and coverage is None)
                                        or (w == "uncertainty" and uncertainty is None))]


def _save_here(result, out_dir: Path, uncertainty, coverage, rejected, prefix, which=None, done_fd=None) -> list[Path]:
    import os

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for w in _which(uncertainty, coverage) if which is None else which:
        paths.append(_draw_picture(w, result, out_dir, uncertainty, coverage, rejected, prefix))
        if done_fd is not None:  # one short write (< PIPE_BUF) is atomic, even from two processes
            os.write(done_fd, (str(paths[-1]) + "\n").encode())
    return paths


def _import_matplotlib() -> None:
    from matplotlib import font_manager
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401

    font_manager.get_font(font_manager.findfont("DejaVu Sans"))  # load the font file once


def _warm_up_matplotlib() -> None:
    """Draw a throw-away figure with the artists the pictures use (first-use costs: glyph
    caches, colormaps, the Agg renderer, the PNG writer) while the caller is still busy."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1.5), dpi=40)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.zeros((2, 2)), cmap="magma")
    ax.quiver([0.0], [0.0], [1.0], [1.0], [0.5], cmap="viridis")
    ax.bar([0], [1.0])
    ax.set_title("warm-up 0.123 px")
    fig.colorbar(im, ax=ax)
    fig.savefig(io.BytesIO(), format="png")


class PictureProcess:
    """Draws calibration pictures in a child process forked NOW, which imports matplotlib
    (~0.4 s of CPU) while the caller goes on (detection, calibration) and then waits for work.

    ``submit`` hands it one camera's pictures (any number of times); ``close`` waits until
    every picture is written and returns their paths; ``cancel`` (or leaving a ``with`` block by
    an exception) stops it. The child splits each job's pictures with a grandchild forked after
    the import (no second import). It forks only where that is safe: a POSIX system and a
    single-threaded caller (a thread holding a lock, e.g. an import lock, at fork time would
    deadlock the child). Otherwise ``active`` is False and ``close`` draws the pictures in this
    process, as it does for any picture the child did not report written (if it failed)."""

    def __init__(self):
        import os
        import threading

        self.active = False
        self._jobs: list[tuple] = []
        self._pid = None
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return
        import gc

        r_job, w_job = os.pipe()
        r_done, w_done = os.pipe()
        # Objects that exist now are left out of the child's garbage collections, which would
        # otherwise touch (and so copy) every page of the inherited heap.
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:
            gc.unfreeze()
            for fd in (r_job, w_job, r_done, w_done):
                os.close(fd)
            return
        if pid == 0:  # child: never returns
            code = 1
            try:
                # A short-lived process that allocates many small objects (matplotlib's import
                # and artists): the cyclic collector only costs time here (~20 % measured).
                gc.disable()
                os.close(w_job)
                os.close(r_done)
                _picture_child(r_job, w_done)
                code = 0
            finally:
                os._exit(code)
        gc.unfreeze()
        os.close(r_job)
        os.close(w_done)
        self._pid, self._w, self._r = pid, w_job, r_done
        self.active = True

    def submit(self, result: CalibrationResult, out_dir, *, uncertainty: UncertaintyMap | None = None,
               coverage: CoverageMap | None = None, rejected: list[Rejection] = (), prefix: str = "") -> None:
        import pickle

        job = (result, Path(out_dir), uncertainty, coverage, list(rejected), prefix)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        self._jobs.append(job)
        if not self.active:
            return
        data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            _write_all(self._w, len(data).to_bytes(8, "little") + data)
        except OSError:  # the child died: close() draws here
            pass

    def close(self) -> list[Path]:
        """Wait for the pictures; returns their paths (drawing here what the child did not)."""
        import os

        done = set()
        if self.active:
            self.active = False
            os.close(self._w)
            with os.fdopen(self._r, "rb") as f:
                # one line per written picture; EOF once the child and grandchild have exited
                done = set(f.read().decode().splitlines())
            os.waitpid(self._pid, 0)
        paths = []
        for job in self._jobs:
            result, out_dir, unc, cov, rejected, prefix = job
            which = _which(unc, cov)
            want = [out_dir / f"{prefix}{w}.png" for w in which]
            missing = [w for w, p in zip(which, want) if str(p) not in done]
            if missing:
                _save_here(result, out_dir, unc, cov, rejected, prefix, missing)
            paths += want
        self._jobs = []
        return paths

    def cancel(self) -> None:
        """Stop the child without drawing anything (on an error in the caller)."""
        import os
        import signal

        self._jobs = []
        if self.active:
            self.active = False
            os.close(self._w)
            os.close(self._r)
            try:
                os.kill(self._pid, signal.SIGKILL)  # its grandchild, if any, ends at EOF/exit
            except ProcessLookupError:
                pass
            os.waitpid(self._pid, 0)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.cancel()
        return False


def _write_all(fd: int, data: bytes) -> None:
    import os

    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _picture_child(r_job: int, w_done: int) -> None:
    import os
    import pickle

    try:
        _import_matplotlib()
        _warm_up_matplotlib()
    except Exception:  # noqa: BLE001 - whatever it is, the parent meets it again and reports it
        return  # nothing reported written: close() draws everything in the parent
    with os.fdopen(r_job, "rb") as f:
        while True:
            head = f.read(8)
            if len(head) < 8:
                break
            result, out_dir, unc, cov, rejected, prefix = pickle.loads(f.read(int.from_bytes(head, "little")))
            which = _which(unc, cov)
            # Two processes: the grandchild (forked after the import: no second import) draws
            # every other picture.
            mine, theirs = which[0::2], which[1::2]
            pid = os.fork() if (os.cpu_count() or 1) > 1 and theirs else -1
            if pid == 0:
                code = 1
                try:
                    _save_here(result, out_dir, unc, cov, rejected, prefix, theirs, w_done)
                    code = 0
                finally:
                    os._exit(code)
            if pid < 0:
                mine = which
            _save_here(result, out_dir, unc, cov, rejected, prefix, mine, w_done)
            if pid > 0:
                os.waitpid(pid, 0)
    os.close(w_done)


def _draw_picture(which: str, result: CalibrationResult, out_dir: Path, uncertainty, coverage, rejected,
                  prefix: str) -> Path:
    # The object-oriented API with the Agg canvas: headless, no pyplot state, no GUI backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    class plt:
        @staticmethod
        def subplots(figsize, dpi):
            fig = Figure(figsize=figsize, dpi=dpi)
            FigureCanvasAgg(fig)
            return fig, fig.add_subplot(1, 1, 1)

        @staticmethod
        def close(fig):
            pass  # no pyplot registry to leave; clearing the artists would only cost time (~20 ms)

    cam = result.camera
    W, H = cam.size
    pts = np.concatenate([v.corners for v in result.views])
    res = np.concatenate([v.residuals for v in result.views])
    err = np.linalg.norm(res, axis=1)

    def frame(ax, title):
        ax.set_xlim(-0.5, W - 0.5)
        ax.set_ylim(H - 0.5, -0.5)
        ax.locator_params(nbins=4)  # ticks are the costliest artists: ~15 % less drawing time
        ax.set_aspect("equal")
        ax.set_xlabel("u (px)")
        ax.set_ylabel("v (px)")
        ax.set_title(title, fontsize=10)

    # 1. residual vectors
    if which == "residuals":
        fig, ax = plt.subplots(figsize=(8, 6.2), dpi=90)
        fig.subplots_adjust(left=0.09, right=0.98, top=0.94, bottom=0.08)
        scale = 0.04 * max(W, H) / max(np.percentile(err, 95), 1e-9)
        q = ax.quiver(pts[:, 0], pts[:, 1], res[:, 0] * scale, res[:, 1] * scale, err, angles="xy", scale_units="xy",
                      scale=1, cmap="viridis", width=0.002)
        fig.colorbar(q, ax=ax, label="|residual| (px)", shrink=0.8)
        frame(ax, f"Reprojection residuals ({cam.model}, RMS {result.rms_px:.3f} px), arrows x{scale:.0f}")
        p = out_dir / f"{prefix}residuals.png"
        fig.savefig(p, pil_kwargs=_PNG)
        plt.close(fig)
        return p

    # 2. coverage heatmap
    if which == "coverage":
        fig, ax = plt.subplots(figsize=(8, 6.8), dpi=90)
        fig.subplots_adjust(left=0.09, right=0.98, top=0.94, bottom=0.2)
        im = ax.imshow(coverage.counts, extent=(-0.5, W - 0.5, H - 0.5, -0.5), cmap="magma", interpolation="nearest")
        ax.plot(pts[:, 0], pts[:, 1], ".", color="cyan", ms=1.5, alpha=0.5)
        fig.colorbar(im, ax=ax, label="corners per cell", shrink=0.8)
        frame(ax, f"Corner coverage: {len(result.views)} views, {len(pts)} corners, "
                  f"{100 * coverage.covered_fraction:.0f}% of cells covered")
        if coverage.advice:
            import textwrap

            txt = "\n".join(textwrap.fill("- " + a, 110) for a in coverage.advice)
            fig.text(0.02, 0.01, txt, fontsize=7, va="bottom", ha="left")
        p = out_dir / f"{prefix}coverage.png"
        fig.savefig(p, pil_kwargs=_PNG)
        plt.close(fig)
        return p

    # 3. uncertainty map
    if which == "uncertainty":
        fig, ax = plt.subplots(figsize=(8, 6.2), dpi=90)
        fig.subplots_adjust(left=0.09, right=0.98, top=0.94, bottom=0.08)
        s = uncertainty.std_px
        im = ax.imshow(s, extent=(uncertainty.u[0], uncertainty.u[-1], uncertainty.v[-1], uncertainty.v[0]),
                       cmap="viridis", interpolation="bilinear")
        finite = s[np.isfinite(s)]
        if finite.size and finite.max() > finite.min():
            levels = np.unique(np.round(np.quantile(finite, [0.25, 0.5, 0.75, 0.95]), 4))
            if len(levels) > 1:
                cs = ax.contour(uncertainty.u, uncertainty.v, s, levels=levels, colors="white", linewidths=0.7)
                ax.clabel(cs, fmt="%.3g", fontsize=7)
        ax.plot(pts[:, 0], pts[:, 1], ".", color="red", ms=1, alpha=0.4)
        fig.colorbar(im, ax=ax, label="projection 1-sigma (px)", shrink=0.8)
        frame(ax, f"Projection uncertainty at {uncertainty.distance:.3g} board units "
                  f"(centre {uncertainty.at_center():.3f} px, max {np.nanmax(s):.3f} px)")
        p = out_dir / f"{prefix}uncertainty.png"
        fig.savefig(p, pil_kwargs=_PNG)
        plt.close(fig)
        return p

    # 4. per-view errors
    if which == "view_errors":
        names = [v.name for v in result.views]
        rms = [v.rms_px for v in result.views]
        rej = [r for r in rejected if r.corner_id is None]
        fig, ax = plt.subplots(figsize=(max(6, 0.32 * (len(names) + len(rej)) + 2), 4.4), dpi=90)
        fig.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.28)
        x = np.arange(len(names))
        ax.bar(x, rms, color="tab:blue", label="used")
        if rej:
            xr = np.arange(len(names), len(names) + len(rej))
            vals = [r.error_px if r.error_px is not None else 0.0 for r in rej]
            ax.bar(xr, vals, color="tab:red", label="rejected (height: RMS when known)")
            names = names + [r.name for r in rej]
        ax.axhline(result.rms_px, color="k", ls="--", lw=0.8, label=f"overall RMS {result.rms_px:.3f} px")
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels([Path(n).name for n in names], rotation=70, fontsize=7, ha="right")
        ax.set_ylabel("RMS reprojection error (px)")
        ax.set_title("Per-view reprojection error", fontsize=10)
        ax.legend(fontsize=8)
        p = out_dir / f"{prefix}view_errors.png"
        fig.savefig(p, pil_kwargs=_PNG)
        plt.close(fig)
        return p
    raise ValueError(f"which: expected one of {PICTURES}, got {which!r}")
