"""The layering of DESIGN.md, enforced.

1. Light imports: `import calib`, `import recon`, `recon --help` and `recon VERB --help` must not
   import torch, open3d, gsplat, viser, pycolmap or cv2 (checked in a fresh interpreter by
   inspecting sys.modules).
2. Import direction (static, an AST walk over the sources): calib imports nothing of ours;
   recon never imports render or viewer, except inside functions of recon/cli/ and
   recon/pipeline*; render and viewer never import each other, not even inside functions (the
   live viewer gets a render callback; the CLI hands the trainer its viewer).
3. No import cycles between our modules, counting imports inside functions (a lazy import
   hides a cycle from Python, not from the design). Imports under ``if TYPE_CHECKING:`` are
   annotations and do not count.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open3d", "gsplat", "viser", "pycolmap", "cv2")
OURS = ("calib", "recon", "render", "viewer")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def heavy_modules_after(code: str) -> list[str]:
    """Run `code` in a fresh interpreter; return the heavy top-level modules it imported."""
    probe = textwrap.dedent(f"""
        import json, sys
        {textwrap.indent(textwrap.dedent(code), '        ').strip()}
        loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))
        print("\\n" + json.dumps(loaded))
    """)
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=_child_env(),
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code", ["import calib", "import recon", "import recon.scene, recon.errors"])
def test_package_imports_are_light(code):
    assert heavy_modules_after(code) == []


def _verb_names() -> list[str]:
    return sorted(p.stem[len("verb_"):] for p in (ROOT / "recon" / "cli").glob("verb_*.py"))


def test_recon_help_is_light():
    code = """
        import contextlib, io
        from recon.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main(["--help"])
            except SystemExit:
                pass
    """
    assert heavy_modules_after(code) == []


def test_recon_help_does_not_even_import_numpy():
    """recon/__init__ loads its names lazily, so the CLI start-up is argparse + the verb
    modules (about 40 ms of imports instead of about 460 ms with NumPy + calib + recon.scene)."""
    code = """
        import contextlib, io, sys
        from recon.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main(["--help"])
            except SystemExit:
                pass
        assert "numpy" not in sys.modules and "calib" not in sys.modules, sorted(sys.modules)
    """
    assert heavy_modules_after(code) == []


def test_lazy_names_of_recon():
    import recon
    from recon import FormatError, Reconstruction
    from recon.errors import FormatError as direct
    from recon.scene import Reconstruction as direct_rec

    assert FormatError is direct and Reconstruction is direct_rec and recon.Image.__name__ == "Image"
    assert set(recon.__all__) <= set(dir(recon))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        recon.nope


def test_every_verb_help_is_light():
    """Each verb module imports nothing heavy at top level (heavy imports go inside run())."""
    verbs = _verb_names()
    code = f"""
        import contextlib, io
        from recon.cli import build_parser
        parser = build_parser()
        for verb in {verbs!r}:
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    parser.parse_args([verb, "--help"])
                except SystemExit:
                    pass
    """
    assert heavy_modules_after(code) == []


def test_python_dash_m_recon_help_in_a_fresh_process():
    """The real entry point: `python -m recon --help` exits 0 without heavy imports."""
    code = """
        import contextlib, io, runpy, sys
        sys.argv = ["recon", "--help"]
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                runpy.run_module("recon", run_name="__main__")
            except SystemExit as e:
                assert e.code in (0, None), e.code
    """
    assert heavy_modules_after(code) == []


# ------------------------------------------------------------------------------------------
# Static import-direction check
# ------------------------------------------------------------------------------------------

class ImportUse:
    def __init__(self, path: Path, lineno: int, target: str, in_function: bool):
        self.path, self.lineno, self.target, self.in_function = path, lineno, target, in_function

    def __repr__(self):
        where = "in a function" if self.in_function else "at module level"
        return f"{self.path}:{self.lineno} imports {self.target} {where}"


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(source: str, path: Path, module: str) -> list[ImportUse]:
    """Every import in `source` with its absolute target and whether it sits inside a function."""
    tree = ast.parse(source, filename=str(path))
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found: list[ImportUse] = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(ImportUse(path, child.lineno, alias.name, in_function))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.append(ImportUse(path, child.lineno, target, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


def layering_violations(root: Path) -> list[str]:
    problems = []
    for pkg in OURS:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root)
            module = _module_name(path, root)
            for use in imports_of(path.read_text(encoding="utf-8"), rel, module):
                top = use.target.split(".")[0]
                if top not in OURS or top == pkg:
                    continue
                if pkg == "calib":
                    problems.append(f"calib must import nothing of ours: {use!r}")
                elif pkg == "recon" and top in ("render", "viewer"):
                    lazy_allowed = rel.parts[1] == "cli" or rel.parts[1].startswith("pipeline")
                    if not (lazy_allowed and use.in_function):
                        problems.append(f"recon may import {top} only inside functions of recon/cli/ "
                                        f"and recon/pipeline*: {use!r}")
                elif pkg in ("render", "viewer") and top in ("render", "viewer"):
                    problems.append(f"{pkg} must not import {top}: {use!r}")
    return problems


def import_graph(root: Path) -> dict[str, set[str]]:
    """Our module -> the modules of ours it imports (anywhere in it), resolved to modules that
    exist (``from a.b import c`` is a.b.c when that is a module, else a.b)."""
    modules = {}
    for pkg in OURS:
        for path in sorted((root / pkg).rglob("*.py")):
            modules[_module_name(path, root)] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree_names = []
        for use in imports_of(path.read_text(encoding="utf-8"), path.relative_to(root), module):
            if use.target.split(".")[0] in OURS:
                tree_names.append(use)
        src = ast.parse(path.read_text(encoding="utf-8"))
        from_names = {}
        for node in ast.walk(src):
            if isinstance(node, ast.ImportFrom):
                from_names.setdefault(node.lineno, []).extend(a.name for a in node.names)
        for use in tree_names:
            targets = [f"{use.target}.{n}" for n in from_names.get(use.lineno, [])] or [use.target]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != module:
                    graph[module].add(t)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys as _sys

    _sys.setrecursionlimit(max(_sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(out)


def test_no_import_cycles():
    cycles = import_cycles(import_graph(ROOT))
    assert cycles == [], "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_check_catches_cycles(tmp_path):
    files = {
        "recon/__init__.py": "",
        "recon/a.py": "from recon.b import f\n",
        "recon/b.py": "def f():\n    from recon import a\n",  # a lazy import still closes the cycle
        "recon/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from recon.d import X\n",
        "recon/d.py": "import recon.c\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    for pkg in ("calib", "render", "viewer"):
        (tmp_path / pkg).mkdir(exist_ok=True)
    assert import_cycles(import_graph(tmp_path)) == [["recon.a", "recon.b"]]


def test_layering_of_our_sources():
    assert layering_violations(ROOT) == []


def test_layering_check_catches_violations(tmp_path):
    """The checker is not vacuous: a tree with one violation of each rule is flagged."""
    files = {
        "calib/__init__.py": "",
        "calib/bad.py": "def f():\n    from recon import scene\n",
        "recon/__init__.py": "from . import scene\n",
        "recon/scene.py": "import calib\n",
        "recon/bad.py": "def f():\n    import render.splat\n",
        "recon/cli/__init__.py": "",
        "recon/cli/verb_ok.py": "def run(args):\n    from viewer import app\n",
        "recon/cli/verb_bad.py": "from viewer import app\n",
        "recon/pipeline_x.py": "def run():\n    import render\n",
        "render/__init__.py": "from recon.io import read_model\n",
        "render/bad.py": "from ..viewer import live\n",
        "viewer/__init__.py": "",
        "viewer/bad.py": "def f():\n    import render\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    problems = "\n".join(layering_violations(tmp_path))
    assert "calib/bad.py:2 imports recon" in problems
    assert "recon/bad.py:2 imports render.splat" in problems
    assert "recon/cli/verb_bad.py:1 imports viewer at module level" in problems
    assert "render/bad.py:1 imports viewer at module level" in problems
    assert "viewer/bad.py:2 imports render in a function" in problems
    assert len(problems.splitlines()) == 5, problems


# ------------------------------------------------------------------------------------------
# Library first: no library package calls the CLI; what render may use of recon
# ------------------------------------------------------------------------------------------

#: The CLI's own modules and the entry point; every other module of ours is library code
#: (recon.pipeline included) and calls library functions, never a verb.
CLI_MODULES = ("recon/cli/", "recon/__main__.py")
#: What render may import of recon: its scene types, file formats, errors, the DepthView of
#: recon.export and the lazy re-export helper (never SfM, matching, pipelines or the CLI).
# recon.cluster.engine: the generic task runner (chunked splatting runs its chunks as tasks);
# never recon.cluster.sfm (SfM internals)
RENDER_MAY_IMPORT = ("recon._lazy", "recon.errors", "recon.io", "recon.scene", "recon.export",
                     "recon.cluster.engine")


def _docstring_nodes(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def cli_uses(root: Path) -> list[str]:
    """Library modules that import recon.cli by name (``import recon.cli``, ``from recon import
    cli``, ``from recon.cli.verb_x import run``) or name it in a string (``importlib.import_module(
    f"recon.cli.verb_{name}")``, ``__import__("recon.cli")``); docstrings may mention it."""
    problems = []
    for pkg in OURS:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root)
            if any(str(rel).startswith(c) for c in CLI_MODULES):
                continue
            source = path.read_text(encoding="utf-8")
            for use in imports_of(source, rel, _module_name(path, root)):
                if use.target == "recon.cli" or use.target.startswith("recon.cli."):
                    problems.append(f"{use!r}: library code must not import the CLI")
            tree = ast.parse(source)
            docs = _docstring_nodes(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module == "recon" and any(
                        a.name == "cli" for a in node.names):
                    problems.append(f"{rel}:{node.lineno} imports recon.cli (from recon import cli)")
                if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                        and ("recon.cli" in node.value or "recon/cli" in node.value)):
                    problems.append(f"{rel}:{node.lineno} names the CLI in a string: {node.value!r}")
    return problems


def render_recon_violations(root: Path) -> list[str]:
    problems = []
    for path in sorted((root / "render").rglob("*.py")):
        rel = path.relative_to(root)
        for use in imports_of(path.read_text(encoding="utf-8"), rel, _module_name(path, root)):
            if use.target.split(".")[0] != "recon":
                continue
            if not any(use.target == m or use.target.startswith(m + ".") for m in RENDER_MAY_IMPORT):
                problems.append(f"render may import only {', '.join(RENDER_MAY_IMPORT)} of recon: {use!r}")
    return problems


def test_no_library_module_uses_the_cli():
    assert cli_uses(ROOT) == []


def test_render_imports_only_what_it_may_of_recon():
    assert render_recon_violations(ROOT) == []


def test_library_first_checks_catch_violations(tmp_path):
    """Each way of reaching the CLI is flagged, and render's imports of recon are checked."""
    files = {
        "recon/__init__.py": "",
        "recon/__main__.py": "from recon.cli import run_cli\n",
        "recon/cli/__init__.py": "",
        "recon/cli/verb_x.py": "def run(args):\n    pass\n",
        "recon/pipeline/a.py": "def f():\n    from recon.cli.verb_x import run\n",
        "recon/pipeline/b.py": "import importlib\ndef f(m):\n    return importlib.import_module(f'recon.cli.verb_{m}')\n",
        "recon/pipeline/c.py": "from recon import cli\n",
        "recon/pipeline/d.py": '"""Called like recon.cli does (a docstring may say so)."""\n',
        "render/__init__.py": "",
        "render/ok.py": "from recon.io import read_model\nfrom recon.export.depth import DepthView\n",
        "render/bad.py": "def f():\n    from recon.sfm.pipeline import run_sfm\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    for pkg in ("calib", "viewer"):
        (tmp_path / pkg).mkdir(exist_ok=True)
    problems = "\n".join(cli_uses(tmp_path))
    assert "recon/pipeline/a.py:2 imports recon.cli.verb_x" in problems
    assert "recon/pipeline/b.py:3 names the CLI in a string" in problems
    assert "recon/pipeline/c.py:1 imports recon.cli" in problems
    assert "d.py" not in problems and "__main__" not in problems and "verb_x.py" not in problems
    render = render_recon_violations(tmp_path)
    assert len(render) == 1 and "render/bad.py:2 imports recon.sfm.pipeline" in render[0]
