"""The published references: every cell sourced and parsed, the closest one found, the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from medprobe.data import FLAGS_2D
from medprobe.references import RunProtocol, closest, load_references, protocol_note
from medprobe.references.registry import _parse, _sources
from probe.cli import main as probe_main


def test_every_cell_has_its_source_protocol_and_a_parsed_value():
    references = load_references()
    # every 2D dataset x (10 models end to end + 10 linear probes + 10 k-NN) x 4 sizes
    assert len(references) == len(FLAGS_2D) * 30 * 4
    assert {r.dataset for r in references} == set(FLAGS_2D)
    for r in references:
        assert r.source.commit and len(r.source.commit) == 40
        assert r.source.url(r.dataset).endswith(f"/benchmark_results_{r.dataset}.png")
        assert r.scheme.training and r.source.input and r.source.metrics and r.source.doi
        assert r.timm_id  # the paper's model is a timm model
        assert r.acc is not None and 0 < r.acc[0] <= 1
        if r.scheme.name == "knn":  # one deterministic value, no AUC
            assert r.auc is None and r.acc[1] is None
        else:
            assert r.auc is not None and r.acc[1] is not None and r.auc[1] is not None


def test_cells_read_as_the_source_prints_them():
    """Spot checks against the authors' tables (assets/benchmark_results_*.png)."""
    [dino] = [
        r
        for r in load_references("breastmnist", 224)
        if r.model == "DINO ViT-B/16" and r.scheme.name == "linear probing"
    ]
    assert dino.acc == (0.8868, 0.0109) and dino.auc == (0.9343, 0.0082)
    [sam] = [
        r
        for r in load_references("pneumoniamnist", 64)
        if r.model == "SAM ViT-B/16" and r.scheme.name == "linear probing"
    ]
    assert sam.acc == (0.625, 0.0)  # the test set's class prior: a collapsed probe
    [knn] = [
        r
        for r in load_references("retinamnist", 224)
        if r.model == "DINO ViT-B/16" and r.scheme.name == "knn"
    ]
    assert knn.acc == (0.59, None)
    [chest] = [
        r
        for r in load_references("chestmnist", 224)
        if r.model == "DenseNet-121" and r.scheme.name == "end-to-end"
    ]
    assert chest.acc == (0.9484, 0.0003) and chest.auc == (0.8222, 0.0014)


@pytest.mark.parametrize(
    "line, message",
    [
        ("breastmnist,end-to-end,VGG17,acc,1,2,3,4", "unknown model 'VGG17'"),
        ("breastmnist,scratch,VGG16,acc,1,2,3,4", "unknown scheme 'scratch'"),
        ("breastmnist,end-to-end,VGG16,f1,1,2,3,4", "unknown metric 'f1'"),
        ("nomnist,end-to-end,VGG16,acc,1,2,3,4", "unknown dataset 'nomnist'"),
        ("breastmnist,end-to-end,VGG16,acc,101,2,3,4", "'101' is not a percentage"),
    ],
)
def test_a_bad_line_is_refused_naming_it(line, message):
    text = "dataset,scheme,model,metric,28,64,128,224\n" + line
    with pytest.raises(ValueError, match=f"medmnist_plus.csv line 2: {message}"):
        _parse(_sources()["medmnist_plus"], text)


def _run(model, model_id, method, *, input="bicubic to 224 px", seeds=1):
    return RunProtocol(model=model, model_id=model_id, method=method, input=input, seeds=seeds)


def test_the_closest_reference_matches_scheme_then_model():
    refs = load_references("breastmnist", 28)
    dinov2 = _run("dinov2_small", "vit_small_patch14_dinov2.lvd142m", "logreg")
    found = closest(refs, dinov2)
    assert (found.model, found.scheme.name) == ("DINO ViT-B/16", "linear probing")
    assert protocol_note(found, dinov2) == (
        "zero-padded to 224 px, DINO ViT-B/16, linear probe, 3 seeds; "
        "this run: bicubic to 224 px, dinov2_small, logreg, 1 seed"
    )
    knn = closest(refs, _run("vit_tiny", "vit_tiny_patch16_224", "knn"))
    assert (knn.model, knn.scheme.name) == ("ViT-B/16", "knn")
    scratch = _run("resnet18", "resnet18", "scratch", input="zero-padded to 224 px", seeds=3)
    found = closest(refs, scratch)
    assert (found.model, found.scheme.name) == ("ResNet-18", "end-to-end")
    assert protocol_note(found, scratch) == ("ImageNet-pretrained; this run: from scratch")
    exact = _run("timm:vit_base_patch16_224.dino", "vit_base_patch16_224.dino", "linear")
    assert closest(refs, exact).model == "DINO ViT-B/16"
    assert closest(refs, _run("timm:convnext_tiny", "convnext_tiny", "logreg")) is None


def test_probe_references_lists_them_with_their_source():
    runner = CliRunner()
    done = runner.invoke(probe_main, ["references", "breastmnist", "--size", "28", "--json"])
    assert done.exit_code == 0, done.output
    rows = json.loads(done.output)
    assert len(rows) == 30 and all(r["url"].startswith("https://github.com/") for r in rows)
    assert all("zero-padded" in r["protocol"] for r in rows)
    text = runner.invoke(probe_main, ["references", "breastmnist"]).output
    assert "DINO ViT-B/16" in text and "source: https://github.com/sdoerrich97/" in text
    typo = runner.invoke(probe_main, ["references", "breastmnst"])
    assert typo.exit_code != 0 and "unknown dataset 'breastmnst'" in typo.output


# The authors' own average over the 12 datasets (assets/benchmark_results_average.png, same
# commit), typed from that table: the mean of the 12 transcribed tables must reproduce it to its
# rounding, which catches a mistyped cell anywhere (one cell off by 0.13 moves an average by 0.01).
AVERAGE = {
    ("end-to-end", "VGG16"): (82.34, 85.33, 86.64, 86.70, 92.66, 94.24, 95.16, 95.30),
    ("end-to-end", "AlexNet"): (78.92, 82.94, 85.04, 85.74, 91.14, 92.72, 94.29, 94.90),
    ("end-to-end", "ResNet-18"): (79.66, 83.42, 85.73, 86.22, 90.92, 92.49, 93.91, 94.51),
    ("end-to-end", "DenseNet-121"): (80.32, 84.62, 87.13, 87.11, 91.75, 93.59, 94.57, 95.03),
    ("end-to-end", "EfficientNet-B4"): (73.18, 79.37, 82.52, 82.44, 87.04, 90.07, 91.89, 91.64),
    ("end-to-end", "ViT-B/16"): (78.23, 83.17, 84.94, 86.06, 90.54, 92.53, 93.25, 94.08),
    ("end-to-end", "CLIP ViT-B/16"): (76.73, 80.39, 82.33, 82.75, 89.22, 90.91, 91.51, 91.83),
    ("end-to-end", "EVA-02 ViT-B/16"): (76.69, 80.77, 82.76, 84.72, 88.91, 90.53, 91.59, 92.60),
    ("end-to-end", "DINO ViT-B/16"): (78.51, 82.13, 84.31, 84.84, 91.02, 91.94, 92.91, 93.90),
    ("end-to-end", "SAM ViT-B/16"): (78.26, 82.13, 84.19, 84.30, 89.36, 90.79, 91.94, 91.91),
    ("linear probing", "VGG16"): (71.18, 75.14, 78.58, 79.62, 87.70, 89.55, 91.94, 92.47),
    ("linear probing", "AlexNet"): (69.63, 76.11, 79.08, 81.02, 85.91, 89.06, 91.78, 93.18),
    ("linear probing", "ResNet-18"): (64.41, 70.49, 74.94, 76.89, 82.95, 85.24, 87.97, 90.37),
    ("linear probing", "DenseNet-121"): (72.10, 78.01, 80.77, 82.22, 86.76, 90.11, 92.00, 93.02),
    ("linear probing", "EfficientNet-B4"): (67.29, 73.95, 76.39, 77.91, 83.67, 86.48, 88.49, 89.57),
    ("linear probing", "ViT-B/16"): (73.21, 79.62, 83.08, 84.01, 88.25, 91.33, 93.57, 94.31),
    ("linear probing", "CLIP ViT-B/16"): (74.17, 78.67, 81.54, 82.24, 88.66, 91.48, 93.28, 93.66),
    ("linear probing", "EVA-02 ViT-B/16"): (73.04, 76.50, 78.48, 79.30, 88.41, 90.66, 92.04, 92.41),
    ("linear probing", "DINO ViT-B/16"): (78.23, 82.74, 84.46, 85.11, 90.94, 93.29, 94.50, 94.99),
    ("linear probing", "SAM ViT-B/16"): (43.69, 48.10, 54.14, 61.20, 66.51, 74.68, 80.46, 81.75),
    ("knn", "VGG16"): (66.07, 70.65, 72.26, 73.78),
    ("knn", "AlexNet"): (67.47, 72.14, 74.56, 76.22),
    ("knn", "ResNet-18"): (66.98, 71.42, 74.20, 76.60),
    ("knn", "DenseNet-121"): (67.12, 71.29, 74.97, 76.97),
    ("knn", "EfficientNet-B4"): (68.15, 72.45, 73.91, 74.17),
    ("knn", "ViT-B/16"): (65.92, 70.90, 75.45, 77.51),
    ("knn", "CLIP ViT-B/16"): (66.40, 71.61, 74.83, 75.52),
    ("knn", "EVA-02 ViT-B/16"): (69.63, 72.64, 74.64, 75.52),
    ("knn", "DINO ViT-B/16"): (73.61, 79.41, 81.17, 81.90),
    ("knn", "SAM ViT-B/16"): (65.05, 70.40, 71.58, 71.95),
}


def test_the_transcribed_tables_average_to_the_authors_average_table():
    references = load_references()
    off = {}
    for (scheme, model), published in AVERAGE.items():
        mine = [r for r in references if (r.scheme.name, r.model) == (scheme, model)]
        for i, size in enumerate((28, 64, 128, 224)):
            at = [r for r in mine if r.size == size]
            assert len(at) == 12
            metrics = [("acc", published[i])] + (
                [("auc", published[4 + i])] if len(published) == 8 else []
            )
            for metric, value in metrics:
                mean = 100 * sum(getattr(r, metric)[0] for r in at) / len(at)
                if abs(mean - value) > 0.011:  # both roundings, at most 0.005 + 0.005
                    off[scheme, model, size, metric] = (round(mean, 3), value)
    assert off == {}
