"""Smoke tests of examples/stn_cluttered_mnist.py and stn_mnist_addition.py."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.examples.helpers import load_example


@pytest.mark.parametrize("name", ["stn_cluttered_mnist", "stn_mnist_addition"])
def test_help_exits_cleanly(name, capsys):
    example = load_example(name)
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--jit-compile" in text and "--smoke" in text


@pytest.mark.slow  # two XLA-compiled models and a SavedModel: ~25 s
def test_cluttered_mnist_smoke_trains_both_and_exports(tmp_path):
    example = load_example("stn_cluttered_mnist")
    assert example.main(["--smoke", "--output-dir", str(tmp_path)]) == 0
    for name in (
        "metrics.json",
        "history_cnn.csv",
        "history_st_cnn.csv",
        "cnn.keras",
        "st_cnn.keras",
        "plots/transformed.png",
        "serving/1/saved_model.pb",
        "serving/1/assets.extra/tf_serving_warmup_requests",
    ):
        assert (tmp_path / name).exists(), name
    assert any((tmp_path / "logs" / "st_cnn").rglob("events.out.tfevents.*"))
    summary = json.loads((tmp_path / "metrics.json").read_text())
    for model in ("cnn", "st_cnn"):
        assert 0.0 <= summary[model]["test_error"] <= 1.0
    reloaded = tf.saved_model.load(str(tmp_path / "serving" / "1"))
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 1))
    out = reloaded.signatures["serving_default"](
        images=tf.constant(images, tf.uint8)
    )
    assert sorted(out) == [
        "classes",
        "probabilities",
        "theta",
        "transformed_images",
    ]
    assert out["probabilities"].shape == (3, 10)
    assert out["classes"].dtype == tf.int32
    assert out["transformed_images"].shape == (3, 24, 24, 1)
    assert out["theta"].shape == (3, 6)
    floats = reloaded.signatures["serving_float32"](
        images=tf.constant(images, tf.float32)
    )
    np.testing.assert_allclose(
        floats["probabilities"].numpy(), out["probabilities"].numpy(), atol=1e-6
    )
    empty = reloaded.signatures["serving_default"](
        images=tf.zeros((0, 40, 40, 1), tf.uint8)
    )
    assert empty["theta"].shape == (0, 6)


def test_mnist_addition_smoke(tmp_path):
    example = load_example("stn_mnist_addition")
    argv = ["--smoke", "--no-jit-compile", "--output-dir", str(tmp_path)]
    assert example.main(argv) == 0
    for name in (
        "metrics.json",
        "history.csv",
        "st_addition.keras",
        "plots/attention.png",
    ):
        assert (tmp_path / name).exists(), name
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["jit_compile"] is False
