"""Smoke test of examples/yolo_digits.py (YOLO v1 on digit scenes)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.examples.helpers import load_example


def test_help_exits_cleanly(capsys):
    example = load_example("yolo_digits")
    with pytest.raises(SystemExit) as exit_info:
        example.main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--smoke" in text and "--num-train" in text


def test_full_model_is_the_documented_one():
    example = load_example("yolo_digits")
    model = example.YOLO(10, **example.model_kwargs(128, smoke=False))
    assert model.grid_size == (8, 8) and model.boxes_per_cell == 2
    assert model.lambda_coord == 5.0 and model.lambda_noobj == 0.5


@pytest.mark.slow  # an XLA-compiled step, export, COCO eval
def test_smoke_trains_evaluates_and_exports(tmp_path):
    example = load_example("yolo_digits")
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
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["box"]["AP50"] <= 1.0
    assert metrics["test_instances"] > 0
    reloaded = tf.saved_model.load(str(tmp_path / "1"))
    images = np.zeros((2, 64, 64, 3), np.uint8)
    served = reloaded.signatures["serving_default"](images=tf.constant(images))
    assert sorted(served) == [
        "detection_boxes",
        "detection_classes",
        "detection_scores",
        "num_detections",
    ]
    assert "serving_image_bytes" in reloaded.signatures


def test_evaluate_without_training_says_so(tmp_path):
    example = load_example("yolo_digits")
    with pytest.raises(SystemExit, match="run `train` first"):
        example.main(["evaluate", "--smoke", "--output-dir", str(tmp_path)])


def test_augment_flag():
    example = load_example("yolo_digits")
    parse = example.build_parser().parse_args
    assert example.augmentation_name(parse(["train", "--smoke"])) == "none"
    args = parse(["train", "--augment", "scale-crop"])
    assert example.augmentation_name(args) == "scale-crop"
    augment = example.make_detection_augmenter(args.augment, seed=0)
    assert augment.flip is False and augment.bounding_box_format == "yxyx"
