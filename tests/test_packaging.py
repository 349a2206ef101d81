"""The wheel: what it installs, and that its packaged recipe runs from outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import make_npz

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
        str(ROOT),
    ]
    subprocess.run(build, check=True, capture_output=True)
    [built] = out.glob("medprobe-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_holds_the_packages_recipes_license_and_types(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("medprobe-")}
    assert tops == {"medprobe", "cache", "probe", "finetune", "suite"}  # no top-level `core`
    assert {
        "suite/recipes/tiny.toml",
        "suite/recipes/lpft_breastmnist.toml",
        "medprobe/py.typed",
    } <= set(names)
    meta = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: MIT" in text and "Classifier: Typing :: Typed" in text
    # tests' and benchmarks' only
    assert "Requires-Dist: scikit-learn" not in text.split("Provides-Extra")[0]
    assert any(n.endswith("licenses/LICENSE") for n in names)


@pytest.mark.slow
def test_the_installed_wheel_runs_the_packaged_tiny_recipe_outside_the_repo(wheel, tmp_path):
    site = tmp_path / "site"
    install = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--target",
        str(site),
        str(wheel),
    ]
    subprocess.run(install, check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    make_npz(work / "data" / "bloodmnist.npz", channels=3, n_classes=8, n=(40, 16, 16))
    env = os.environ | {"PYTHONPATH": str(site), "MEDPROBE_CACHE": str(work / "cache")}
    suite = ["suite", "tiny", "--data-root", "data", "--out", "runs", "--report", "report"]
    done = subprocess.run(
        [sys.executable, "-m", "probe", *suite],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / "report" / "report.html").is_file() and len(
        list((work / "runs").glob("*.json"))
    ) == 3
    where = subprocess.run(
        [sys.executable, "-c", "import suite; print(suite.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(site))  # the wheel's copy ran, not the repository's
