"""PSNR / SSIM / LPIPS of a trainer's renders against the held-out views."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.io.files import atomic_write

from ._split import Split
from ._types import Trainer

__all__ = ["EvalResult", "evaluate"]


@dataclass
class EvalResult:
    split: str  # "test", or "train" when nothing is held out
    views: int
    psnr: float | None
    ssim: float | None
    lpips: float | None
    lpips_reason: str | None
    per_view: list[dict] = field(default_factory=list)


def _save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image as PILImage

    path.parent.mkdir(parents=True, exist_ok=True)
    img = PILImage.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    atomic_write(path, lambda p: img.save(p))


def evaluate(trainer: Trainer, scene, split: Split, out_dir=None) -> EvalResult:
    """PSNR / SSIM / LPIPS of ``trainer.render_view`` against the held-out views (the training
    views when none are held out); renders saved under ``out_dir/renders/<split>/``."""
    import torch

    from render.metrics import lpips, lpips_status, psnr, ssim

    idx, name = (split.test, "test") if split.test else (split.train, "train")
    ps, ss, lp, per = [], [], [], []
    lp_ok, lp_reason = lpips_status()
    with torch.no_grad():
        for i in idx:
            v = scene.views[i]
            pred = np.asarray(trainer.render_view(v.camera, v.cam_from_world).rgb, dtype=np.float32)
            pred = np.clip(pred, 0.0, 1.0)
            p, s = psnr(pred, v.image), ssim(pred, v.image)
            lv = lpips(pred, v.image) if lp_ok else None
            ps.append(p), ss.append(s), lp.append(lv)
            per.append({"index": int(i), "name": v.name, "psnr": p, "ssim": s, "lpips": lv})
            if out_dir is not None:
                stem = Path(v.name).with_suffix("").as_posix().replace("/", "_")
                _save_png(Path(out_dir) / "renders" / name / f"{i:04d}_{stem}.png", pred)
    have_lp = lp_ok and bool(lp)
    return EvalResult(name, len(idx), float(np.mean(ps)) if ps else None, float(np.mean(ss)) if ss else None,
                      float(np.mean(lp)) if have_lp else None, None if have_lp else lp_reason, per)
