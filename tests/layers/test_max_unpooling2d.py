"""Tests for `keras_segattn.layers.MaxUnpooling2D` (and a SegNet-like model)."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.layers import MaxPoolingWithArgmax2D
from keras_segattn.layers import MaxUnpooling2D
from tests.references import np_max_unpool
from tests.testing import run_layer_checks


def test_layer_checks(tmp_path):
    rng = np.random.default_rng(0)
    inputs = {
        "inputs": rng.normal(size=(2, 3, 2, 3)).astype("float32"),
        "indices": rng.integers(0, 6, size=(2, 3, 2, 3)).astype("int32"),
    }
    run_layer_checks(
        MaxUnpooling2D,
        {"pool_size": (2, 3)},
        inputs,
        tmp_path=tmp_path,
        expected_output_shape=(2, 6, 6, 3),
        expected_num_trainable_weights=0,
        reference_fn=lambda layer, inputs: np_max_unpool(
            inputs["inputs"], inputs["indices"], layer.pool_size
        ),
        atol=0.0,
        bad_init_kwargs=[
            ({"pool_size": 0}, ValueError, re.escape("Received: pool_size=0.")),
            ({"pool_size": (1, 0)}, ValueError, re.escape("pool_size=(1, 0)")),
            ({"pool_size": 2.0}, ValueError, "`pool_size`"),
        ],
        bad_call_inputs=[
            (
                {"inputs": (2, 3, 2), "indices": ((2, 3, 2), "int32")},
                ValueError,
                "Invalid rank for argument `inputs`",
            ),
            (
                {"inputs": (2, 3, 2, 3), "indices": ((2, 3, 2), "int32")},
                ValueError,
                "Invalid rank for argument `indices`",
            ),
            (
                {"inputs": (2, 3, 2, 3), "indices": ((2, 3, 3, 3), "int32")},
                ValueError,
                re.escape("indices.shape=(2, 3, 3, 3)"),
            ),
            (
                {
                    "inputs": (None, 3, 2, 3),
                    "indices": ((None, 3, 2, 4), "int32"),
                },
                ValueError,
                "Expected the same shape as `inputs`",
            ),
            (
                {"inputs": (2, 3, 2, 3), "indices": ((2, 3, 2, 3), "float32")},
                TypeError,
                re.escape("Received: indices.dtype=float32"),
            ),
            (
                {
                    "inputs": ((2, 3, 2, 3), "int32"),
                    "indices": ((2, 3, 2, 3), "int32"),
                },
                TypeError,
                re.escape("Received: inputs.dtype=int32"),
            ),
        ],
    )


def test_int_pool_size_and_json_config():
    assert MaxUnpooling2D(3).pool_size == (3, 3)
    layer = MaxUnpooling2D.from_config({"pool_size": [3, 2], "name": "unpool"})
    assert layer.pool_size == (3, 2)
    assert layer.get_config()["pool_size"] == (3, 2)


def test_symbolic_call_with_unknown_spatial_dims():
    inputs = keras.Input((None, None, 2))
    indices = keras.Input((None, None, 2), dtype="int32")
    out = MaxUnpooling2D((2, 3))(inputs, indices)
    assert out.shape == (None, None, None, 2)
    model = keras.Model([inputs, indices], out)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 2, 3, 2)).astype("float32")
    idx = rng.integers(0, 6, size=(2, 2, 3, 2)).astype("int32")
    np.testing.assert_array_equal(
        np.asarray(model([x, idx])), np_max_unpool(x, idx, (2, 3))
    )


def test_compute_output_shape():
    layer = MaxUnpooling2D((2, 3))
    assert layer.compute_output_shape((None, 4, 5, 3), (None, 4, 5, 3)) == (
        None,
        8,
        15,
        3,
    )
    with pytest.raises(ValueError, match="Expected the same shape"):
        layer.compute_output_shape((None, 4, 5, 3), (None, 4, 4, 3))


def build_segnet_like(num_classes=3):
    images = keras.Input((8, 8, 3), name="images")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(images)
    pooled, indices = MaxPoolingWithArgmax2D(2, name="pool")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(pooled)
    y = MaxUnpooling2D(2, name="unpool")(y, indices)
    logits = keras.layers.Conv2D(num_classes, 1, name="logits")(y)
    return keras.Model(images, logits, name="segnet_like")


def test_segnet_like_model_trains_under_xla(tmp_path):
    model = build_segnet_like()
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    assert model.jit_compile is True
    rng = np.random.default_rng(2)
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(2, 8, 8)).astype("int32")
    before = [w.numpy() for w in model.trainable_weights]
    history = model.fit(images, labels, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # Every conv (before the pooling too) was updated through the switches.
    for old, new in zip(before, model.trainable_weights, strict=True):
        assert not np.array_equal(old, new.numpy())

    model.save(tmp_path / "segnet.keras")
    restored = keras.saving.load_model(tmp_path / "segnet.keras")
    np.testing.assert_array_equal(
        np.asarray(model(images)), np.asarray(restored(images))
    )
