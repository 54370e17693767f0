"""Tests for `keras_segattn.layers.MaxPoolingWithArgmax2D`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.layers import MaxPoolingWithArgmax2D
from tests.references import np_max_pool_with_argmax
from tests.testing import run_layer_checks


def test_layer_checks(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 8, 6, 3)).astype("float32")
    run_layer_checks(
        MaxPoolingWithArgmax2D,
        {"pool_size": (2, 3)},
        x,
        tmp_path=tmp_path,
        expected_output_shape=[(2, 4, 2, 3), (2, 4, 2, 3)],
        expected_num_trainable_weights=0,
        reference_fn=lambda layer, inputs: list(
            np_max_pool_with_argmax(inputs, layer.pool_size)
        ),
        atol=0.0,
        bad_init_kwargs=[
            ({"pool_size": 0}, ValueError, re.escape("Received: pool_size=0.")),
            (
                {"pool_size": (2, -1)},
                ValueError,
                re.escape("pool_size=(2, -1)"),
            ),
            ({"pool_size": (2, 2, 2)}, ValueError, "`pool_size`"),
            ({"pool_size": "2"}, ValueError, "`pool_size`"),
        ],
        bad_call_inputs=[
            ((2, 8, 6), ValueError, "Invalid rank for argument `inputs`"),
            ((2, 8, 6, 3, 1), ValueError, "Invalid rank"),
            ((2, 7, 6, 3), ValueError, re.escape("pool size (2, 3)")),
            ((None, 8, 5, 3), ValueError, "divisible"),
            (((2, 8, 6, 3), "int32"), TypeError, "floating dtype"),
        ],
    )


def test_layer_checks_same_padding(tmp_path):
    x = np.random.default_rng(3).normal(size=(2, 7, 5, 3)).astype("float32")
    run_layer_checks(
        MaxPoolingWithArgmax2D,
        {"pool_size": (2, 3), "padding": "same"},
        x,
        tmp_path=tmp_path,
        expected_output_shape=[(2, 4, 2, 3), (2, 4, 2, 3)],
        expected_num_trainable_weights=0,
        reference_fn=lambda layer, inputs: list(
            np_max_pool_with_argmax(inputs, layer.pool_size, "same")
        ),
        atol=0.0,
        bad_init_kwargs=[
            (
                {"padding": "full"},
                ValueError,
                re.escape(
                    "Invalid value for argument `padding`. Expected one of "
                    "['valid', 'same']. Received: padding='full'."
                ),
            ),
            ({"padding": None}, ValueError, "Received: padding=None"),
        ],
        bad_call_inputs=[
            ((2, 7, 5), ValueError, "Invalid rank for argument `inputs`"),
        ],
    )


def test_same_padding_config_and_shapes():
    layer = MaxPoolingWithArgmax2D(2, padding="SAME")
    assert layer.padding == "same"
    config = layer.get_config()
    assert config["padding"] == "same"
    assert MaxPoolingWithArgmax2D.from_config(config).padding == "same"
    assert MaxPoolingWithArgmax2D().padding == "valid"
    assert (
        layer.compute_output_shape((None, 45, 60, 8))
        == ((None, 23, 30, 8),) * 2
    )
    pooled, indices = layer(keras.Input((45, None, 8)))
    assert pooled.shape == (None, 23, None, 8)
    assert indices.shape == (None, 23, None, 8)


def test_int_pool_size_is_normalised():
    layer = MaxPoolingWithArgmax2D(3)
    assert layer.pool_size == (3, 3)
    assert layer.get_config()["pool_size"] == (3, 3)


def test_config_with_list_pool_size_from_json():
    layer = MaxPoolingWithArgmax2D.from_config(
        {"pool_size": [2, 3], "name": "pool"}
    )
    assert layer.pool_size == (2, 3)
    assert layer.name == "pool"


def test_symbolic_call_with_unknown_spatial_dims():
    inputs = keras.Input((None, None, 4))
    pooled, indices = MaxPoolingWithArgmax2D((2, 2))(inputs)
    assert pooled.shape == (None, None, None, 4)
    assert indices.shape == (None, None, None, 4)
    assert pooled.dtype == "float32"
    assert indices.dtype == "int32"
    model = keras.Model(inputs, [pooled, indices])
    x = np.random.default_rng(1).normal(size=(2, 6, 4, 4)).astype("float32")
    out_pooled, out_indices = model(x)
    ref_pooled, ref_indices = np_max_pool_with_argmax(x, (2, 2))
    np.testing.assert_array_equal(np.asarray(out_pooled), ref_pooled)
    np.testing.assert_array_equal(np.asarray(out_indices), ref_indices)


def test_mixed_precision_output_dtypes():
    layer = MaxPoolingWithArgmax2D(dtype="mixed_float16")
    sym_pooled, sym_indices = layer(keras.Input((4, 4, 2)))
    assert sym_pooled.dtype == "float16"
    assert sym_indices.dtype == "int32"
    x = np.random.default_rng(2).normal(size=(2, 4, 4, 2)).astype("float32")
    pooled, indices = layer(x)
    assert keras.backend.standardize_dtype(pooled.dtype) == "float16"
    assert keras.backend.standardize_dtype(indices.dtype) == "int32"
    ref_pooled, ref_indices = np_max_pool_with_argmax(
        x.astype("float16"), (2, 2)
    )
    np.testing.assert_array_equal(np.asarray(pooled), ref_pooled)
    np.testing.assert_array_equal(np.asarray(indices), ref_indices)


@pytest.mark.parametrize("shape", [(2, 5, 4, 1), (2, 4, 5, 1)])
def test_compute_output_shape_rejects_non_divisible_sizes(shape):
    with pytest.raises(ValueError, match="divisible by pool size"):
        MaxPoolingWithArgmax2D(2).compute_output_shape(shape)
