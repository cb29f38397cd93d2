"""One rendering API over two backends: gsplat's CUDA rasterizer and our pure-PyTorch one.

``rasterize(gaussians, camera, cam_from_world, sh_degree=..., background=..., backend=...)``
returns a :class:`RenderOutput` ([H, W, 3] colour, expected z-depth, accumulated alpha and the
per-Gaussian screen-space quantities densification needs).

Conventions (docs/conventions.md): ``cam_from_world`` maps world points to the OpenCV camera
frame; pixel (0, 0) is the centre of the top-left pixel. gsplat puts that centre at (0.5, 0.5)
(its kernels evaluate pixel (i, j) at (j + 0.5, i + 0.5)), so its K gets cx + 0.5, cy + 0.5 here,
at the edge; its ``viewmats`` are world-to-camera OpenCV matrices, i.e. our ``cam_from_world``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from calib import Camera, Rigid3, corner_from_centre
from recon.io.gaussians import GaussianCloud
from render.splat._torch_raster import rasterize_torch
from render.splat.gaussians import Gaussians

__all__ = ["RenderOutput", "camera_intrinsics", "gsplat_available", "rasterize"]

Backend = str  # "auto" | "torch" | "gsplat"


@dataclass
class RenderOutput:
    """Result of one render. Image tensors are [H, W, ...]; per-Gaussian tensors are [N, ...]."""

    rgb: torch.Tensor  # [H, W, 3] colour composited over the background
    depth: torch.Tensor  # [H, W] expected camera z-depth (sum w_i z_i / alpha); 0 where alpha = 0
    alpha: torch.Tensor  # [H, W] accumulated opacity in [0, 1]
    radii: torch.Tensor  # [N] int32 screen-space half-extent in pixels; 0 = culled
    means2d: torch.Tensor  # [N, 2] projected centres, pixels, (0, 0) = centre of top-left pixel
    depths: torch.Tensor  # [N] camera z of each Gaussian
    means2d_graph: torch.Tensor  # the screen-mean tensor in the autograd graph ([N,2] or [1,N,2]):
    #                            call .retain_grad() before backward to read d loss / d means2d
    backend: str  # "torch" or "gsplat"

    @property
    def visible(self) -> torch.Tensor:
        """[N] bool: the Gaussian was projected inside the image (radius > 0)."""
        return self.radii > 0


def camera_intrinsics(camera: Camera) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of an undistorted camera, pixel-centre convention. Raises for models
    with non-zero distortion (undistort the images first: ``recon undistort`` / pycolmap)."""
    if not isinstance(camera, Camera):
        raise TypeError(f"camera: expected calib.Camera, got {type(camera).__name__}")
    if camera.is_fisheye or camera.model not in ("SIMPLE_PINHOLE", "PINHOLE") and np.any(camera.extra != 0):
        raise ValueError(f"camera: splatting needs an undistorted pinhole camera (SIMPLE_PINHOLE or "
                         f"PINHOLE), got {camera.model} with distortion {camera.extra}; undistort the "
                         f"images first")
    (fx, fy), (cx, cy) = camera.focal, camera.principal_point
    return float(fx), float(fy), float(cx), float(cy)


def _pose_tensors(cam_from_world, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(cam_from_world, Rigid3):
        R, t = cam_from_world.rotation, cam_from_world.translation
        return (torch.as_tensor(R, device=device, dtype=dtype), torch.as_tensor(t, device=device, dtype=dtype))
    if isinstance(cam_from_world, (np.ndarray, torch.Tensor)):
        M = torch.as_tensor(cam_from_world, device=device, dtype=dtype)
        if M.shape not in ((4, 4), (3, 4)):
            raise ValueError(f"cam_from_world: expected calib.Rigid3 or a [4, 4] / [3, 4] matrix, "
                             f"got shape {tuple(M.shape)}")
        return M[:3, :3], M[:3, 3]
    raise TypeError(f"cam_from_world: expected calib.Rigid3 or a matrix, got {type(cam_from_world).__name__}")


def _as_gaussians(g, device) -> Gaussians:
    if isinstance(g, Gaussians):
        return g
    if isinstance(g, GaussianCloud):
        return Gaussians.from_cloud(g, device=device or "cpu")
    raise TypeError(f"gaussians: expected render.splat.Gaussians or recon.io.GaussianCloud, "
                    f"got {type(g).__name__}")


_GSPLAT_STATE: dict[str, object] = {}


def gsplat_available() -> tuple[bool, str]:
    """(True, version) if gsplat imports and CUDA is present, else (False, reason)."""
    if not torch.cuda.is_available():
        return False, "no CUDA (torch.cuda.is_available() is False)"
    try:
        import gsplat
        from gsplat import rasterization  # noqa: F401
    except (ImportError, AttributeError, RuntimeError, OSError) as e:
        return False, f"gsplat not importable ({type(e).__name__}: {e}); pip install 'gsplat>=1.5,<1.6'"
    return True, str(getattr(gsplat, "__version__", "unknown"))


def rasterize(gaussians, camera: Camera, cam_from_world, *, sh_degree: int | None = None,
              background=None, backend: Backend = "auto", near: float = 0.01, far: float = 1e10,
              eps2d: float = 0.3, max_alpha: float = 0.99, tile_size: int = 8,
              chunk_size: int = 32, distributed: bool = False) -> RenderOutput:
    """Render Gaussians through an undistorted pinhole camera.

    Args:
        gaussians: :class:`render.splat.Gaussians` (torch, differentiable) or a
            :class:`recon.io.GaussianCloud` (converted to float32 on the CPU, or on CUDA for gsplat).
        camera: ``calib.Camera`` SIMPLE_PINHOLE / PINHOLE (or a distortion-free model).
        cam_from_world: ``calib.Rigid3`` or a [4, 4] / [3, 4] matrix (world -> OpenCV camera).
        sh_degree: SH degree to evaluate (0..3, <= the Gaussians' degree); default: all of them.
        background: RGB in [0, 1] ([3]); default black.
        backend: "torch" (ours, CPU or CUDA), "gsplat" (CUDA only) or "auto" (gsplat when the
            Gaussians are on CUDA and gsplat imports, else torch).
        near, far: z-clipping planes (camera units). eps2d: low-pass term added to the 2D
            covariance (3DGS: 0.3 px^2). max_alpha: per-Gaussian alpha clamp (3DGS 0.99; gsplat's
            kernels hard-code 0.999). tile_size, chunk_size: torch backend work partition.
        distributed: gsplat only, inside a torch.distributed (NCCL) group: ``gaussians`` is this
            process's shard and the camera this process's view; gsplat exchanges the projected
            Gaussians between the processes (render.splat.distributed). ``radii`` / ``means2d``
            are then [W, N_shard(, 2)]: the shard in every process's view.
    """
    if distributed and backend != "gsplat":
        raise ValueError("distributed=True: only with backend='gsplat' (CUDA + NCCL); "
                         "render.splat.distributed gathers the shards for the torch backend")
    g = _as_gaussians(gaussians, "cuda" if backend == "gsplat" else None)
    device, dtype = g.device, g.means.dtype
    if sh_degree is None:
        sh_degree = g.max_sh_degree
    if not 0 <= int(sh_degree) <= g.max_sh_degree:
        raise ValueError(f"sh_degree: expected 0..{g.max_sh_degree} (the Gaussians' degree), got {sh_degree}")
    fx, fy, cx, cy = camera_intrinsics(camera)
    R, t = _pose_tensors(cam_from_world, device, dtype)
    if background is None:
        bg = torch.zeros(3, device=device, dtype=dtype)
    else:
        bg = torch.as_tensor(np.asarray(background, dtype=np.float64) if not isinstance(background, torch.Tensor)
                             else background, device=device, dtype=dtype).reshape(-1)
        if bg.shape != (3,):
            raise ValueError(f"background: expected 3 values (RGB), got shape {tuple(bg.shape)}")
    if backend not in ("auto", "torch", "gsplat"):
        raise ValueError(f"backend: expected 'auto', 'torch' or 'gsplat', got {backend!r}")
    if backend == "auto":
        backend = "torch"
        if device.type == "cuda":
            ok, why = gsplat_available()
            if ok:
                backend = "gsplat"
            elif not _GSPLAT_STATE.get("warned"):
                _GSPLAT_STATE["warned"] = True
                warnings.warn(f"gsplat unavailable, using the (slower) PyTorch rasterizer on CUDA: {why}",
                              stacklevel=2)
    if backend == "gsplat":
        return _rasterize_gsplat(g, int(sh_degree), fx, fy, cx, cy, camera.width, camera.height,
                                 R, t, bg, near, far, eps2d, distributed=distributed)
    out = rasterize_torch(g.means, g.quats_wxyz, g.log_scales, g.opacity_logits, g.sh_coeffs(),
                          int(sh_degree), R, t, fx, fy, cx, cy, camera.width, camera.height, bg,
                          near=near, far=far, eps2d=eps2d, max_alpha=max_alpha,
                          tile_size=tile_size, chunk_size=chunk_size)
    return RenderOutput(out.rgb, out.depth, out.alpha, out.radii, out.means2d, out.depths,
                        out.means2d, "torch")


def _rasterize_gsplat(g: Gaussians, sh_degree, fx, fy, cx, cy, width, height, R, t, bg, near, far,
                      eps2d, distributed: bool = False) -> RenderOutput:
    if g.device.type != "cuda":
        raise ValueError(f"backend='gsplat' needs the Gaussians on a CUDA device, found {g.device}")
    try:
        from gsplat import rasterization
    except (ImportError, AttributeError, RuntimeError, OSError) as e:
        raise RuntimeError(f"backend='gsplat': gsplat is not usable ({type(e).__name__}: {e}). Install it "
                           "with `pip install 'gsplat>=1.5,<1.6'` (needs a CUDA toolkit for its first-use "
                           "build) or use backend='torch'.") from e
    dtype, device = torch.float32, g.device
    viewmat = torch.eye(4, device=device, dtype=dtype)
    viewmat[:3, :3] = R.to(dtype)
    viewmat[:3, 3] = t.to(dtype)
    # gsplat evaluates pixel (i, j) at (j + 0.5, i + 0.5): shift the principal point at this edge.
    cxg, cyg = corner_from_centre([cx, cy])
    K = torch.tensor([[fx, 0.0, cxg], [0.0, fy, cyg], [0.0, 0.0, 1.0]], device=device, dtype=dtype)
    try:
        colors, alphas, meta = rasterization(
            means=g.means, quats=g.quats_wxyz, scales=torch.exp(g.log_scales),
            opacities=torch.sigmoid(g.opacity_logits), colors=g.sh_coeffs(),
            viewmats=viewmat[None], Ks=K[None], width=int(width), height=int(height),
            near_plane=near, far_plane=far, eps2d=eps2d, sh_degree=sh_degree, packed=False,
            backgrounds=bg.to(dtype)[None], render_mode="RGB+ED", distributed=distributed)
    except torch.cuda.OutOfMemoryError:
        raise
    except (ImportError, AttributeError, RuntimeError) as e:
        if "out of memory" in str(e).lower():
            raise
        raise RuntimeError(f"backend='gsplat': the gsplat call failed ({type(e).__name__}: {e}). Its CUDA "
                           "kernels are compiled on first use: check the CUDA toolkit (nvcc) matches "
                           "torch, or use backend='torch'.") from e
    radii = meta["radii"] if distributed else meta["radii"][0]  # distributed: [W, N_shard(, 2)]
    if radii.shape[-1] == 2 and radii.ndim == (3 if distributed else 2):  # gsplat >= 1.5: per-axis radii
        radii = radii.max(dim=-1).values
    means2d_graph = meta["means2d"]
    return RenderOutput(
        rgb=colors[0, ..., :3], depth=colors[0, ..., 3], alpha=alphas[0, ..., 0],
        radii=radii.to(torch.int32), means2d=means2d_graph[0].detach() - 0.5,
        depths=meta["depths"][0], means2d_graph=means2d_graph, backend="gsplat")
