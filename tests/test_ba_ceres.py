"""Validation of recon.ba against pycolmap's Ceres bundle adjustment on the same problems:
same objective (loss, scale, refined parameters, fixed poses; gauge fixing removes only the 7
similarity DOF, so the minimum is the same), same final cost to 1e-6 relative (or lower), same
solution (intrinsics directly, poses/points after similarity alignment)."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest

from calib import Sim3
from recon.ba import BAOptions, bundle_adjust, problem_from_reconstruction, update_reconstruction
from recon.ba.reference import ceres_bundle_adjust
from recon.ba.synthetic import perturb_problem, reconstruction_from_problem, synthetic_problem
from recon.sfm._pycolmap import from_pycolmap


def _centres(rec):
    ids = sorted(i for i, im in rec.images.items() if im.registered)
    return ids, np.array([rec.images[i].center for i in ids])


def _compare(rec, *, loss="trivial", loss_scale=1.0, fixed_image_ids=(), **refine):
    prob, index = problem_from_reconstruction(rec, fixed_image_ids=fixed_image_ids, **refine)
    gauge = "none" if len(fixed_image_ids) >= 2 else "two_cams"
    ours = bundle_adjust(prob, BAOptions(loss=loss, loss_scale=loss_scale, gauge=gauge,
                                         function_tolerance=1e-12, gradient_tolerance=1e-12))
    ceres = ceres_bundle_adjust(rec, loss=loss, loss_scale=loss_scale, fixed_image_ids=fixed_image_ids,
                                function_tolerance=1e-12, gradient_tolerance=1e-12, **refine)
    assert ours.initial_cost == pytest.approx(ceres.initial_cost, rel=1e-9)
    assert ours.final_cost <= ceres.final_cost * (1 + 1e-6), (ours.final_cost, ceres.final_cost)
    assert ours.final_cost == pytest.approx(ceres.final_cost, rel=1e-5)
    out = _copy(rec)
    update_reconstruction(out, ours.problem, index)
    for cid in rec.cameras:
        # focal / principal point to 1e-5 relative; distortion (k2 is weakly observable) to 1e-5
        np.testing.assert_allclose(out.cameras[cid].params, ceres.reconstruction.cameras[cid].params,
                                   rtol=1e-5, atol=1e-5)
    ids, c_ours = _centres(out)
    _, c_ceres = _centres(ceres.reconstruction)
    extent = np.ptp(c_ceres, axis=0).max()
    s = Sim3.align(c_ours, c_ceres)
    assert np.abs(s.apply(c_ours) - c_ceres).max() < 1e-5 * extent
    pid = sorted(out.points3D)
    xo = np.array([out.points3D[p].xyz for p in pid])
    xc = np.array([ceres.reconstruction.points3D[p].xyz for p in pid])
    assert np.median(np.linalg.norm(s.apply(xo) - xc, axis=1)) < 1e-5 * extent
    return ours, ceres


def _copy(rec):
    from recon.scene import Image, Point3D, Reconstruction

    return Reconstruction(dict(rec.cameras),
                          {i: Image(im.image_id, im.name, im.camera_id, im.cam_from_world, im.keypoints,
                                    im.point3D_ids) for i, im in rec.images.items()},
                          {i: Point3D(p.xyz.copy(), p.rgb, p.error, p.track) for i, p in rec.points3D.items()})


def _pycolmap_scene(seed=1, frames=8, points=300):
    pycolmap.set_random_seed(seed)
    o = pycolmap.SyntheticDatasetOptions()
    o.num_rigs, o.num_frames_per_rig, o.num_points3D = 1, frames, points
    prec = pycolmap.synthesize_dataset(o)
    n = pycolmap.SyntheticNoiseOptions()
    n.point2D_stddev, n.point3D_stddev = 0.7, 0.05
    n.rig_from_world_rotation_stddev, n.rig_from_world_translation_stddev = 0.3, 0.05
    pycolmap.synthesize_noise(n, prec)
    return from_pycolmap(prec)


@pytest.mark.parametrize("loss", ["trivial", "huber", "cauchy"])
def test_same_minimum_as_ceres_on_pycolmap_scene(loss):
    _compare(_pycolmap_scene(), loss=loss, loss_scale=1.0)


def test_same_minimum_as_ceres_radial_camera_with_principal_point():
    prob = perturb_problem(synthetic_problem(8, 250, model="RADIAL", seed=11, noise_px=0.8))
    _compare(reconstruction_from_problem(prob), refine_principal_point=True)


def test_same_minimum_as_ceres_fixed_intrinsics_and_fixed_poses():
    prob = perturb_problem(synthetic_problem(8, 250, model="OPENCV", seed=12, noise_px=0.5))
    rec = reconstruction_from_problem(prob)
    _compare(rec, refine_focal=False, refine_extra=False, fixed_image_ids=(2, 5))
