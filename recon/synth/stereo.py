"""Stereo pairs with ground truth: unrectified (any camera models, any relative pose) and
rectified (rendered directly with ideal rectified pinhole cameras), with exact disparity.

Rectification (Fusiello et al. 2000, "A compact algorithm for rectification of stereo pairs"):
both rectified cameras keep their centres and share one rotation whose x axis is the baseline
and whose z axis is the mean optical axis made orthogonal to it. Then
``rectR_from_rectL = (I, [-B, 0, 0])`` and a point at depth Z (rectified left frame) has
disparity ``d = u_left - u_right = fx * B / Z`` on the same row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib import Camera, Rigid3
from recon.synth.dataset import DatasetOptions, SynthDataset, _pose_json, write_dataset
from recon.synth.render import RenderedView, RenderOptions, render_view
from recon.synth.scene import Scene
from recon.synth.trajectory import StereoRig

__all__ = [
    "Rectification",
    "StereoPair",
    "disparity_from_depth",
    "rectify",
    "stereo_pair",
    "write_stereo_dataset",
]


@dataclass(frozen=True)
class Rectification:
    """rect_from_left / rect_from_right: rotations [3, 3] (rectified frame from each camera
    frame); camera: the ideal PINHOLE camera of both rectified views; baseline: metres."""

    rect_from_left: np.ndarray
    rect_from_right: np.ndarray
    camera: Camera
    baseline: float

    def rects_from_world(self, cam_left_from_world: Rigid3, rig: StereoRig) -> tuple[Rigid3, Rigid3]:
        """(rect_left_from_world, rect_right_from_world)."""
        left = Rigid3(self.rect_from_left, np.zeros(3)) @ cam_left_from_world
        right = Rigid3(self.rect_from_right, np.zeros(3)) @ rig.right_from_left @ cam_left_from_world
        return left, right


def rectify(rig: StereoRig, *, camera: Camera | None = None) -> Rectification:
    """Rectifying rotations of ``rig`` and the rectified camera (default: PINHOLE with the left
    camera's size and mean focal length, principal point at the image centre)."""
    if not isinstance(rig, StereoRig):
        raise TypeError(f"rig: expected StereoRig, got {type(rig).__name__}")
    R_rl = rig.right_from_left.rotation
    c_r = rig.right_from_left.dst_origin_in_src()  # right centre in the left frame
    B = float(np.linalg.norm(c_r))
    if B <= 0:
        raise ValueError("rig: the two camera centres coincide (baseline 0)")
    x = c_r / B
    z_mean = np.array([0.0, 0.0, 1.0]) + R_rl.T[:, 2]  # left and right optical axes, left frame
    z = z_mean - x * (z_mean @ x)
    z /= np.linalg.norm(z)
    y = np.cross(z, x)
    R_rect_left = np.stack([x, y, z])
    R_rect_right = R_rect_left @ R_rl.T
    if camera is None:
        L = rig.left
        f = float(np.mean(L.focal))
        camera = Camera("PINHOLE", L.width, L.height, [f, f, (L.width - 1) / 2, (L.height - 1) / 2])
    return Rectification(R_rect_left, R_rect_right, camera, B)


def disparity_from_depth(depth: np.ndarray, fx: float, baseline: float) -> np.ndarray:
    """Disparity (pixels, float32) = fx * B / Z for a rectified pair; 0 where depth is 0."""
    d = np.asarray(depth, dtype=np.float64)
    with np.errstate(divide="ignore"):
        disp = np.where(d > 0, fx * baseline / np.where(d > 0, d, 1.0), 0.0)
    return disp.astype(np.float32)


@dataclass
class StereoPair:
    """Renders of one stereo pair. left / right: unrectified views through the rig's cameras;
    rect_left / rect_right: views of the rectified cameras; disparity_left / disparity_right:
    float32 [H, W] ground-truth disparity of the rectified views (u_left - u_right, pixels, 0 =
    invalid)."""

    left: RenderedView
    right: RenderedView
    rect_left: RenderedView
    rect_right: RenderedView
    disparity_left: np.ndarray
    disparity_right: np.ndarray
    cam_left_from_world: Rigid3
    cam_right_from_world: Rigid3
    rect_left_from_world: Rigid3
    rect_right_from_world: Rigid3
    rectification: Rectification


def stereo_pair(scene: Scene, rig: StereoRig, cam_left_from_world: Rigid3,
                options: RenderOptions | None = None) -> StereoPair:
    """Render one unrectified and one rectified pair with ground-truth disparity."""
    rect = rectify(rig)
    left_T, right_T = rig.cams_from_world(cam_left_from_world)
    rl_T, rr_T = rect.rects_from_world(cam_left_from_world, rig)
    left = render_view(scene, rig.left, left_T, options)
    right = render_view(scene, rig.right, right_T, options)
    rl = render_view(scene, rect.camera, rl_T, options)
    rr = render_view(scene, rect.camera, rr_T, options)
    fx = float(rect.camera.focal[0])
    return StereoPair(left, right, rl, rr, disparity_from_depth(rl.depth, fx, rect.baseline),
                      disparity_from_depth(rr.depth, fx, rect.baseline), left_T, right_T, rl_T, rr_T, rect)


def write_stereo_dataset(out, scene: Scene, rig: StereoRig, cam_left_from_world: list[Rigid3], *,
                         options: DatasetOptions | None = None) -> SynthDataset:
    """Write ``len(cam_left_from_world)`` stereo pairs:

    OUT/ is a dataset (see :func:`write_dataset`) with views ``left/NNNN.png`` and
    ``right/NNNN.png`` through the rig's (possibly distorted) cameras; OUT/rectified/ is a second
    dataset of the rectified pinhole views plus ``disparity/{left,right}/NNNN.npy`` (float32,
    pixels, 0 = invalid). Both gt.json files have a "stereo" section (baseline, pairs,
    rectifying rotations).
    """
    from pathlib import Path

    if not isinstance(rig, StereoRig):
        raise TypeError(f"rig: expected StereoRig, got {type(rig).__name__}")
    poses_l = list(cam_left_from_world)
    if not poses_l:
        raise ValueError("cam_left_from_world: expected at least one pose, got 0")
    out = Path(out)
    rect = rectify(rig)
    n = len(poses_l)
    names, cams, poses = [], [], []
    rnames, rposes = [], []
    for i, T in enumerate(poses_l):
        lT, rT = rig.cams_from_world(T)
        names += [f"left/{i:04d}.png", f"right/{i:04d}.png"]
        cams += [rig.left, rig.right]
        poses += [lT, rT]
        a, b = rect.rects_from_world(T, rig)
        rposes += [a, b]
        rnames += [f"left/{i:04d}.png", f"right/{i:04d}.png"]
    pairs = [[f"left/{i:04d}.png", f"right/{i:04d}.png"] for i in range(n)]
    stereo = {"baseline": rig.baseline, "right_from_left": _pose_json(rig.right_from_left), "pairs": pairs,
              "rectified": "rectified"}
    ds = write_dataset(out, scene, cams, poses, names=names, options=options, kind="stereo",
                       extra_gt={"stereo": stereo})
    fx = float(rect.camera.focal[0])
    rstereo = {"baseline": rect.baseline, "pairs": pairs, "rectified": True,
               "rect_from_left": rect.rect_from_left.tolist(), "rect_from_right": rect.rect_from_right.tolist(),
               "disparity": {"dir": "disparity", "format": "npy", "dtype": "float32", "unit": "px",
                             "definition": "u_left - u_right = fx * baseline / z_left, same row; 0 = invalid",
                             "fx": fx},
               "unrectified": ".."}
    rds = write_dataset(out / "rectified", scene, rect.camera, rposes, names=rnames, options=options,
                        kind="stereo-rectified", extra_gt={"stereo": rstereo})
    for i in range(len(rds)):
        disp = disparity_from_depth(rds.load_depth(i), fx, rect.baseline)
        p = out / "rectified" / "disparity" / (rds.views[i].stem + ".npy")
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, disp, allow_pickle=False)
    return ds
