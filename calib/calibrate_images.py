"""From image files to board observations: reading, size checks, automatic board size,
detection (threaded: OpenCV releases the GIL), and a reason for every image not used."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from calib.boards import (
    BoardSpec,
    Detection,
    DetectionFailure,
    detect_board,
    detect_chessboard_size,
)
from calib.calibrate import CalibrationError, Observation, Rejection

__all__ = ["IMAGE_EXTENSIONS", "DetectionRun", "detect_images", "expand_images", "read_gray", "refine_run"]

# The image file extensions every recon reader lists (compared lower-case). calib is the bottom
# layer, so the one tuple lives here; recon.io.images re-exports it.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm")
"""Image suffixes a folder is listed for (compared lower-cased)."""


@dataclass
class DetectionRun:
    board: BoardSpec  # auto size resolved
    image_size: tuple[int, int] | None  # (width, height) of the used images
    observations: list[Observation]  # in input order, one per image with a board
    failures: list[Rejection]  # every image not used, with the reason
    detections: dict[str, Detection] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.observations]


def expand_images(items) -> list[str]:
    """Files, folders (their images, sorted) and globs (sorted) -> list of paths, in order.
    FileNotFoundError names a glob that matches nothing."""
    import glob

    out = []
    for it in items or []:
        it = str(it)
        if os.path.isdir(it):
            out += sorted(os.path.join(it, f) for f in os.listdir(it) if f.lower().endswith(IMAGE_EXTENSIONS))
        elif any(ch in it for ch in "*?["):
            hits = sorted(glob.glob(it))
            if not hits:
                raise FileNotFoundError(f"{it}: no file matches this pattern")
            out += hits
        else:
            out.append(it)
    return out


def read_gray(path) -> np.ndarray:
    """[H, W] uint8 grey image; raises OSError naming the file if it cannot be read."""
    import cv2

    p = str(path)
    img = cv2.imread(p, cv2.IMREAD_GRAYSCALE) if os.path.isfile(p) else None
    if img is None:
        raise OSError(f"{p}: cannot read image (missing, not an image, or unsupported format)")
    return img


def _pool_map(fn, items, workers, progress, desc):
    """``[fn(item)]`` over ``workers`` threads. With two or more workers OpenCV runs
    single-threaded inside each call: the images already keep the cores busy, and OpenCV's own
    threads in the sector-based detector mostly add overhead (measured on 19 640x480 photos,
    2 cores: 0.39 s wall / 0.77 s CPU instead of 0.53 s / 1.00 s); results are the same."""
    if workers > 1 and len(items) > 1:
        import cv2

        n = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            return _pool_map_threads(fn, items, workers, progress, desc)
        finally:
            cv2.setNumThreads(n)
    return _pool_map_threads(fn, items, workers, progress, desc)


def _pool_map_threads(fn, items, workers, progress, desc):
    from concurrent.futures import ThreadPoolExecutor

    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(items), desc=desc, unit="img", leave=False)
        except ImportError:  # pragma: no cover - tqdm is a dependency
            bar = None
    out = [None] * len(items)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        futs = {ex.submit(fn, it): k for k, it in enumerate(items)}
        from concurrent.futures import as_completed

        for f in as_completed(futs):
            out[futs[f]] = f.result()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return out


def detect_images(paths, board: BoardSpec, *, progress: bool = False, workers: int | None = None,
                  min_corners: int = 6, refine: bool = True) -> DetectionRun:
    """Detect ``board`` in every image of ``paths`` (``refine``: see :func:`calib.boards.detect_board`).
    Images that cannot be read, whose size
    differs from the majority, or that show no board are listed in ``failures`` with the reason.
    Raises :class:`CalibrationError` (listing every file and why) when nothing is detected."""
    paths = [str(p) for p in paths]
    if not paths:
        raise CalibrationError("no images given")
    workers = workers or min(4, os.cpu_count() or 1)

    def load(p):
        try:
            return read_gray(p), None
        except OSError as e:
            return None, str(e).split(": ", 1)[-1]

    # Read + (if needed) size detection + detection happen per image in worker threads.
    failures: list[Rejection] = []
    if board.kind == "chessboard" and board.auto_size:
        def size_of(p):
            img, _ = load(p)
            return None if img is None else detect_chessboard_size(img)

        probe = paths if len(paths) <= 8 else paths[:: max(1, len(paths) // 8)][:8]
        sizes = [s for s in _pool_map(size_of, probe, workers, progress, "board size") if s]
        if not sizes and len(probe) < len(paths):
            sizes = [s for s in _pool_map(size_of, paths, workers, progress, "board size") if s]
        if not sizes:
            raise CalibrationError("no chessboard found in any image (automatic corner count); checked:\n"
                                   + "\n".join(f"  {p}" for p in paths))
        counts = Counter(sizes)
        # The most frequent size; ties go to the larger board (partial views find smaller grids).
        (cols, rows), _ = max(counts.items(), key=lambda kv: (kv[1], kv[0][0] * kv[0][1]))
        board = board.with_size(cols, rows)

    def work(p):
        img, err = load(p)
        if img is None:
            return None, err, None
        det = detect_board(img, board, min_corners=min_corners, refine=refine)
        return (img.shape[1], img.shape[0]), None, det

    results = _pool_map(work, paths, workers, progress, "detecting")
    size_counts = Counter(r[0] for r in results if r[0] is not None)
    if not size_counts:
        raise CalibrationError("no image could be read:\n" + "\n".join(f"  {p}: {r[1]}" for p, r in zip(paths, results)))
    # The majority size among images WITH a board (else among all readable images).
    with_board = Counter(r[0] for r in results if isinstance(r[2], Detection))
    size = (with_board or size_counts).most_common(1)[0][0]
    observations, detections, hints = [], {}, Counter()
    resolved = board
    for p, (sz, err, det) in zip(paths, results):
        if err is not None:
            failures.append(Rejection(p, f"unreadable: {err}"))
            continue
        if sz != size:
            failures.append(Rejection(p, f"image size {sz[0]}x{sz[1]} differs from {size[0]}x{size[1]} "
                                         "(the majority): a different camera or a resized image?"))
            continue
        if isinstance(det, DetectionFailure):
            reason = det.reason + (f" ({det.hint})" if det.hint else "")
            failures.append(Rejection(p, reason))
            if det.found_size:
                hints[det.found_size] += 1
            continue
        observations.append(Observation.from_detection(p, det))
        detections[p] = det
        resolved = det.board
    if not observations:
        msg = f"board {board} not found in any of the {len(paths)} image(s):\n" + "\n".join(
            f"  {r.name}: {r.reason}" for r in failures)
        if hints:
            (c, r), n = hints.most_common(1)[0]
            msg += (f"\nhint: a {c}x{r} inner-corner chessboard is visible in {n} image(s); "
                    f"try --board chessboard:{c}x{r}" + (f":{board.square:g}" if board.square != 1 else "")
                    + " (COLSxROWS counts INNER corners: a chess board with 8x8 squares has 7x7)")
        raise CalibrationError(msg)
    return DetectionRun(resolved, size, observations, failures, detections)


def refine_run(run: DetectionRun) -> DetectionRun:
    """The chessboard detections of ``run`` (made with ``refine=False``) re-refined with
    ``cornerSubPix`` (:func:`calib.boards.refine_chessboard_corners`): the same corners as
    ``detect_images(..., refine=True)`` would give, without detecting again. Only the
    sector-based detector's corners are refined: the classic detector's fallback corners are
    refined already (refining them again moves some by pixels)."""
    from calib.boards import refine_chessboard_corners

    if run.board.kind != "chessboard":
        raise ValueError(f"run: corner re-refinement is for chessboards, got a {run.board.kind} board")
    full = run.board.cols * run.board.rows
    obs = []
    for o in run.observations:
        det = run.detections.get(o.name)
        sb = det is not None and det.method == "findChessboardCornersSB"
        if sb and len(o.ids) == full and np.array_equal(o.ids, np.arange(full)):
            c = refine_chessboard_corners(read_gray(o.name), o.corners, run.board.cols, run.board.rows)
            o = Observation(o.name, c, o.object_points, o.ids)
        obs.append(o)
    return DetectionRun(run.board, run.image_size, obs, list(run.failures), dict(run.detections))
