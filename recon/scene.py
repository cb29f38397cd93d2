"""Scene types: a sparse reconstruction (cameras, posed images, 3D points with tracks).

Mirrors COLMAP's data model so COLMAP models round-trip exactly, in our conventions:
``Image.cam_from_world`` (OpenCV axes), keypoints with pixel (0, 0) at the centre of the
top-left pixel (COLMAP files are shifted by 0.5 in ``recon.io.colmap``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calib import Camera, Rigid3
from calib._check import as_array

__all__ = ["Image", "Point3D", "Reconstruction"]


@dataclass(eq=False)
class Image:
    """One registered (or not yet registered) image."""

    image_id: int
    name: str  # path relative to the image folder, '/'-separated
    camera_id: int
    cam_from_world: Rigid3 | None  # None: not registered
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # [K, 2] pixels
    point3D_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [K], -1 = none

    def __post_init__(self):
        self.keypoints = as_array(self.keypoints, f"image {self.name!r} keypoints", ndim=2, last=(2,))
        ids = np.asarray(self.point3D_ids, dtype=np.int64)
        if ids.shape != (self.keypoints.shape[0],):
            raise ValueError(f"image {self.name!r}: point3D_ids has shape {ids.shape}, expected "
                             f"[{self.keypoints.shape[0]}] (one per keypoint)")
        self.point3D_ids = ids

    @property
    def registered(self) -> bool:
        return self.cam_from_world is not None

    @property
    def world_from_cam(self) -> Rigid3:
        return self.cam_from_world.inverse()

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return self.cam_from_world.dst_origin_in_src()


@dataclass(eq=False)
class Point3D:
    xyz: np.ndarray  # [3] world
    rgb: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.uint8))  # [3] uint8
    error: float = -1.0  # mean reprojection error in pixels; -1 = unknown
    track: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))  # [T, 2] (image_id, point2D_idx)

    def __post_init__(self):
        self.xyz = as_array(self.xyz, "xyz", ndim=1, last=(3,))
        self.rgb = np.asarray(self.rgb, dtype=np.uint8).reshape(3)
        self.track = np.asarray(self.track, dtype=np.int64).reshape(-1, 2)


@dataclass(eq=False)
class Reconstruction:
    """cameras[camera_id], images[image_id], points3D[point3D_id]; ids are COLMAP's (>= 1 by
    convention, any non-negative int accepted)."""

    cameras: dict[int, Camera] = field(default_factory=dict)
    images: dict[int, Image] = field(default_factory=dict)
    points3D: dict[int, Point3D] = field(default_factory=dict)

    # ---- summary ----
    @property
    def registered_images(self) -> list[Image]:
        return [im for im in self.images.values() if im.registered]

    def points_xyz(self) -> np.ndarray:
        """[N, 3] in the order of ``points3D`` iteration."""
        return np.array([p.xyz for p in self.points3D.values()]).reshape(-1, 3)

    def points_rgb(self) -> np.ndarray:
        return np.array([p.rgb for p in self.points3D.values()], dtype=np.uint8).reshape(-1, 3)

    def points_error(self) -> np.ndarray:
        return np.array([p.error for p in self.points3D.values()], dtype=np.float64)

    def track_lengths(self) -> np.ndarray:
        return np.array([len(p.track) for p in self.points3D.values()], dtype=np.int64)

    def image_by_name(self, name: str) -> Image:
        for im in self.images.values():
            if im.name == name:
                return im
        raise KeyError(f"no image named {name!r}")

    def validate(self) -> None:
        """Check referential integrity; raises ValueError naming the first broken reference."""
        for iid, im in self.images.items():
            if im.camera_id not in self.cameras:
                raise ValueError(f"image {iid} ({im.name!r}) refers to missing camera {im.camera_id}")
            if im.keypoints.shape[0] != im.point3D_ids.shape[0]:
                raise ValueError(f"image {iid}: {im.keypoints.shape[0]} keypoints but {im.point3D_ids.shape[0]} point3D ids")
        for pid, p in self.points3D.items():
            for image_id, idx in p.track:
                im = self.images.get(int(image_id))
                if im is None:
                    raise ValueError(f"point3D {pid}: track refers to missing image {image_id}")
                if not 0 <= idx < im.keypoints.shape[0]:
                    raise ValueError(f"point3D {pid}: track refers to keypoint {idx} of image {image_id}, "
                                     f"which has {im.keypoints.shape[0]}")

    def reprojection_errors(self) -> np.ndarray:
        """Per observation reprojection error in pixels, [M] (all tracks concatenated)."""
        errs = []
        for p in self.points3D.values():
            for image_id, idx in p.track:
                im = self.images[int(image_id)]
                cam = self.cameras[im.camera_id]
                uv, valid = cam.project(im.cam_from_world.apply(p.xyz))
                errs.append(np.linalg.norm(uv - im.keypoints[idx]) if valid else np.inf)
        return np.asarray(errs)

    def transformed(self, dst_from_world) -> Reconstruction:
        """A copy in another world frame: ``dst_from_world`` (``calib.Sim3`` or ``Rigid3``) maps
        every point and camera centre; cameras stay rigid (a scale scales translations)."""
        from calib import Sim3

        if isinstance(dst_from_world, Rigid3):
            dst_from_world = Sim3(1.0, dst_from_world.rotation, dst_from_world.translation)
        if not isinstance(dst_from_world, Sim3):
            raise TypeError(f"dst_from_world: expected calib.Sim3 or Rigid3, got {type(dst_from_world).__name__}")
        images = {iid: Image(im.image_id, im.name, im.camera_id,
                             None if im.cam_from_world is None else dst_from_world.transform_pose(im.cam_from_world),
                             im.keypoints.copy(), im.point3D_ids.copy())
                  for iid, im in self.images.items()}
        points = {pid: Point3D(dst_from_world.apply(p.xyz), p.rgb.copy(), p.error, p.track.copy())
                  for pid, p in self.points3D.items()}
        return Reconstruction(dict(self.cameras), images, points)

    def summary(self) -> dict:
        tl = self.track_lengths()
        return {
            "cameras": len(self.cameras),
            "images": len(self.images),
            "images_registered": len(self.registered_images),
            "points3D": len(self.points3D),
            "mean_track_length": float(tl.mean()) if tl.size else 0.0,
            "observations": int(tl.sum()),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (f"Reconstruction({s['cameras']} cameras, {s['images_registered']}/{s['images']} images "
                f"registered, {s['points3D']} points)")
