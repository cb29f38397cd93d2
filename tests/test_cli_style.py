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


# One spelling of quiet, threads and image size (recon/cli/_style.py add_quiet / add_threads /
# add_max_image_size) on every verb; the old spellings survive only as hidden aliases where a
# verb had them. ``--workers`` visible with dest "workers" is the Dask cluster (recon.cluster).
HIDDEN_ALIASES = {"--no-progress": "quiet", "--max-size": "max_image_size", "--workers": "threads"}
#: verbs that keep a hidden alias because they had the old spelling
KEEPS_ALIAS = {"--no-progress": {"export", "data download", "synth"}, "--workers": {"synth", "calibrate"},
               "--max-size": {"twoview", "stereo"}}


def _spelling_problems(verb: str, parser: argparse.ArgumentParser) -> set[str]:
    options = {s: a for a in parser._actions for s in a.option_strings}
    problems = set()
    if "--quiet" in options and options.get("-q") is not options["--quiet"]:
        problems.add("--quiet without -q")
    if "-q" in options and (options["-q"].dest != "quiet" or "--quiet" not in options):
        problems.add("-q is not -q/--quiet (dest quiet)")
    for alias, dest in HIDDEN_ALIASES.items():
        if alias in options:
            a = options[alias]
            if alias == "--workers" and a.dest == "workers" and a.help != argparse.SUPPRESS:
                continue  # the cluster's worker processes (recon sfm / reconstruct --workers N)
            if a.help != argparse.SUPPRESS or a.dest != dest or not any(
                    b.dest == dest and b.help != argparse.SUPPRESS for b in parser._actions):
                problems.add(alias)
            elif verb not in KEEPS_ALIAS[alias]:
                problems.add(f"{alias} (a hidden alias only where the verb had it)")
    for name, dest in (("--threads", "threads"), ("--max-image-size", "max_image_size")):
        if name in options and options[name].dest != dest:
            problems.add(f"{name} dest")
    return problems


@pytest.mark.parametrize("verb", sorted(LEAVES))
def test_one_spelling_of_quiet_threads_and_image_size(verb):
    problems = _spelling_problems(verb, LEAVES[verb])
    assert not problems, f"{verb}: {sorted(problems)}"


def test_spelling_check_catches_old_spellings():
    p = argparse.ArgumentParser()
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--workers", type=int, dest="threads")  # threads under the cluster's name
    p.add_argument("--max-size", type=int)
    assert _spelling_problems("x", p) == {"--quiet without -q", "--workers", "--max-size"}


def test_hidden_aliases_map_to_the_one_spelling():
    parse = cli.build_parser().parse_args
    assert parse(["export", "s", "-o", "m.ply", "--no-progress"]).quiet
    assert parse(["synth", "-o", "d", "--workers", "3"]).threads == 3
    assert parse(["synth", "-o", "d", "--threads", "2", "-q"]).threads == 2


def test_cli_function_bodies_stay_small():
    """bench/cli_lines.py: the verbs this repo's library-first work owns stay under the bars
    (total <= 800, no verb module over 150); calibrate/twoview/stereo shrink in their own work."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("cli_lines", Path(__file__).parents[1] / "bench" / "cli_lines.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    counts = {k: v for k, v in mod.counts().items() if k not in mod.OTHERS}
    assert sum(counts.values()) <= mod.TOTAL_BAR
    assert {k: v for k, v in counts.items() if k.startswith("verb_") and v > mod.MODULE_BAR} == {}
