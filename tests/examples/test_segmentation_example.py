import json
import re

import pytest

from tests.examples.helpers import ROOT
from tests.examples.helpers import load_example


@pytest.fixture(scope="module")
def segmentation():
    return load_example("segmentation")


@pytest.fixture(scope="module")
def trained(segmentation, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg")
    assert (
        segmentation.main(["train", "--smoke", "--output-dir", str(out)]) == 0
    )
    return out


def test_help_exits_cleanly(segmentation, capsys):
    with pytest.raises(SystemExit) as exit_info:
        segmentation.main(["train", "--help"])
    assert exit_info.value.code == 0
    assert "--jit-compile" in capsys.readouterr().out


def test_train_smoke_writes_artefacts(trained):
    for name in (
        "model.keras",
        "history.csv",
        "metrics.json",
        "plots/predictions.png",
        "serving/1/saved_model.pb",
    ):
        assert (trained / name).exists(), name
    assert any((trained / "logs").rglob("events.out.tfevents.*"))
    summary = json.loads((trained / "metrics.json").read_text())
    assert 0.0 <= summary["val_mean_iou"] <= 1.0


def test_evaluate_exported_model_on_embedded_pets(
    segmentation, trained, capsys
):
    # The smoke model has 3 classes, like the pets trimaps: score its
    # SavedModel on the embedded real sample at native resolution.
    assert (
        segmentation.main(
            [
                "evaluate",
                "--dataset",
                "pets",
                "--data-dir",
                str(ROOT / "sample_data" / "oxford_pets"),
                "--saved-model",
                str(trained / "serving" / "1"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    value = float(re.search(r"mean IoU: ([0-9.]+)", printed).group(1))
    assert 0.0 <= value <= 1.0


def test_deconvnet_smoke_with_median_frequency_weights(
    segmentation, tmp_path, capsys
):
    assert (
        segmentation.main(
            [
                "train",
                "--smoke",
                "--dataset",
                "camvid",
                "--model",
                "deconvnet",
                "--class-weights",
                "median-frequency",
                "--output-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert (tmp_path / "serving" / "1" / "saved_model.pb").exists()
    printed = capsys.readouterr().out
    assert "median frequency class weights: sky " in printed


def test_bad_image_size_is_rejected(segmentation):
    with pytest.raises(SystemExit) as exit_info:
        segmentation.main(["train", "--image-size", "0x4"])
    assert exit_info.value.code == 2


def test_confusion_and_mean_iou_against_hand_counts(segmentation):
    import numpy as np

    truth = np.array([0, 0, 1, 1, 2, 5])  # 5 is outside the classes: dropped
    pred = np.array([0, 1, 1, 1, 0, 0])
    confusion = segmentation.confusion_matrix(truth, pred, 3)
    np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    miou, iou = segmentation.mean_iou(confusion)
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 0.0])
    assert miou == pytest.approx(1 / 3)


def test_backbone_and_filters_flags_build_the_model(segmentation):
    parser = segmentation.build_parser()
    spec = segmentation.DATASETS["pets"]
    args = parser.parse_args(
        ["train", "--backbone", "resnet_small", "--filters", "4,4,8,8,8"]
    )
    model = segmentation._model(args, spec)
    backbone = model.get_layer("backbone")
    assert backbone.get_layer("stage5_out").output.shape[-1] == 8
    assert "stage1_block2_add" in [layer.name for layer in backbone.layers]
    args = parser.parse_args(
        ["train", "--model", "deconvnet", "--filters", "4,4,8,8"]
    )
    widths = [
        layer.filters
        for layer in segmentation._model(args, spec).layers
        if layer.name.endswith("_conv1") and layer.name.startswith("encoder")
    ]
    assert widths == [4, 4, 8, 8]
    for argv, match in (
        (["--filters", "4,x"], "Received: --filters 4,x"),
        (["--model", "deconvnet", "--backbone", "resnet_small"], "--backbone"),
    ):
        with pytest.raises(ValueError, match=match):
            segmentation._model(parser.parse_args(["train", *argv]), spec)


def test_init_from_fine_tunes_at_another_size(segmentation, trained, tmp_path):
    # The smoke model (trained at 32x32) continues at 48x48: a fully
    # convolutional model's weights do not depend on the input size.
    out = tmp_path / "tuned"
    argv = ["train", "--smoke", "--image-size", "48", "--output-dir", str(out)]
    source = str(trained / "model.keras")
    assert segmentation.main([*argv, "--init-from", source]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["init_from"] == source and summary["image_size"] == [48, 48]
    with pytest.raises(ValueError, match=re.escape("--init-from " + source)):
        segmentation.main([*argv, "--model", "fcn32s", "--init-from", source])


def test_bad_test_time_scales_fail_before_training(segmentation, tmp_path):
    argv = ["train", "--smoke", "--output-dir", str(tmp_path / "x")]
    with pytest.raises(ValueError, match=re.escape("--test-time-scales")):
        segmentation.main([*argv, "--test-time-scales", "1", "0"])
    assert not (tmp_path / "x").exists()
