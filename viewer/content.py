"""What the viewer shows, as plain typed data (no viser): points, cameras, splats, a mesh.

Loaders (``viewer.detect``) and callers build a :class:`SceneContent`; ``viewer.app`` turns it
into viser scene nodes. Builders from our scene types live here so the mapping is testable
without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calib import Camera, Rigid3
from calib._check import as_array
from recon.scene import Reconstruction

__all__ = [
    "CameraView",
    "PointLayer",
    "SceneContent",
    "SplatLayer",
    "content_from_reconstruction",
    "splats_from_gaussians",
]


@dataclass(eq=False)
class PointLayer:
    """A point cloud. Optional per-point attributes drive the colour modes."""

    xyz: np.ndarray  # [N, 3] float32, world
    rgb: np.ndarray | None = None  # [N, 3] uint8
    error: np.ndarray | None = None  # [N] mean reprojection error, pixels (-1 = unknown)
    track_length: np.ndarray | None = None  # [N] observations per point
    class_id: np.ndarray | None = None  # [N] int, -1 = unlabelled
    instance_id: np.ndarray | None = None  # [N] int, -1 = none

    def __post_init__(self):
        self.xyz = as_array(self.xyz, "xyz", ndim=2, last=(3,), dtype=np.float32, finite=False)
        n = self.xyz.shape[0]
        if self.rgb is not None:
            rgb = np.asarray(self.rgb)
            if rgb.dtype.kind == "f":  # [0, 1] floats from some readers
                rgb = np.clip(np.round(rgb * 255), 0, 255)
            self.rgb = rgb.astype(np.uint8).reshape(-1, 3)
            if self.rgb.shape[0] != n:
                raise ValueError(f"rgb: expected [{n}, 3] to match xyz, got {self.rgb.shape}")
        for name, dtype in (("error", np.float32), ("track_length", np.int64),
                            ("class_id", np.int64), ("instance_id", np.int64)):
            v = getattr(self, name)
            if v is not None:
                v = np.asarray(v, dtype=dtype).reshape(-1)
                if v.shape[0] != n:
                    raise ValueError(f"{name}: expected [{n}] to match xyz, got {v.shape}")
                setattr(self, name, v)

    def __len__(self) -> int:
        return self.xyz.shape[0]

    @property
    def has_labels(self) -> bool:
        return self.class_id is not None or self.instance_id is not None


@dataclass(eq=False)
class CameraView:
    """One posed photo to draw as a frustum."""

    name: str
    camera: Camera
    cam_from_world: Rigid3
    image_path: Path | None = None  # the photo, when it exists on disk


@dataclass(eq=False)
class SplatLayer:
    """Gaussian splats in the form viser renders: centres, covariances, colour, opacity."""

    centers: np.ndarray  # [N, 3] float32, world
    covariances: np.ndarray  # [N, 3, 3] float32, world units squared
    rgb: np.ndarray  # [N, 3] float32 in [0, 1] (SH DC band only: view-independent)
    opacity: np.ndarray  # [N] float32 in [0, 1]

    def __len__(self) -> int:
        return self.centers.shape[0]


@dataclass(eq=False)
class SceneContent:
    """Everything one ``recon view`` shows. Any part may be absent."""

    title: str = "recon"
    points: PointLayer | None = None
    cameras: list[CameraView] = field(default_factory=list)
    splats: SplatLayer | None = None
    mesh: object | None = None  # trimesh.Trimesh (kept untyped so this module stays light)
    class_names: dict[int, str] = field(default_factory=dict)  # label id -> name, when known
    source: Path | None = None  # the file or folder it came from
    notes: list[str] = field(default_factory=list)  # facts shown in the Info panel

    def scene_points(self, *, include_cameras: bool = True) -> np.ndarray:
        """All positions that define the scene's extent, [M, 3] (for the grid and camera scale)."""
        parts = []
        if self.points is not None and len(self.points):
            parts.append(self.points.xyz)
        if self.splats is not None and len(self.splats):
            parts.append(self.splats.centers)
        if self.mesh is not None:
            parts.append(np.asarray(self.mesh.vertices, dtype=np.float32))
        if self.cameras and include_cameras:
            parts.append(np.array([c.cam_from_world.dst_origin_in_src() for c in self.cameras],
                                  dtype=np.float32))
        return np.concatenate(parts) if parts else np.zeros((0, 3), np.float32)


def _find_image(image_dir: Path | None, name: str) -> Path | None:
    if image_dir is None:
        return None
    p = Path(image_dir) / name
    return p if p.is_file() else None


def content_from_reconstruction(rec: Reconstruction, *, image_dir: str | Path | None = None,
                                title: str = "reconstruction") -> SceneContent:
    """Points (rgb, reprojection error, track length) and registered cameras of ``rec``;
    ``image_dir``: folder holding the photos by their ``Image.name`` (for thumbnails)."""
    if not isinstance(rec, Reconstruction):
        raise TypeError(f"rec: expected recon.Reconstruction, got {type(rec).__name__}")
    image_dir = Path(image_dir) if image_dir is not None else None
    points = None
    if rec.points3D:
        points = PointLayer(rec.points_xyz(), rec.points_rgb(), rec.points_error(), rec.track_lengths())
    cams = [CameraView(im.name, rec.cameras[im.camera_id], im.cam_from_world, _find_image(image_dir, im.name))
            for im in sorted(rec.registered_images, key=lambda im: im.image_id)]
    s = rec.summary()
    notes = [f"{s['images_registered']}/{s['images']} images registered, {s['cameras']} camera(s)",
             f"{s['points3D']:,} points, mean track length {s['mean_track_length']:.2f}"]
    if image_dir is not None:
        found = sum(c.image_path is not None for c in cams)
        notes.append(f"photos found for {found}/{len(cams)} cameras in {image_dir}")
    return SceneContent(title=title, points=points, cameras=cams, notes=notes)


def splats_from_gaussians(gaussians) -> SplatLayer:
    """A ``recon.io.gaussians.GaussianCloud`` (means, log_scales, quats_wxyz, opacity_logits,
    sh_dc in the 3DGS PLY parameterisation) -> what viser renders."""
    from viewer.convert import rgb_from_sh_dc, sigmoid, splat_covariances

    means = as_array(gaussians.means, "gaussians.means", ndim=2, last=(3,), dtype=np.float32)
    return SplatLayer(
        centers=means,
        covariances=splat_covariances(gaussians.log_scales, gaussians.quats_wxyz),
        rgb=rgb_from_sh_dc(gaussians.sh_dc),
        opacity=sigmoid(np.asarray(gaussians.opacity_logits).reshape(-1)),
    )
