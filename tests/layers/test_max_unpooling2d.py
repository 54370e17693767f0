"""Tests for `keras_segattn.layers.MaxUnpooling2D` (and a SegNet-like model)."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.layers import MaxPoolingWithArgmax2D
from keras_segattn.layers import MaxUnpooling2D
from tests.references import np_max_pool_with_argmax
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


def test_layer_checks_output_size(tmp_path):
    rng = np.random.default_rng(10)
    inputs = {
        "inputs": rng.normal(size=(2, 3, 2, 3)).astype("float32"),
        "indices": rng.integers(0, 6, size=(2, 3, 2, 3)).astype("int32"),
    }
    run_layer_checks(
        MaxUnpooling2D,
        {"pool_size": (2, 3), "output_size": (5, 5)},
        inputs,
        tmp_path=tmp_path,
        expected_output_shape=(2, 5, 5, 3),
        expected_num_trainable_weights=0,
        reference_fn=lambda layer, inputs: np_max_unpool(
            inputs["inputs"],
            inputs["indices"],
            layer.pool_size,
            layer.output_size,
        ),
        atol=0.0,
        bad_init_kwargs=[
            ({"output_size": 0}, ValueError, "Received: output_size=0."),
            ({"output_size": (5, "5")}, ValueError, "`output_size`"),
            (
                {"indices_format": "global"},
                ValueError,
                re.escape("Received: indices_format='global'"),
            ),
        ],
        bad_call_inputs=[
            (
                {"inputs": (2, 2, 2, 3), "indices": ((2, 2, 2, 3), "int32")},
                ValueError,
                re.escape("height in [3, 4] and width in [4, 6]"),
            ),
            (
                {"inputs": (2, 3, 1, 3), "indices": ((2, 3, 1, 3), "int32")},
                ValueError,
                re.escape("Received: output_size=(5, 5)"),
            ),
        ],
    )


def test_output_size_and_indices_format_config():
    layer = MaxUnpooling2D(2, output_size=[45, 60], indices_format="flat")
    assert layer.output_size == (45, 60)
    config = layer.get_config()
    assert config["output_size"] == (45, 60)
    assert config["indices_format"] == "flat"
    restored = MaxUnpooling2D.from_config({**config, "output_size": [45, 60]})
    assert restored.output_size == (45, 60)
    assert MaxUnpooling2D().output_size is None
    assert MaxUnpooling2D().indices_format == "local"
    assert layer.compute_output_shape((None, 23, 30, 4), (None, 23, 30, 4)) == (
        None,
        45,
        60,
        4,
    )
    with pytest.raises(ValueError, match=re.escape("width in [61, 62]")):
        layer.compute_output_shape((None, 23, 31, 4), (None, 23, 31, 4))


def build_odd_size_segnet_like(image_shape, use_reference):
    images = keras.Input(image_shape, name="images")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(images)
    pooled, indices = MaxPoolingWithArgmax2D(2, padding="same", name="pool")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(pooled)
    if use_reference:
        y = MaxUnpooling2D(2, name="unpool")(y, indices, reference=x)
    else:
        y = MaxUnpooling2D(2, output_size=image_shape[:2], name="unpool")(
            y, indices
        )
    logits = keras.layers.Conv2D(3, 1, name="logits")(y)
    return keras.Model(images, logits, name="segnet_like")


@pytest.mark.parametrize(
    "image_shape, use_reference",
    [((9, 7, 3), False), ((None, None, 3), True), ((9, None, 3), True)],
)
def test_odd_size_model_trains_under_xla_and_round_trips(
    tmp_path, image_shape, use_reference
):
    model = build_odd_size_segnet_like(image_shape, use_reference)
    static = tuple(None if d is None else d for d in image_shape[:2])
    assert model.output_shape == (None, *static, 3)
    rng = np.random.default_rng(11)
    images = rng.normal(size=(2, 9, 7, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(2, 9, 7)).astype("int32")
    eager = np.asarray(model(images))
    assert eager.shape == (2, 9, 7, 3)
    xla = keras.Model(model.inputs, model.outputs)
    xla.compile(jit_compile=True)
    np.testing.assert_allclose(xla.predict(images, verbose=0), eager, atol=1e-6)
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    assert model.jit_compile is True
    history = model.fit(images, labels, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    model.save(tmp_path / "odd.keras")
    restored = keras.saving.load_model(tmp_path / "odd.keras")
    assert (
        restored.get_layer("unpool").output_size
        == model.get_layer("unpool").output_size
    )
    np.testing.assert_array_equal(
        np.asarray(model(images)), np.asarray(restored(images))
    )


def test_reference_gives_the_output_size_and_is_checked():
    features = keras.Input((None, None, 2))
    pooled, indices = MaxPoolingWithArgmax2D(2, padding="same")(features)
    out = MaxUnpooling2D(2)(pooled, indices, reference=features)
    model = keras.Model(features, out)
    x = np.random.default_rng(12).normal(size=(2, 5, 7, 2)).astype("float32")
    ref_pooled, ref_indices = np_max_pool_with_argmax(x, (2, 2), "same")
    np.testing.assert_array_equal(
        np.asarray(model(x)),
        np_max_unpool(ref_pooled, ref_indices, (2, 2), (5, 7)),
    )
    static = keras.Input((5, 7, 2))
    pooled, indices = MaxPoolingWithArgmax2D(2, padding="same")(static)
    layer = MaxUnpooling2D(2, output_size=(5, 8))
    with pytest.raises(ValueError, match=re.escape("Received: reference")):
        layer(pooled, indices, reference=static)
    with pytest.raises(ValueError, match="Invalid rank for argument `ref"):
        MaxUnpooling2D(2)(pooled, indices, reference=keras.Input((5, 7)))


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
