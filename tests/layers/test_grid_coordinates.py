"""Tests for `keras_segattn.layers.GridCoordinates`."""

import numpy as np

from keras_segattn.layers import GridCoordinates
from tests.testing import run_layer_checks


def np_grid_coordinates(annotations, height, width):
    """CoordConv channels by loops: location k = i·W + j gets
    ((2i + 1) / H − 1, (2j + 1) / W − 1)."""
    batch, locations, _ = annotations.shape
    grid = np.zeros((batch, locations, 2))
    for i in range(height):
        for j in range(width):
            grid[:, i * width + j] = (
                (2 * i + 1) / height - 1,
                (2 * j + 1) / width - 1,
            )
    return np.concatenate([annotations, grid], -1)


def test_layer_checks(tmp_path):
    inputs = np.random.default_rng(0).normal(size=(2, 6, 3)).astype("float32")
    run_layer_checks(
        GridCoordinates,
        {"grid_shape": (2, 3)},
        inputs,
        tmp_path=tmp_path,
        expected_output_shape=(2, 6, 5),
        expected_num_trainable_weights=0,
        reference_fn=lambda layer, x: np_grid_coordinates(x, 2, 3),
        atol=1e-6,
        bad_init_kwargs=[
            ({"grid_shape": (2,)}, ValueError, "`grid_shape`"),
            ({"grid_shape": (0, 3)}, ValueError, "`grid_shape`"),
        ],
        bad_call_inputs=[
            ((2, 6), ValueError, "Invalid rank for argument `annotations`"),
            ((2, 5, 3), ValueError, "`annotations`"),
        ],
    )
