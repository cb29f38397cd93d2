"""The one CLI style, as argparse helpers every verb calls (tests/test_cli_style.py checks it):

* a verb that writes takes ``-o/--output`` (dest ``output``);
* a verb that takes a calibration takes ``--calib`` (dest ``calib``); ``--calibration`` is kept as
  a hidden alias for old scripts;
* inputs are positional and named for what they are (IMAGES, MODEL, LEFT RIGHT, ...).
"""

from __future__ import annotations

import argparse

__all__ = ["add_calib", "add_output"]


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
