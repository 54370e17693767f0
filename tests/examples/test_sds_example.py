"""Tests of examples/sds_digits.py (SDS refinement vs Mask R-CNN masks)."""

import json

import numpy as np
import pytest

from tests.examples.helpers import load_example


def test_help_exits_cleanly(capsys):
    example = load_example("sds_digits")
    for command in ("train", "evaluate"):
        with pytest.raises(SystemExit) as exit_info:
            example.main([command, "--help"])
        assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--box-jitter" in text and "--cascade" in text
    assert "--detector" in text and "--smoke" in text


def test_training_batches_jitter_boxes_and_keep_padding():
    example = load_example("sds_digits")
    from keras_segattn.data import digit_scenes

    scenes = digit_scenes.make_synthetic_digit_scenes(
        4, image_size=32, max_digits=3, scale_range=(0.8, 1.0)
    )
    boxes = example.xyxy(scenes["boxes"])
    padding = scenes["classes"] < 0
    assert padding.any()
    np.testing.assert_array_equal(boxes[padding], -1.0)
    np.testing.assert_array_equal(boxes[..., 0], scenes["boxes"][..., 1])
    exact = example.refiner_dataset(scenes, 4, cascade=True)
    x, y = next(iter(exact))
    np.testing.assert_array_equal(x["boxes"], boxes)
    assert set(y) == {"masks", "classes"}
    assert y["masks"].shape == (4, 3, 32, 32)
    jittered = example.refiner_dataset(scenes, 4, cascade=False, jitter=0.1)
    x, y = next(iter(jittered))
    moved = np.asarray(x["boxes"])
    assert set(y) == {"masks"}
    # The batch is shuffled: compare as sets of padding rows per scene.
    assert (moved == -1).all(-1).sum() == padding.sum()
    real = ~(moved == -1).all(-1)
    assert np.all((moved[real] >= 0) & (moved[real] <= 32))
    assert not np.allclose(
        np.sort(moved[real].ravel()), np.sort(boxes[~padding].ravel())
    )


@pytest.mark.slow  # an XLA-compiled training step, a detector, COCO eval
def test_smoke_trains_and_evaluates(tmp_path):
    example = load_example("sds_digits")
    out = ["--smoke", "--output-dir", str(tmp_path)]
    assert example.main(["train", *out, "--cascade"]) == 0
    assert example.main(["evaluate", *out]) == 0
    for name in (
        "model.keras",
        "training.json",
        "history.csv",
        "metrics.json",
        "table.md",
        "plots/masks.png",
        "1/saved_model.pb",
    ):
        assert (tmp_path / name).exists(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    rows = {(r["boxes"], r["masks"]) for r in metrics["rows"]}
    assert rows == {
        ("detector", "Mask R-CNN"),
        ("detector", "SDS"),
        ("detector", "SDS + MNC class cascade"),
        ("ground truth", "Mask R-CNN"),
        ("ground truth", "SDS"),
    }
    for row in metrics["rows"]:
        assert -1.0 <= row["mask_AP"] <= 1.0
    training = json.loads((tmp_path / "training.json").read_text())
    assert training["jit_compile"] is True and training["cascade"] is True
