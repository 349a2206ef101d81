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


@pytest.mark.parametrize("package", list(ALLOWED))
def test_packages_import_only_the_layers_below_them(package):
    modules = [p for p in sorted((ROOT / package).rglob("*.py")) if p.name != "__main__.py"]
    assert modules, f"{package}/ has no modules"
    crossings = {
        str(p.relative_to(ROOT)): sorted(imported_packages(p) - ALLOWED[package] - {package}) for p in modules
    }
    assert {m: bad for m, bad in crossings.items() if bad} == {}


def test_the_walk_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from probe.fit import run_probe\n    import suite.cli\n")
    assert imported_packages(module) == {"probe", "suite"}
