"""Converters between ``pycolmap.Reconstruction`` and our :class:`recon.Reconstruction`.

The only place where COLMAP's pixel convention meets ours inside ``recon.sfm``: COLMAP puts the
centre of the top-left pixel at (0.5, 0.5), we put it at (0, 0). The principal point and every
keypoint go through calib's one conversion (``Camera.from_corner_params`` / ``corner_params``,
``centre_from_corner`` / ``corner_from_centre``; docs/conventions.md). Poses are ``cam_from_world`` on both
sides (OpenCV axes), quaternions are
converted from pycolmap's xyzw storage to our wxyz only through ``calib.Rigid3``.

pycolmap is imported inside the functions (``import recon`` stays light).
"""

from __future__ import annotations

import numpy as np

from calib import Camera, Rigid3, centre_from_corner, corner_from_centre
from recon.scene import Image, Point3D, Reconstruction

__all__ = ["camera_from_pycolmap", "camera_to_pycolmap",
           "from_pycolmap", "to_pycolmap"]

def camera_from_pycolmap(cam) -> Camera:
    """pycolmap.Camera -> calib.Camera (principal point from COLMAP's corner convention)."""
    return Camera.from_corner_params(cam.model.name, int(cam.width), int(cam.height), cam.params)


def camera_to_pycolmap(camera: Camera, camera_id: int):
    """calib.Camera -> pycolmap.Camera (principal point to COLMAP's corner convention)."""
    import pycolmap

    return pycolmap.Camera(model=camera.model, width=camera.width, height=camera.height,
                           params=camera.corner_params(), camera_id=int(camera_id))


def _rigid_from_pycolmap(rigid) -> Rigid3:
    return Rigid3(np.array(rigid.rotation.matrix(), dtype=np.float64),
                  np.array(rigid.translation, dtype=np.float64))


def _rigid_to_pycolmap(rigid: Rigid3):
    import pycolmap

    return pycolmap.Rigid3d(rigid.matrix3x4())


def from_pycolmap(prec) -> Reconstruction:
    """pycolmap.Reconstruction -> recon.Reconstruction (our pixel convention)."""
    cameras = {int(cid): camera_from_pycolmap(cam) for cid, cam in prec.cameras.items()}
    images = {}
    for iid, im in prec.images.items():
        pts = im.points2D
        n = len(pts)
        kp = np.empty((n, 2))
        ids = np.full(n, -1, dtype=np.int64)
        for k, p in enumerate(pts):
            kp[k] = p.xy
            if p.has_point3D():
                ids[k] = p.point3D_id
        kp = centre_from_corner(kp)
        pose = _rigid_from_pycolmap(im.cam_from_world()) if im.has_pose else None
        images[int(iid)] = Image(int(iid), im.name, int(im.camera_id), pose, kp, ids)
    points = {}
    for pid, p in prec.points3D.items():
        track = np.array([(e.image_id, e.point2D_idx) for e in p.track.elements], dtype=np.int64)
        points[int(pid)] = Point3D(np.array(p.xyz), np.array(p.color, dtype=np.uint8),
                                   float(p.error), track.reshape(-1, 2))
    return Reconstruction(cameras, images, points)


def to_pycolmap(rec: Reconstruction):
    """recon.Reconstruction -> pycolmap.Reconstruction (COLMAP pixel convention). One trivial
    rig per camera and one trivial frame per image (frame_id = image_id); point ids are kept."""
    import pycolmap

    prec = pycolmap.Reconstruction()
    for cid, cam in rec.cameras.items():
        prec.add_camera_with_trivial_rig(camera_to_pycolmap(cam, cid))
    for iid, im in rec.images.items():
        pim = pycolmap.Image(name=im.name, keypoints=corner_from_centre(im.keypoints),
                             camera_id=int(im.camera_id), image_id=int(iid))
        if im.registered:
            prec.add_image_with_trivial_frame(pim, _rigid_to_pycolmap(im.cam_from_world))
        else:
            prec.add_image_with_trivial_frame(pim)
    for pid, p in rec.points3D.items():
        track = pycolmap.Track()
        for image_id, idx in p.track:
            track.add_element(int(image_id), int(idx))
        pp = pycolmap.Point3D()
        pp.xyz = np.asarray(p.xyz, dtype=np.float64)
        pp.color = np.asarray(p.rgb, dtype=np.uint8)
        pp.error = float(p.error)
        pp.track = track
        prec.add_point3D_with_id(int(pid), pp)
    return prec
