"""Checkpoint IO: ``{"version", "method", "step", "seconds", "config", "split", "state",
"torch_rng"}`` written atomically (temporary file + rename); read back with the file named on error."""

from __future__ import annotations

from pathlib import Path

from recon.errors import ReconError
from recon.io.files import atomic_write

from ._split import Split
from ._types import Trainer

__all__ = ["CHECKPOINT_VERSION", "read_checkpoint"]

CHECKPOINT_VERSION = 1


def read_checkpoint(path) -> dict:
    """The checkpoint dict (see the module docstring); ReconError naming the file when unreadable."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: nothing to resume from")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load raises pickle, zip, EOF and runtime errors
        first = (str(e).strip().splitlines() or [""])[0]
        raise ReconError(f"{path}: cannot read checkpoint ({type(e).__name__}: {first})") from None
    if isinstance(ck, dict) and "state" not in ck and "params" in ck:  # splat checkpoints before the scaffold
        ck = {**ck, "method": "splat", "state": {k: ck.pop(k) for k in ("params", "optimizer", "strategy_state")}}
    if not isinstance(ck, dict) or "state" not in ck or "step" not in ck:
        raise ReconError(f"{path}: not a recon training checkpoint (no 'state' / 'step')")
    return ck


def _save_checkpoint(path: Path, trainer: Trainer, step: int, seconds: float, config: dict, split: Split) -> None:
    import torch

    doc = {"version": CHECKPOINT_VERSION, "method": trainer.method, "step": step, "seconds": seconds,
           "config": config, "split": split.to_json(), "state": trainer.state_dict(),
           "torch_rng": torch.get_rng_state()}

    def write(tmp: Path) -> None:
        # through a Python file object, so a full disk surfaces as its OSError (torch's own
        # path writer reports only "unexpected pos")
        with open(tmp, "wb") as f:
            torch.save(doc, f)

    atomic_write(path, write)
