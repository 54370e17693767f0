"""Tests for `affine_grid`, `attention_grid` and `projective_grid`."""

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops import affine_grid
from keras_segattn.ops import attention_grid
from keras_segattn.ops import projective_grid
from keras_segattn.ops import thin_plate_spline_grid
from tests.testing import check_numeric_gradients

IDENTITY = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], "float32")


def np_base_coordinates(size, align_corners):
    """PyTorch's normalised pixel centres along one axis, float64 loop."""
    if align_corners:
        if size == 1:
            return [-1.0]
        return [-1.0 + 2.0 * i / (size - 1) for i in range(size)]
    return [(2.0 * i + 1.0) / size - 1.0 for i in range(size)]


def np_affine_grid(theta, output_size, align_corners=False):
    """Independent loop version of `torch.nn.functional.affine_grid`."""
    theta = np.asarray(theta, "float64").reshape(-1, 2, 3)
    height, width = output_size
    xs = np_base_coordinates(width, align_corners)
    ys = np_base_coordinates(height, align_corners)
    grid = np.zeros((len(theta), height, width, 2))
    for b in range(len(theta)):
        for i in range(height):
            for j in range(width):
                grid[b, i, j] = theta[b] @ np.array([xs[j], ys[i], 1.0])
    return grid


def np_projective_grid(params, output_size, align_corners=False):
    params = np.asarray(params, "float64").reshape(-1, 8)
    height, width = output_size
    xs = np_base_coordinates(width, align_corners)
    ys = np_base_coordinates(height, align_corners)
    grid = np.zeros((len(params), height, width, 2))
    for b in range(len(params)):
        h = np.append(params[b], 1.0).reshape(3, 3)
        for i in range(height):
            for j in range(width):
                u, v, w = h @ np.array([xs[j], ys[i], 1.0])
                grid[b, i, j] = (u / w, v / w)
    return grid


def np_thin_plate_spline_grid(params, output_size, control_grid, align_corners):
    """TPS interpolation of control-point offsets, solved per example."""
    rows, columns = control_grid
    points = [
        (-1 + 2 * c / (columns - 1), -1 + 2 * r / (rows - 1))
        for r in range(rows)
        for c in range(columns)
    ]
    count = len(points)

    def kernel(a, b):
        r2 = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
        return r2 * math.log(r2) if r2 > 0 else 0.0

    system = np.zeros((count + 3, count + 3))
    for i, p in enumerate(points):
        for j, q in enumerate(points):
            system[i, j] = kernel(p, q)
        system[i, count:] = system[count:, i] = (1.0, p[0], p[1])
    params = np.asarray(params, "float64").reshape(len(params), count, 2)
    height, width = output_size
    xs = np_base_coordinates(width, align_corners)
    ys = np_base_coordinates(height, align_corners)
    grid = np.zeros((len(params), height, width, 2))
    for b in range(len(params)):
        rhs = np.concatenate([params[b], np.zeros((3, 2))])
        coefficients = np.linalg.solve(system, rhs)
        for i in range(height):
            for j in range(width):
                p = (xs[j], ys[i])
                basis = [kernel(p, q) for q in points] + [1.0, p[0], p[1]]
                grid[b, i, j] = np.array(p) + np.array(basis) @ coefficients
    return grid


@pytest.mark.parametrize("align_corners", [False, True])
def test_thin_plate_spline_grid(align_corners):
    rng = np.random.default_rng(5)
    params = (0.1 * rng.normal(size=(2, 2 * 12))).astype("float32")
    grid = thin_plate_spline_grid(params, (5, 6), (3, 4), align_corners)
    np.testing.assert_allclose(
        np.asarray(grid),
        np_thin_plate_spline_grid(params, (5, 6), (3, 4), align_corners),
        atol=1e-5,
    )
    # Zero offsets: exactly the identity grid; [B, K, 2] accepted.
    zeros = np.zeros((2, 12, 2), "float32")
    np.testing.assert_array_equal(
        np.asarray(
            thin_plate_spline_grid(zeros, (5, 6), (3, 4), align_corners)
        ),
        np.asarray(
            affine_grid(np.tile(IDENTITY, (2, 1)), (5, 6), align_corners)
        ),
    )
    check_numeric_gradients(
        lambda p: thin_plate_spline_grid(p, (2, 3), 2, align_corners),
        [params[:, :8]],
    )


def test_thin_plate_spline_moves_control_points_by_their_offsets():
    # With align_corners=True a 3x3 output samples exactly at the 3x3
    # control points, which the spline interpolates.
    params = np.random.default_rng(6).normal(size=(1, 9, 2)) * 0.2
    grid = np.asarray(thin_plate_spline_grid(params, 3, 3, True))
    base = np.asarray(affine_grid(IDENTITY[None], 3, True), "float64")
    np.testing.assert_allclose(
        grid - base, params.reshape(1, 3, 3, 2), atol=1e-5
    )
    with pytest.raises(ValueError, match=re.escape("control_grid=(1, 3)")):
        thin_plate_spline_grid(np.zeros((1, 6)), 3, (1, 3))
    with pytest.raises(ValueError, match=re.escape("params.shape=(1, 6)")):
        thin_plate_spline_grid(np.zeros((1, 6)), 3, 3)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(1, 1), (1, 2), (3, 5), (6, 4)])
def test_affine_grid_matches_reference(size, align_corners):
    rng = np.random.default_rng(1)
    theta = rng.normal(size=(3, 2, 3)).astype("float32")
    grid = affine_grid(theta, size, align_corners)
    assert tuple(grid.shape) == (3, *size, 2)
    assert grid.dtype == tf.float32
    np.testing.assert_allclose(
        np.asarray(grid),
        np_affine_grid(theta, size, align_corners),
        atol=1e-6,
    )


def test_affine_grid_pytorch_values():
    # torch.nn.functional.affine_grid(identity, (1, 1, 2, 4), False)[0, 0]
    # == [[-0.75, -0.5], [-0.25, -0.5], [0.25, -0.5], [0.75, -0.5]].
    grid = np.asarray(affine_grid(IDENTITY[None], (2, 4)))
    np.testing.assert_array_equal(
        grid[0, 0], [[-0.75, -0.5], [-0.25, -0.5], [0.25, -0.5], [0.75, -0.5]]
    )
    grid = np.asarray(affine_grid(IDENTITY[None], (2, 3), True))
    np.testing.assert_array_equal(grid[0, 1], [[-1, 1], [0, 1], [1, 1]])


def test_flat_theta_equals_matrix_theta_and_float64():
    rng = np.random.default_rng(2)
    theta = rng.normal(size=(2, 2, 3))
    flat = affine_grid(theta.reshape(2, 6), (4, 3))
    matrix = affine_grid(theta, (4, 3))
    assert flat.dtype == tf.float64
    np.testing.assert_array_equal(np.asarray(flat), np.asarray(matrix))
    half = affine_grid(theta.astype("float16"), (4, 3))
    assert half.dtype == tf.float32  # coordinates never in float16


def test_affine_grid_gradient():
    theta = np.random.default_rng(3).normal(size=(2, 6))
    check_numeric_gradients(lambda t: affine_grid(t, (3, 4)), [theta])


def test_attention_grid_is_scaled_translated_affine():
    params = np.array([[0.5, 0.2, -0.3], [1.0, 0.0, 0.0]], "float32")
    theta = np.array(
        [[0.5, 0, 0.2, 0, 0.5, -0.3], [1, 0, 0, 0, 1, 0]], "float32"
    )
    np.testing.assert_array_equal(
        np.asarray(attention_grid(params, (5, 4))),
        np.asarray(affine_grid(theta, (5, 4))),
    )


@pytest.mark.parametrize("align_corners", [False, True])
def test_projective_grid_matches_reference(align_corners):
    rng = np.random.default_rng(4)
    params = np.tile([1.0, 0, 0, 0, 1.0, 0, 0, 0], (2, 1))
    params = (params + 0.1 * rng.normal(size=(2, 8))).astype("float32")
    grid = projective_grid(params, (4, 5), align_corners)
    np.testing.assert_allclose(
        np.asarray(grid),
        np_projective_grid(params, (4, 5), align_corners),
        atol=1e-5,
    )
    # The identity homography is exactly the identity affine grid, and the
    # [B, 3, 3] form is accepted.
    identity = np.tile(np.eye(3, dtype="float32"), (2, 1, 1))
    np.testing.assert_array_equal(
        np.asarray(projective_grid(identity, (4, 5), align_corners)),
        np.asarray(
            affine_grid(np.tile(IDENTITY, (2, 1)), (4, 5), align_corners)
        ),
    )
    check_numeric_gradients(
        lambda p: projective_grid(p, (3, 3), align_corners), [params]
    )


def test_grids_compile_with_xla_and_unknown_batch():
    @tf.function(
        jit_compile=True,
        input_signature=[tf.TensorSpec([None, 6], tf.float32)],
    )
    def grids(theta):
        return (
            affine_grid(theta, (4, 3)),
            attention_grid(theta[:, :3], (4, 3)),
            projective_grid(tf.concat([theta, theta[:, :2]], 1), (4, 3)),
        )

    theta = np.tile(IDENTITY, (2, 1))
    out = grids(theta)
    np.testing.assert_array_equal(
        np.asarray(out[0]), np.asarray(affine_grid(theta, (4, 3)))
    )
    assert all(tuple(o.shape) == (2, 4, 3, 2) for o in out)


@pytest.mark.parametrize(
    ("fn", "value", "exc", "match"),
    [
        (
            affine_grid,
            np.zeros((2, 5)),
            ValueError,
            "Received: theta.shape=(2, 5)",
        ),
        (
            affine_grid,
            np.zeros((2, 3, 3)),
            ValueError,
            "Expected affine matrices",
        ),
        (affine_grid, np.zeros((6,)), ValueError, "Received: theta.shape=(6,)"),
        (
            affine_grid,
            np.zeros((2, 6), "int32"),
            TypeError,
            "theta.dtype=int32",
        ),
        (attention_grid, np.zeros((2, 6)), ValueError, "params.shape=(2, 6)"),
        (projective_grid, np.zeros((2, 6)), ValueError, "params.shape=(2, 6)"),
    ],
)
def test_bad_parameters(fn, value, exc, match):
    with pytest.raises(exc, match=re.escape(match)):
        fn(value, (3, 3))


@pytest.mark.parametrize("size", [0, (3,), (3, -1), (2.5, 3), "4x4", (2, 3, 4)])
def test_bad_output_size(size):
    with pytest.raises(ValueError, match=re.escape(f"output_size={size!r}")):
        affine_grid(IDENTITY[None], size)
