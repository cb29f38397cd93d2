"""Frames from a trained output (`recon render` as a library function): the run's test or
training cameras, an orbit around what they look at, or a recorded camera path, rendered to
``OUT/frame_0000.png ...`` and optionally a video. :func:`render_run_frames` dispatches on
what :func:`recon.io.detect` says the run is (splat or NeRF output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RenderFramesOptions", "RenderFramesResult", "render_run_frames"]

CAMERAS = ("test", "train", "orbit")


@dataclass(frozen=True)
class RenderFramesOptions:
    """Options of :func:`render_run_frames` (the flags of `recon render`).

    cameras:          "test" | "train" | "orbit" (ignored with camera_path)
    camera_path:      a recon.camera_path JSON recorded in `recon view` (None: use ``cameras``)
    frames:           orbit frames (>= 1)
    data:             dataset folder (None: the one recorded in the run's report.json)
    resolution_scale: image scale (None: the training one)
    sh_degree:        splat SH bands to use, 0..3 (None: all in the PLY)
    background:       RGB in [0, 1] (None: the training background)
    device:           "auto" | "cpu" | "cuda"
    video:            also write the frames as this video file (OpenCV mp4v)
    fps:              video frame rate
    progress:         progress bar on stderr
    """

    cameras: str = "orbit"
    camera_path: str | Path | None = None
    frames: int = 60
    data: str | Path | None = None
    resolution_scale: float | None = None
    sh_degree: int | None = None
    background: tuple[float, float, float] | None = None
    device: str = "auto"
    video: str | Path | None = None
    fps: int = 30
    progress: bool = True

    def validate(self) -> None:
        if self.cameras not in CAMERAS:
            raise ValueError(f"--cameras: expected one of {', '.join(CAMERAS)}, got {self.cameras!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"--device: expected auto, cpu or cuda, got {self.device!r}")
        if self.background is not None and len(self.background) != 3:
            raise ValueError(f"--background: expected R G B, got {list(self.background)}")


@dataclass
class RenderFramesResult:
    """The frames written (PNG paths, in order), the video (or None), the run's method."""

    frames: list[Path]
    output: Path
    method: str  # "splat" | "nerf"
    video: Path | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"method": self.method, "output": str(self.output), "frames": len(self.frames),
                "video": None if self.video is None else str(self.video)}


def render_run_frames(run_dir, output, options: RenderFramesOptions | None = None) -> RenderFramesResult:
    """Render frames of the trained output ``run_dir`` into the folder ``output``.

    Raises FileNotFoundError when ``run_dir`` holds no trained model, ReconError when its
    dataset is unknown (pass ``data``), ValueError naming the option for bad options.
    """
    from recon.errors import FormatError
    from recon.io.detect import Kind, detect

    opts = options or RenderFramesOptions()
    opts.validate()
    try:
        art = detect(Path(run_dir))
    except (FormatError, FileNotFoundError):
        art = None
    if art is not None and art.kind is Kind.NERF_OUTPUT:
        from render.nerf.render_frames import render_nerf_frames

        method, (frames, video) = "nerf", render_nerf_frames(run_dir, output, opts)
    else:
        from render.splat.render_frames import render_splat_frames

        method, (frames, video) = "splat", render_splat_frames(run_dir, output, opts)
    return RenderFramesResult(frames, Path(output), method, video)
