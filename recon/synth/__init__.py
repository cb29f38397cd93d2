"""Synthetic ground truth: procedural scenes, exact rendering through any camera model, dataset
folders any later stage can consume, and stereo pairs.

Typical use::

    from recon import synth
    scene = synth.make_scene(seed=0)
    camera = synth.make_camera("OPENCV", 640, 480, fov_deg=60)
    poses = synth.orbit(30, radius=3.2)
    ds = synth.write_dataset("out/orbit", scene, camera, poses)   # images/, depth/, sparse/0 ...
    view = synth.render_view(scene, camera, poses[0])              # RenderedView in memory

Conventions: world frame z up in metres; OpenCV camera axes; poses ``cam_from_world``
(``calib.Rigid3``); pixel (0, 0) is the centre of the top-left pixel; depth is z in the camera
frame. See docs/synth.md. Calibration boards live in ``recon.synth.boards``.

Importing this package is light (NumPy + calib); OpenCV is imported inside the functions that
draw textures or write images.
"""

from recon.synth import stereo
from recon.synth.dataset import (
    DatasetOptions,
    GroundTruthPoints,
    SynthDataset,
    SynthView,
    ground_truth_points,
    load_dataset,
    write_dataset,
)
from recon.synth.mesh import SceneMesh, scene_mesh
from recon.synth.render import (
    RenderedView,
    RenderOptions,
    camera_rays,
    cast_rays,
    pixel_angles,
    render_view,
)
from recon.synth.scene import CLASS_NAMES, Instance, Primitive, Scene, SceneConfig, make_scene
from recon.synth.stereo import StereoPair, rectify, stereo_pair, write_stereo_dataset
from recon.synth.trajectory import (
    STREET_ROOM_HALF_SIZE,
    TRAJECTORIES,
    StereoRig,
    default_distortion,
    hemisphere,
    look_at,
    make_camera,
    orbit,
    street,
    walkthrough,
)

__all__ = [
    "CLASS_NAMES",
    "STREET_ROOM_HALF_SIZE",
    "TRAJECTORIES",
    "DatasetOptions",
    "GroundTruthPoints",
    "Instance",
    "Primitive",
    "RenderOptions",
    "RenderedView",
    "Scene",
    "SceneConfig",
    "SceneMesh",
    "StereoPair",
    "StereoRig",
    "SynthDataset",
    "SynthView",
    "camera_rays",
    "cast_rays",
    "default_distortion",
    "ground_truth_points",
    "hemisphere",
    "load_dataset",
    "look_at",
    "make_camera",
    "make_scene",
    "orbit",
    "pixel_angles",
    "rectify",
    "render_view",
    "scene_mesh",
    "stereo",
    "stereo_pair",
    "street",
    "walkthrough",
    "write_dataset",
    "write_stereo_dataset",
]
