"""The Python API (`medprobe.api`): the commands as functions, and the README's example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from medprobe import api
from tests.support import BREASTMNIST, DINOV2_WEIGHTS, SHARED, needs_shared

ROOT = Path(__file__).resolve().parents[2]
TINY = {"pretrained": False, "img_size": 32}


def test_extract_fit_finetune_and_a_frame_of_the_results(data_root, tmp_path):
    where = {"data_root": data_root, "cache_root": tmp_path / "cache"}
    entry = api.extract("timm:test_vit", "breastmnist", **where, **TINY)
    assert entry.suffix == ".h5" and entry.exists()
    runs = api.fit(
        "breastmnist", backbone="timm:test_vit", heads=("logreg", "knn"), bootstrap=0,
        out=tmp_path / "runs", **where, **TINY,
    )  # fmt: skip
    assert {r.method for r in runs} == {"logreg", "knn"}
    trained = api.finetune(
        "breastmnist", backbone="timm:test_resnet", pretrained=False, img_size=32, epochs=1,
        batch_size=16, precision="fp32", augment="none", data_root=str(data_root),
        out=str(tmp_path / "runs"),
    )  # fmt: skip
    assert trained.method == "scratch"
    table = api.load_results(tmp_path / "runs").to_frame()
    assert len(table) == 3 and {"test_acc", "test_auc", "val_acc", "method"} <= set(table.columns)
    assert sorted(table["method"]) == ["knn", "logreg", "scratch"]


def test_an_unknown_option_is_refused_with_the_valid_names():
    with pytest.raises(TypeError, match="unknown option 'head' for fit; valid: .*heads"):
        api.fit("breastmnist", backbone="vit_tiny", head="logreg")
    with pytest.raises(TypeError, match="unknown option 'epoch' for finetune; valid: .*epochs"):
        api.finetune("breastmnist", backbone="resnet18", epoch=3)


@pytest.mark.slow
@pytest.mark.real
@needs_shared(BREASTMNIST)
@needs_shared(DINOV2_WEIGHTS)
def test_the_readme_example_runs_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    # the README's paths are relative to the repository; the example runs in a fresh folder
    code = code.replace('"../shared', f'"{SHARED}')
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**__import__("os").environ, "MEDPROBE_CACHE": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test_acc" in done.stdout and "dinov2_small" in done.stdout
    assert "zero-padded" in done.stdout
