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
    assert "--smoke" in text and "--num-train" in text and "--fpn" in text


def test_fpn_flag_selects_the_pyramid_model():
    # The full `train --smoke --fpn` run (about a minute, an XLA compile)
    # is too slow for the suite; this checks the flag's wiring.
    example = load_example("instance_segmentation")
    args = example.build_parser().parse_args(["train", "--smoke", "--fpn"])
    assert args.fpn is True
    kwargs = example.model_kwargs(64, smoke=True, fpn=args.fpn)
    assert kwargs["fpn"] is True and "anchor_sizes" not in kwargs
    plain = example.model_kwargs(64, smoke=True)
    assert "fpn" not in plain and plain["anchor_sizes"] == (8.0, 16.0)
    model = example.FasterRCNN(10, **kwargs)
    assert model.get_layer("feature_pyramid").filters == 8
    assert len(model.anchor_sizes) == 5  # P2-P6


ARCHITECTURE = "same --fpn, --image-size and class count"


def test_init_from_copies_every_weight_of_the_same_architecture(tmp_path):
    example = load_example("instance_segmentation")
    source = example.FasterRCNN(10, **example.model_kwargs(64, smoke=True))
    path = tmp_path / "source.keras"
    source.save(path)
    target = example.FasterRCNN(
        10, seed=1, **example.model_kwargs(64, smoke=True)
    )
    example.load_initial_weights(target, str(path), ARCHITECTURE)
    for a, b in zip(source.get_weights(), target.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    pyramid = example.FasterRCNN(
        10, **example.model_kwargs(64, smoke=True, fpn=True)
    )
    with pytest.raises(ValueError, match="--init-from"):
        example.load_initial_weights(pyramid, str(path), ARCHITECTURE)
    with pytest.raises(ValueError, match="no_such_model"):
        example.load_initial_weights(pyramid, "no_such_model", ARCHITECTURE)


def test_augment_flag_and_the_training_batches():
    example = load_example("instance_segmentation")
    parse = example.build_parser().parse_args
    resolved = [
        example.augmentation_name(parse(["train", *flags]))
        for flags in (
            ["--smoke"],
            ["--dataset", "coco"],
            ["--augment", "scale-crop"],
        )
    ]
    assert resolved == ["none", "flip-scale-crop", "scale-crop"]
    # The augmenter keeps the scene batches' structure, shapes and dtypes
    # (what `train` maps over them; the coco smoke run below fits on them).
    scenes = example.digit_scenes.make_synthetic_digit_scenes(
        2, image_size=32, max_digits=2, scale_range=(0.8, 1.0)
    )
    batches = example.digit_scenes.make_digit_scene_dataset(scenes, 2)
    augment = example.make_detection_augmenter("flip-scale-crop", seed=0)
    plain, augmented = next(iter(batches)), next(iter(batches.map(augment)))
    assert tf.nest.map_structure(
        lambda x: (x.shape, x.dtype), plain
    ) == tf.nest.map_structure(lambda x: (x.shape, x.dtype), augmented)


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
