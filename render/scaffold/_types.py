"""What a method implements (:class:`Trainer`) and the errors and values the loop passes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from recon.errors import ReconError

__all__ = ["NonFiniteLoss", "RenderedView", "Trainer", "TrainingDiverged"]


class TrainingDiverged(ReconError):
    """The loss (or the model) became NaN/Inf. The last good state is in the checkpoint."""


class NonFiniteLoss(Exception):
    """Raised by ``Trainer.step`` instead of applying an update from a NaN/Inf loss."""

    def __init__(self, value: float):
        self.value = float(value)
        super().__init__(f"loss is {self.value}")


@dataclass
class RenderedView:
    rgb: np.ndarray  # [H, W, 3] float32 in [0, 1]
    depth: np.ndarray | None = None  # [H, W] float32, z along the optical axis (scene units); None if n/a


@runtime_checkable
class Trainer(Protocol):
    """What a method implements (see the module docstring for an example)."""

    method: str

    def step(self, step: int) -> Mapping[str, Any]: ...

    def render_view(self, camera, cam_from_world) -> RenderedView: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def is_finite(self) -> bool: ...

    def export(self, out_dir: Path) -> dict: ...
