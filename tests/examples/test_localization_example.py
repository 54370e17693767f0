"""Smoke test of examples/localization.py (pets classification + box)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.examples.helpers import load_example


def test_help_exits_cleanly(capsys):
    example = load_example("localization")
    with pytest.raises(SystemExit) as exit_info:
        example.main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--smoke" in text and "--box-loss" in text and "--strategy" in text


@pytest.mark.slow  # an XLA-compiled fit, export, serving evaluation
def test_smoke_trains_evaluates_and_exports(tmp_path):
    example = load_example("localization")
    out = ["--smoke", "--output-dir", str(tmp_path)]
    assert example.main(["train", *out, "--box-loss", "l2"]) == 0
    assert example.main(["evaluate", *out]) == 0
    for name in (
        "model.keras",
        "training.json",
        "history.csv",
        "metrics.json",
        "plots/boxes.png",
        "1/saved_model.pb",
    ):
        assert (tmp_path / name).exists(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert 0.0 <= metrics["mean_iou"] <= 1.0
    serve = tf.saved_model.load(str(tmp_path / "1")).signatures[
        "serving_default"
    ]
    served = serve(images=tf.constant(np.zeros((1, 50, 70, 3), np.uint8)))
    assert sorted(served) == ["classes", "detection_boxes", "probabilities"]


def test_evaluate_without_training_says_so(tmp_path):
    example = load_example("localization")
    with pytest.raises(SystemExit, match="train"):
        example.main(["evaluate", "--smoke", "--output-dir", str(tmp_path)])
