"""Tests for `keras_segattn.models.convolutionalize`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.models.convolutionalize import convolutionalize
from keras_segattn.models.convolutionalize import sliding_window_geometry


def _sequential_classifier():
    return keras.Sequential(
        [
            keras.Input((12, 12, 2)),
            keras.layers.Rescaling(0.5),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.BatchNormalization(),
            keras.layers.Conv2D(5, 2),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(6, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(3),
            keras.layers.Softmax(),
        ],
        name="seq",
    )


def _gap_classifier():
    images = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="valid")(images)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5, activation="tanh")(x)
    x = keras.layers.Dense(2, activation="softmax")(x)
    return keras.Model(images, x, name="gap")


def _randomise_batch_norm(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            rng = np.random.default_rng(1)
            layer.set_weights(
                [rng.uniform(0.5, 2, w.shape) for w in layer.get_weights()]
            )


def _crop_reference(model, images, stride, window, rows, cols):
    """The original classifier on every window, by loops."""
    out = np.zeros((images.shape[0], rows, cols, model.output_shape[-1]))
    for i in range(rows):
        for j in range(cols):
            crop = images[
                :,
                i * stride[0] : i * stride[0] + window[0],
                j * stride[1] : j * stride[1] + window[1],
            ]
            out[:, i, j] = np.asarray(model(crop, training=False))
    return out


@pytest.mark.parametrize("builder", [_sequential_classifier, _gap_classifier])
def test_training_size_and_sliding_windows(builder):
    model = builder()
    _randomise_batch_norm(model)
    geometry = sliding_window_geometry(model)
    window, stride = geometry["window"], geometry["stride"]
    converted = convolutionalize(model)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 2, (2, *model.input_shape[1:])).astype("float32")
    out = np.asarray(converted(images, training=False))
    assert out.shape == (2, 1, 1, model.output_shape[-1])
    np.testing.assert_allclose(
        out[:, 0, 0], np.asarray(model(images, training=False)), atol=1e-5
    )
    rows, cols = 3, 4
    big = rng.uniform(
        0,
        2,
        (
            2,
            window[0] + (rows - 1) * stride[0],
            window[1] + (cols - 1) * stride[1],
            model.input_shape[-1],
        ),
    ).astype("float32")
    maps = np.asarray(converted(big, training=False))
    assert maps.shape == (2, rows, cols, model.output_shape[-1])
    expected = _crop_reference(model, big, stride, window, rows, cols)
    np.testing.assert_allclose(maps, expected, atol=1e-5)


def test_geometry_and_layer_mapping():
    model = _sequential_classifier()
    assert sliding_window_geometry(model) == {
        "window": (12, 12),
        "stride": (4, 4),
    }
    converted = convolutionalize(model)
    names = {layer.name: layer for layer in converted.layers}
    first, second = (
        layer for layer in model.layers if isinstance(layer, keras.layers.Dense)
    )
    conv = names[first.name]
    assert isinstance(conv, keras.layers.Conv2D)
    assert conv.kernel_size == (2, 2)
    kernel = np.asarray(conv.kernel)
    np.testing.assert_array_equal(
        kernel.reshape(-1, 6), np.asarray(first.kernel)
    )
    assert names[second.name].kernel_size == (1, 1)
    assert any(
        isinstance(layer, keras.layers.Dropout) for layer in converted.layers
    )
    assert convolutionalize(_gap_classifier()).layers[3].pool_size == (3, 3)


def test_nested_and_fixed_input_shape():
    trunk = keras.Sequential(
        [keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3)], name="trunk"
    )
    head = keras.Sequential(
        [keras.Input((4, 4, 2)), keras.layers.Flatten(), keras.layers.Dense(3)],
        name="head",
    )
    model = keras.Sequential([keras.Input((6, 6, 1)), trunk, head])
    converted = convolutionalize(model, input_shape=(10, 9, 1), name="fc")
    assert converted.name == "fc"
    assert converted.output_shape == (None, 5, 4, 3)
    x = np.random.default_rng(0).normal(size=(1, 6, 6, 1)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(converted(np.pad(x, ((0, 0), (0, 4), (0, 3), (0, 0)))))[
            :, 0, 0
        ],
        np.asarray(model(x)),
        atol=1e-5,
    )


def test_dense_before_flatten_is_rejected():
    model = keras.Sequential(
        [
            keras.Input((4, 4, 2)),
            keras.layers.Dense(3, name="early_dense"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    with pytest.raises(ValueError, match=re.escape("'early_dense' (Dense)")):
        convolutionalize(model)


@pytest.mark.parametrize(
    "layer",
    [
        keras.layers.Reshape((16, 2), name="bad"),
        keras.layers.UpSampling2D(name="bad"),
    ],
)
def test_layer_without_convolutional_equivalent(layer):
    model = keras.Sequential(
        [
            keras.Input((4, 4, 2)),
            layer,
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    with pytest.raises(ValueError, match="layer 'bad'"):
        convolutionalize(model)


def test_layer_between_flatten_and_dense_is_rejected():
    model = keras.Sequential(
        [
            keras.Input((4, 4, 2)),
            keras.layers.Flatten(),
            keras.layers.BatchNormalization(name="flat_bn"),
            keras.layers.Dense(2),
        ]
    )
    with pytest.raises(ValueError, match="'flat_bn'"):
        convolutionalize(model)


def test_branching_model_is_rejected():
    images = keras.Input((4, 4, 1))
    a = keras.layers.Conv2D(2, 1, name="a")(images)
    b = keras.layers.Conv2D(2, 1, name="b")(images)
    x = keras.layers.Add(name="join")([a, b])
    x = keras.layers.Flatten()(x)
    model = keras.Model(images, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match="single path"):
        convolutionalize(model)
