"""The one CLI style, as argparse helpers every verb calls (tests/test_cli_style.py checks it):

* a verb that writes takes ``-o/--output`` (dest ``output``);
* a verb that takes a calibration takes ``--calib`` (dest ``calib``); ``--calibration`` is kept as
  a hidden alias for old scripts;
* inputs are positional and named for what they are (IMAGES, MODEL, LEFT RIGHT, ...);
* no progress output is ``-q/--quiet`` (dest ``quiet``; ``--no-progress`` a hidden alias where a
  verb had it), CPU threads ``--threads`` (``--workers`` is the Dask cluster's), the image size
  cap ``--max-image-size`` (``--max-size`` a hidden alias where a verb had it).
"""

from __future__ import annotations

import argparse

__all__ = ["add_calib", "add_max_image_size", "add_output", "add_quiet", "add_threads"]


def add_output(parser: argparse.ArgumentParser, help: str, *, metavar: str = "OUT", required: bool = True,
               default: str | None = None) -> argparse.Action:
    """``-o/--output``: where the verb writes."""
    return parser.add_argument("-o", "--output", required=required and default is None, default=default,
                               metavar=metavar, help=help)


def add_calib(parser: argparse.ArgumentParser, help: str, *, metavar: str = "FILE", required: bool = False,
              group=None) -> argparse.Action:
    """``--calib`` (and the hidden alias ``--calibration``): a calibration file, read by
    :func:`calib.read_camera` / :func:`calib.read_rig` (OpenCV YAML, report.json, cameras.txt)."""
    target = group if group is not None else parser
    action = target.add_argument("--calib", required=required, default=None, metavar=metavar, help=help)
    target.add_argument("--calibration", dest="calib", default=None, help=argparse.SUPPRESS)
    return action


def add_quiet(parser: argparse.ArgumentParser, help: str = "no progress bars", *,
              no_progress_alias: bool = True) -> argparse.Action:
    """``-q/--quiet`` (dest ``quiet``); ``--no-progress`` as a hidden alias for old scripts."""
    action = parser.add_argument("-q", "--quiet", action="store_true", help=help)
    if no_progress_alias:
        parser.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)
    return action


def add_threads(parser: argparse.ArgumentParser, help: str, *, default=None, workers_alias: bool = False,
                group=None) -> argparse.Action:
    """``--threads N`` (dest ``threads``); ``--workers`` as a hidden alias where a verb had it
    (the name is the Dask cluster's from now on)."""
    target = group if group is not None else parser
    action = target.add_argument("--threads", type=int, default=default, metavar="N", help=help)
    if workers_alias:
        target.add_argument("--workers", dest="threads", type=int, default=default, help=argparse.SUPPRESS)
    return action


def add_max_image_size(parser: argparse.ArgumentParser, help: str, *, default=None, max_size_alias: bool = False,
                       group=None, **kw) -> argparse.Action:
    """``--max-image-size PX`` (dest ``max_image_size``); ``--max-size`` as a hidden alias where a
    verb had it."""
    target = group if group is not None else parser
    kw.setdefault("type", int)
    kw.setdefault("metavar", "PX")
    action = target.add_argument("--max-image-size", default=default, help=help, **kw)
    if max_size_alias:
        target.add_argument("--max-size", dest="max_image_size", default=default, help=argparse.SUPPRESS,
                            **{k: v for k, v in kw.items() if k != "metavar"})
    return action
