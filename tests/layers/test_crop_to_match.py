"""Tests for `keras_segattn.layers.CropToMatch`."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import CropToMatch
from tests.testing import run_layer_checks


def np_crop(x, reference, offset):
    """Loop reference: copy the window at `offset` of the reference size."""
    oy, ox = offset
    batch, _, _, channels = x.shape
    height, width = reference.shape[1], reference.shape[2]
    out = np.zeros((batch, height, width, channels), x.dtype)
    for i in range(height):
        for j in range(width):
            out[:, i, j, :] = x[:, oy + i, ox + j, :]
    return out


def test_layer_checks(tmp_path):
    rng = np.random.default_rng(0)
    inputs = {
        "inputs": rng.normal(size=(2, 7, 6, 3)).astype("float32"),
        # An integer reference (a mask): only its shape is read.
        "reference": rng.integers(0, 3, size=(2, 4, 5)).astype("int32"),
    }
    run_layer_checks(
        CropToMatch,
        {"offset": (2, 1)},
        inputs,
        tmp_path=tmp_path,
        expected_output_shape=(2, 4, 5, 3),
        expected_num_trainable_weights=0,
        reference_fn=lambda layer, inputs: np_crop(
            inputs["inputs"], inputs["reference"], layer.offset
        ),
        atol=0.0,
        bad_init_kwargs=[
            ({"offset": -1}, ValueError, re.escape("Received: offset=-1.")),
            ({"offset": (0, 1, 2)}, ValueError, "`offset`"),
            ({"offset": 1.5}, ValueError, "`offset`"),
        ],
        bad_call_inputs=[
            (
                {"inputs": (2, 7, 6), "reference": ((2, 4, 5), "int32")},
                ValueError,
                "Invalid rank for argument `inputs`",
            ),
            (
                {"inputs": (2, 7, 6, 3), "reference": ((2, 4), "int32")},
                ValueError,
                "Invalid rank for argument `reference`",
            ),
            (
                # 4 + offset 2 > 5 rows.
                {"inputs": (2, 5, 6, 3), "reference": ((2, 4, 5), "int32")},
                ValueError,
                re.escape("Received: inputs.shape=(2, 5, 6, 3)"),
            ),
            (
                {
                    "inputs": (None, 7, 5, 3),
                    "reference": ((None, 4, 5), "int32"),
                },
                ValueError,
                "at least as large as `reference`",
            ),
        ],
    )


def test_default_offset_float_reference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 8, 4)).astype("float32")
    reference = rng.normal(size=(2, 5, 8, 7)).astype("float32")
    layer = CropToMatch()
    assert layer.offset == (0, 0)
    out = layer(x, reference)
    np.testing.assert_array_equal(np.asarray(out), x[:, :5, :8, :])


def test_integer_inputs_keep_dtype():
    x = np.arange(2 * 4 * 4, dtype="int32").reshape(2, 4, 4, 1)
    sym = CropToMatch()(
        keras.Input((4, 4, 1), dtype="int32"), keras.Input((3, 2))
    )
    assert sym.dtype == "int32"
    out = CropToMatch()(x, np.zeros((2, 3, 2), "float32"))
    np.testing.assert_array_equal(np.asarray(out), x[:, :3, :2])


def test_dynamic_spatial_size_under_xla():
    """None height/width: the output size comes from the reference at run
    time, also inside an XLA-compiled function."""
    inputs = keras.Input((None, None, 3), name="inputs")
    reference = keras.Input((None, None), dtype="int32", name="reference")
    outputs = CropToMatch(offset=(1, 0))(inputs, reference)
    assert tuple(outputs.shape) == (None, None, None, 3)
    model = keras.Model([inputs, reference], outputs)

    compiled = tf.function(model, jit_compile=True)
    rng = np.random.default_rng(2)
    for size, ref_size in (((10, 9), (7, 9)), ((6, 13), (3, 11))):
        x = rng.normal(size=(2, *size, 3)).astype("float32")
        ref = np.zeros((2, *ref_size), "int32")
        expected = np_crop(x, ref, (1, 0))
        np.testing.assert_array_equal(np.asarray(compiled([x, ref])), expected)
        np.testing.assert_array_equal(np.asarray(model([x, ref])), expected)


def test_dynamic_too_small_fails_at_run_time():
    inputs = keras.Input((None, None, 1))
    reference = keras.Input((None, None, 1))
    model = keras.Model([inputs, reference], CropToMatch()(inputs, reference))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        model([np.zeros((1, 3, 3, 1)), np.zeros((1, 4, 3, 1))])
