"""Function-body lines in recon/cli/ (the issue-24 quality bar: the CLI only parses, calls the
library and prints). Counted with ``ast``: for every top-level function and method, the lines
from its first body statement to its end (docstring included); argument-definition helpers
(``add_arguments``, ``add_*`` / ``_add_*``, everything in ``_style.py``) are excluded.

    python bench/cli_lines.py            # table per module, totals with and without OTHERS
    python bench/cli_lines.py --check    # exit 1 when total > 800 or a module > 150

Bars: total <= 800, no verb module over 150.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "recon" / "cli"
TOTAL_BAR, MODULE_BAR = 800, 150
#: verb modules whose logic other work moves into the library (issue 24: calib, twoview, stereo)
OTHERS = ("verb_calibrate.py", "verb_twoview.py", "verb_stereo.py")


def _is_argument_helper(name: str, path: Path) -> bool:
    return path.name == "_style.py" or name == "add_arguments" or name.startswith(("add_", "_add_"))


def body_lines(path: Path) -> int:
    """Function-body lines of one module (see the module docstring)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    total = 0

    def functions(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield node
            elif isinstance(node, ast.ClassDef):
                yield from functions(node.body)

    for fn in functions(tree.body):
        if not _is_argument_helper(fn.name, path):
            total += fn.end_lineno - fn.body[0].lineno + 1
    return total


def counts() -> dict[str, int]:
    return {p.name: body_lines(p) for p in sorted(CLI.glob("*.py"))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a bar is not met")
    args = ap.parse_args(argv)
    c = counts()
    for name, n in sorted(c.items(), key=lambda kv: -kv[1]):
        flag = "  > 150" if n > MODULE_BAR and name.startswith("verb_") else ""
        print(f"{name:24s} {n:5d}{flag}")
    total = sum(c.values())
    mine = sum(n for k, n in c.items() if k not in OTHERS)
    print(f"{'total':24s} {total:5d}  (bar {TOTAL_BAR})")
    print(f"{'total without ' + '/'.join(o[5:-3] for o in OTHERS):24s} {mine:5d}")
    over = [k for k, n in c.items() if k.startswith("verb_") and n > MODULE_BAR]
    ok = total <= TOTAL_BAR and not over
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
