"""One CLI style (recon/cli/_style.py): every verb that writes takes -o/--output, every verb that
takes a calibration takes --calib (--calibration only as a hidden alias), inputs are positional
and named for what they are. Checked on the parsers and on the `--help` text users read."""

from __future__ import annotations

import argparse

import pytest

from recon import cli

# verbs that write nothing (they print); every other leaf verb must take -o/--output
READ_ONLY = {"info", "data list", "data info"}
# verbs that read a calibration file
TAKES_CALIB = {"sfm", "twoview", "stereo", "undistort", "reconstruct"}
VAGUE_POSITIONALS = {"out", "in", "input_path", "dest", "OUT", "IN", "DEST", "A", "B"}


def _leaves(parser: argparse.ArgumentParser, name: str = ""):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield name, parser
        return
    for action in subs:
        for verb, p in action.choices.items():
            yield from _leaves(p, f"{name} {verb}".strip())


LEAVES = dict(_leaves(cli.build_parser()))


def test_the_walk_finds_the_verbs():
    assert {"sfm", "calibrate", "twoview", "stereo", "convert", "render", "synth", "demo", "data download"} <= set(LEAVES)


@pytest.mark.parametrize("verb", sorted(LEAVES))
def test_one_spelling_per_option(verb, capsys):
    parser = LEAVES[verb]
    options = {s: a for a in parser._actions for s in a.option_strings}
    assert "--out" not in options, f"{verb}: --out (use -o/--output)"
    if verb not in READ_ONLY:
        assert "-o" in options and options["-o"] is options.get("--output"), f"{verb}: no -o/--output"
        assert options["-o"].dest == "output"
    if "--calibration" in options:
        a = options["--calibration"]
        assert a.help == argparse.SUPPRESS and a.dest == "calib", f"{verb}: --calibration must be a hidden alias"
    if verb in TAKES_CALIB:
        assert options["--calib"].dest == "calib" and "--calibration" in options
    else:
        assert "--calib" not in options
    for a in parser._actions:
        if not a.option_strings:
            assert a.dest not in VAGUE_POSITIONALS and (a.metavar or "") not in VAGUE_POSITIONALS, \
                f"{verb}: positional {a.dest!r} / {a.metavar!r} does not say what it is"

    # what the user reads
    with pytest.raises(SystemExit) as e:
        cli.main([*verb.split(), "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--out " not in text and "--out," not in text and "--calibration" not in text
    if verb not in READ_ONLY:
        assert "-o" in text and "--output" in text


def test_hidden_alias_still_works():
    args = cli.build_parser().parse_args(["sfm", "photos", "-o", "out", "--calibration", "c.yaml"])
    assert args.calib == "c.yaml" and args.output == "out"
    args = cli.build_parser().parse_args(["twoview", "a.png", "b.png", "-o", "x", "--calib", "s.yaml"])
    assert args.calib == "s.yaml" and args.output == "x"
