"""The held-out split (recorded in checkpoint and report) and the training-view order."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.errors import ReconError

__all__ = ["ShuffledViews", "Split", "read_split"]


@dataclass(frozen=True)
class Split:
    """Which views train and which are held out, by index into ``SceneData.views`` (sorted by
    name) and by name, so a later reader finds the same views even if the dataset changes."""

    train: tuple[int, ...]
    test: tuple[int, ...]
    names: tuple[str, ...]  # every view's name, in index order
    test_every: int = 8
    max_views: int | None = None

    @classmethod
    def every(cls, scene, *, test_every: int = 8, max_views: int | None = None) -> Split:
        """The 3DGS / Mip-NeRF 360 protocol: views i with i % test_every == 0 are held out."""
        from render.data import split_train_test

        train, test = split_train_test(len(scene.views), test_every=test_every)
        return cls(tuple(train), tuple(test), tuple(v.name for v in scene.views), test_every, max_views)

    def to_json(self) -> dict:
        return {"protocol": f"every {self.test_every}th view held out" if self.test_every > 0 else "none held out",
                "test_every": self.test_every, "max_views": self.max_views,
                "train": [self.names[i] for i in self.train], "test": [self.names[i] for i in self.test],
                "train_indices": list(self.train), "test_indices": list(self.test)}

    @classmethod
    def from_json(cls, d: Mapping, *, where="report.json") -> Split:
        try:
            train, test = [str(n) for n in d["train"]], [str(n) for n in d["test"]]
            ti, si = [int(i) for i in d["train_indices"]], [int(i) for i in d["test_indices"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ReconError(f"{where}: 'split' is incomplete ({type(e).__name__}: {e})") from None
        n = max([*ti, *si], default=-1) + 1
        names = [""] * n
        for i, name in zip([*ti, *si], [*train, *test], strict=True):
            names[i] = name
        return cls(tuple(ti), tuple(si), tuple(names), int(d.get("test_every", 8)), d.get("max_views"))

    def indices_in(self, scene, which: str) -> list[int]:
        """Indices into ``scene.views`` of the ``which`` ('train' / 'test') views, matched by name.
        ReconError naming the missing views when the scene lacks some."""
        wanted = [self.names[i] for i in (self.test if which == "test" else self.train)]
        by_name = {v.name: k for k, v in enumerate(scene.views)}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise ReconError(f"{len(missing)} {which} views recorded in the report are not in the dataset "
                             f"(first: {missing[:3]})")
        return [by_name[n] for n in wanted]


def read_split(report_path) -> Split | None:
    """The split recorded in a run's report.json (None for reports written before it was)."""
    report_path = Path(report_path)
    try:
        doc = json.loads(report_path.read_text())
    except (OSError, ValueError) as e:
        raise ReconError(f"{report_path}: cannot read ({e})") from None
    sp = doc.get("split") if isinstance(doc, dict) else None
    return Split.from_json(sp, where=report_path) if isinstance(sp, dict) else None


class ShuffledViews:
    """Training-view order: epoch ``e`` visits ``train`` in the permutation drawn by
    ``numpy.random.default_rng((seed, e))``. A function of the step alone, so a resumed run
    sees exactly the views the uninterrupted run would have seen."""

    def __init__(self, train, *, seed: int = 0):
        self.train = list(train)
        if not self.train:
            raise ReconError("no training views (need at least 2 views with test_every > 0)")
        self.seed = seed
        self._epoch, self._perm = -1, None

    def at(self, step: int) -> int:
        epoch, pos = divmod(int(step), len(self.train))
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng((self.seed, epoch)).permutation(self.train)
        return int(self._perm[pos])
