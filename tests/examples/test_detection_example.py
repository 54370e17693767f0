"""Smoke test of examples/instance_segmentation.py (Mask R-CNN on digits)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.examples.helpers import ROOT
from tests.examples.helpers import load_example


def test_help_exits_cleanly(capsys):
    example = load_example("instance_segmentation")
    with pytest.raises(SystemExit) as exit_info:
        example.main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--smoke" in text and "--num-train" in text


@pytest.mark.slow  # an XLA-compiled Mask R-CNN step, export, COCO eval
def test_smoke_trains_evaluates_and_exports(tmp_path):
    example = load_example("instance_segmentation")
    out = ["--smoke", "--output-dir", str(tmp_path)]
    assert example.main(["train", *out]) == 0
    assert example.main(["evaluate", *out]) == 0
    for name in (
        "model.keras",
        "training.json",
        "history.csv",
        "metrics.json",
        "plots/detections.png",
        "1/saved_model.pb",
        "1/assets.extra/tf_serving_warmup_requests",
    ):
        assert (tmp_path / name).exists(), name
    assert any((tmp_path / "logs").rglob("events.out.tfevents.*"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for kind in ("box", "mask"):
        assert 0.0 <= metrics[kind]["AP50"] <= 1.0
    assert metrics["test_instances"] > 0
    reloaded = tf.saved_model.load(str(tmp_path / "1"))
    images = np.zeros((2, 64, 64, 3), np.uint8)
    served = reloaded.signatures["serving_default"](images=tf.constant(images))
    assert sorted(served) == [
        "detection_boxes",
        "detection_classes",
        "detection_masks",
        "detection_scores",
        "num_detections",
    ]
    assert served["detection_masks"].shape[2:] == (64, 64)


def test_evaluate_without_training_says_so(tmp_path):
    example = load_example("instance_segmentation")
    with pytest.raises(SystemExit, match="run `train` first"):
        example.main(["evaluate", "--smoke", "--output-dir", str(tmp_path)])


@pytest.mark.slow  # the COCO-format loader through training and AP
def test_smoke_on_the_embedded_coco_sample(tmp_path):
    example = load_example("instance_segmentation")
    sample = ROOT / "sample_data" / "coco_mini"
    out = [
        "--smoke",
        "--dataset",
        "coco",
        "--data-dir",
        str(sample),
        "--output-dir",
        str(tmp_path),
    ]
    assert example.main(["train", *out]) == 0
    assert example.main(["evaluate", *out]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["training"]["dataset"] == "coco"
    assert metrics["test_instances"] > 0
    assert (tmp_path / "plots" / "detections.png").is_file()
