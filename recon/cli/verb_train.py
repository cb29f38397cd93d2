"""`recon train MODEL DATA -o OUT`: train a radiance field on posed images.

Models are discovered, not listed here: every package ``render/<name>/`` with a module
``render/<name>/cli_train.py`` adds the sub-verb ``recon train <NAME>``. Such a module defines,
importing nothing heavy at top level (and its package ``__init__`` must be light too)::

    NAME = "splat"; HELP = "one line"; ORDER = 10
    def add_arguments(parser): ...
    def run(args) -> int: ...      # heavy imports inside
"""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train a radiance field on posed images (`recon train splat`: Gaussian splatting; `recon train nerf`: NeRF)"
ORDER = 60
DESCRIPTION = (
    "Train a radiance field on posed images (a COLMAP model with its images, or a "
    "transforms.json). Pick the model as the first argument, e.g. `recon train splat DATA -o OUT`; "
    "`recon train MODEL --help` lists its options."
)


def _trainer_modules():
    import importlib
    import importlib.util
    import pkgutil

    try:
        import render
    except ImportError:
        return []
    mods = []
    for info in pkgutil.iter_modules(render.__path__):
        if not info.ispkg:
            continue
        name = f"render.{info.name}.cli_train"
        try:
            if importlib.util.find_spec(name) is None:
                continue
            mods.append(importlib.import_module(name))
        except ImportError:
            continue
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model", metavar="MODEL", title="models")
    for mod in _trainer_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_train_run=mod.run)
    parser.set_defaults(_train_parser=parser)


def run(args: argparse.Namespace) -> int:
    fn = getattr(args, "_train_run", None)
    if fn is None:
        args._train_parser.print_help()
        return 2
    return int(fn(args) or 0)
