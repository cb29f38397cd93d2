"""`recon train MODEL DATA -o OUT`: train a radiance field on posed images.

Models are discovered, not listed here: every package ``render/<name>/`` with a module
``render/<name>/cli_train.py`` adds the sub-verb ``recon train <NAME>``. Such a module defines,
importing nothing heavy at top level (and its package ``__init__`` must be light too)::

    NAME = "splat"; HELP = "one line"; ORDER = 10
    def add_arguments(parser): ...
    def run(args) -> int: ...      # heavy imports inside
    CLUSTER = True                 # optional: the verb takes the cluster options (--workers, ...)

A ``cli_train.py`` that fails to import is not dropped: ``recon train NAME`` then stops with an
error naming the module and the import error, and ``recon train --help`` lists it as broken.

A trainer's ``--viewer`` gets its live viewer from here (``args.live_viewer``, a factory
``render_fn -> viewer.live.TrainingViewer``), so render never imports viewer; a trainer with
``CLUSTER = True`` gets the cluster options and ``args.cluster_options(args)`` (a
``recon.cluster.ClusterOptions`` or None) the same way, so render never imports the CLI.
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
    """-> (modules sorted by ORDER, {package name: error text} for cli_train modules that fail
    to import)."""
    import importlib
    import importlib.util
    import os
    import pkgutil

    import render

    mods, broken = [], {}
    for info in pkgutil.iter_modules(render.__path__):
        # a package with a cli_train module; asked of its folder, so that packages without one
        # (render.scaffold) are not imported by `recon --help`
        if not info.ispkg or not any(m.name == "cli_train" for m in
                                     pkgutil.iter_modules([os.path.join(info.module_finder.path, info.name)])):
            continue
        name = f"render.{info.name}.cli_train"
        if importlib.util.find_spec(f"render.{info.name}") is None or \
                importlib.util.find_spec(name) is None:
            continue
        try:
            mods.append(importlib.import_module(name))
        except Exception as e:  # noqa: BLE001 - any import failure is reported, never silently dropped
            broken[info.name] = f"{name} cannot be imported ({type(e).__name__}: {e})"
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME)), broken


def _broken_run(message: str):
    def run(args) -> int:
        from recon.errors import ReconError

        raise ReconError(f"recon train {args.model}: {message}")

    return run


def _live_viewer(render_fn):
    """The live viewer for ``--viewer`` (imported here, in the CLI layer)."""
    import sys

    try:
        from viewer.live import TrainingViewer
    except ImportError as e:
        print(f"recon train: live viewer unavailable ({e}); training without it", file=sys.stderr)
        return None
    return TrainingViewer(render_fn)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from recon.cli import add_max_image_pixels

    sub = parser.add_subparsers(dest="model", metavar="MODEL", title="models")
    mods, broken = _trainer_modules()
    for mod in mods:
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        add_max_image_pixels(p)
        if getattr(mod, "CLUSTER", False):
            from recon.cli._cluster import add_cluster, cluster_options

            add_cluster(p)
            p.set_defaults(cluster_options=cluster_options)
        p.set_defaults(_train_run=mod.run, live_viewer=_live_viewer)
    for name, message in sorted(broken.items()):
        p = sub.add_parser(name, help=f"BROKEN: {message}", description=f"BROKEN: {message}")
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(_train_run=_broken_run(message))
    parser.set_defaults(_train_parser=parser)


def run(args: argparse.Namespace) -> int:
    fn = getattr(args, "_train_run", None)
    if fn is None:
        args._train_parser.print_help()
        return 2
    return int(fn(args) or 0)
