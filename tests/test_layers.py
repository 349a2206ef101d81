"""The package layers hold: each library package imports only the ones below it.

medprobe (shared) <- cache <- probe <- suite, and medprobe <- finetune <- suite; probe and
finetune never import each other. Every import counts, including those inside functions (the
CLIs import heavy modules there). `__main__.py` files are entry points, not library: `python -m
probe` runs the whole `probe` program, suite included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "medprobe": set(),
    "cache": {"medprobe"},
    "probe": {"medprobe", "cache"},
    "finetune": {"medprobe"},
    "suite": {"medprobe", "cache", "probe", "finetune"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of the first-party packages a module imports, anywhere in its body."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(ALLOWED)


# The Python API: a facade over every layer, which no module of the library imports.
FACADE = ROOT / "medprobe" / "api.py"


@pytest.mark.parametrize("package", list(ALLOWED))
def test_packages_import_only_the_layers_below_them(package):
    modules = [
        p for p in sorted((ROOT / package).rglob("*.py")) if p.name != "__main__.py" and p != FACADE
    ]
    assert modules, f"{package}/ has no modules"
    crossings = {
        str(p.relative_to(ROOT)): sorted(imported_packages(p) - ALLOWED[package] - {package})
        for p in modules
    }
    assert {m: bad for m, bad in crossings.items() if bad} == {}


def test_the_walk_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import os\n\ndef f():\n    from probe.run import run_probe\n    import suite.cli\n"
    )
    assert imported_packages(module) == {"probe", "suite"}


# Inside the shared layer: what each part of medprobe may import besides the base modules.
BASE = {"errors", "atomic", "progress"}
MEDPROBE_PARTS = {
    "errors": set(),
    "progress": set(),
    "atomic": {"errors"},
    "data": BASE,
    "backbones": BASE | {"data"},
    "device": BASE | {"backbones"},
    "metrics": BASE | {"data"},
    "outputs": BASE | {"data"},
    "results": BASE | {"metrics"},
    "tracking": BASE | {"metrics"},
    "references": BASE | {"data"},
    "report": BASE | {"data", "metrics", "results", "references"},
    "api": BASE | {"data", "metrics", "results", "references"},
    "cli": BASE | {"data", "backbones", "results"},
}


def medprobe_parts_imported(path: Path) -> set[str]:
    """The parts of medprobe (`data`, `report`, `errors`, ...) a module imports, anywhere."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "medprobe":
            names |= {alias.name for alias in node.names} - {"__version__"}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and str(node.module).startswith("medprobe.")
        ):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("medprobe.")}
    return names


def test_medprobe_parts_import_only_the_parts_below_them():
    crossings = {}
    for path in sorted((ROOT / "medprobe").rglob("*.py")):
        relative = path.relative_to(ROOT / "medprobe")
        if relative == Path("__init__.py"):
            continue
        part = relative.parts[0].removesuffix(".py")
        assert part in MEDPROBE_PARTS, (
            f"medprobe/{relative}: a new part; place it in MEDPROBE_PARTS"
        )
        bad = medprobe_parts_imported(path) - MEDPROBE_PARTS[part] - {part}
        if bad:
            crossings[str(relative)] = sorted(bad)
    assert crossings == {}


def test_nothing_in_the_library_imports_the_facade():
    importers = [
        str(p.relative_to(ROOT))
        for package in ALLOWED
        for p in sorted((ROOT / package).rglob("*.py"))
        if p != FACADE and "medprobe.api" in imported_modules(p)
    ]
    assert importers == []


def imported_modules(path: Path) -> set[str]:
    """Full names of the modules a file imports (`from a.b import c` counts as `a.b`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


def test_main_modules_import_only_the_assembled_programs():
    mains = sorted(ROOT.glob("*/__main__.py"))
    assert {m.parent.name for m in mains} >= {"probe", "finetune"}
    assert {str(m.relative_to(ROOT)): imported_modules(m) for m in mains} == {
        str(m.relative_to(ROOT)): {"suite.programs"} for m in mains
    }


def test_every_source_folder_is_a_regular_package():
    """Every source folder is a regular package (it has an __init__.py).

    A folder of modules without one imports as a namespace package here and breaks elsewhere (an
    ignore rule once kept medprobe/report/__init__.py out of the repository).
    """
    folders = {p.parent for package in ALLOWED for p in (ROOT / package).rglob("*.py")}
    assert (
        sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file()) == []
    )
