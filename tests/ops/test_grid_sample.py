"""Tests for `keras_segattn.ops.grid_sample` against a NumPy loop version of
PyTorch's CPU kernel (aten/src/ATen/native/GridSampler.{h,cpp})."""

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.ops import affine_grid
from keras_segattn.ops import grid_sample
from tests.ops.test_affine_grid import np_affine_grid
from tests.testing import check_numeric_gradients

PADDING_MODES = ("zeros", "border", "reflection")


def _unnormalize(coord, size, align_corners):
    """Pixel coordinate and d(pixel)/d(coord)."""
    if align_corners:
        return (coord + 1.0) / 2.0 * (size - 1), (size - 1) / 2.0
    return ((coord + 1.0) * size - 1.0) / 2.0, size / 2.0


def _clip(coord, size):
    """PyTorch's `clip_coordinates_set_grad`."""
    if coord <= 0:
        return 0.0, 0.0
    if coord >= size - 1:
        return float(size - 1), 0.0
    return coord, 1.0


def _reflect(coord, twice_low, twice_high):
    """PyTorch's `reflect_coordinates_set_grad`."""
    if twice_low == twice_high:
        return 0.0, 0.0
    minimum = twice_low / 2.0
    span = (twice_high - twice_low) / 2.0
    coord = coord - minimum
    sign = 1.0
    if coord < 0:
        sign, coord = -1.0, -coord
    extra = math.fmod(coord, span)
    flips = math.floor(coord / span)
    if flips % 2 == 0:
        return extra + minimum, sign
    return span - extra + minimum, -sign


def _source_index(coord, size, padding_mode, align_corners):
    coord, grad = _unnormalize(coord, size, align_corners)
    if padding_mode == "border":
        coord, g = _clip(coord, size)
        grad *= g
    elif padding_mode == "reflection":
        if align_corners:
            coord, g = _reflect(coord, 0, 2 * (size - 1))
        else:
            coord, g = _reflect(coord, -1, 2 * size - 1)
        coord, g2 = _clip(coord, size)
        grad *= g * g2
    return coord, grad


def np_grid_sample(
    images,
    grid,
    interpolation="bilinear",
    padding_mode="zeros",
    align_corners=False,
    output_grad=None,
):
    """Loop version of `torch.nn.functional.grid_sample` (channels-last).

    Returns `(output, d_images, d_grid)` for the upstream gradient
    `output_grad` (ones by default), float64.
    """
    images = np.asarray(images, "float64")
    grid = np.asarray(grid, "float64")
    batch, height, width, channels = images.shape
    _, out_h, out_w, _ = grid.shape
    out = np.zeros((batch, out_h, out_w, channels))
    if output_grad is None:
        output_grad = np.ones_like(out)
    d_images = np.zeros_like(images)
    d_grid = np.zeros_like(grid)

    def pixel(b, y, x):
        if 0 <= y < height and 0 <= x < width:
            return images[b, y, x]
        return np.zeros(channels)

    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                g_out = output_grad[b, i, j]
                ix, gx = _source_index(
                    grid[b, i, j, 0], width, padding_mode, align_corners
                )
                iy, gy = _source_index(
                    grid[b, i, j, 1], height, padding_mode, align_corners
                )
                if interpolation == "nearest":
                    x, y = int(np.rint(ix)), int(np.rint(iy))
                    out[b, i, j] = pixel(b, y, x)
                    if 0 <= y < height and 0 <= x < width:
                        d_images[b, y, x] += g_out
                    continue
                x0, y0 = math.floor(ix), math.floor(iy)
                corners = [
                    (y0, x0, (x0 + 1 - ix) * (y0 + 1 - iy)),
                    (y0, x0 + 1, (ix - x0) * (y0 + 1 - iy)),
                    (y0 + 1, x0, (x0 + 1 - ix) * (iy - y0)),
                    (y0 + 1, x0 + 1, (ix - x0) * (iy - y0)),
                ]
                # d(weight)/d(ix), d(weight)/d(iy) of each corner.
                derivatives = [
                    (-(y0 + 1 - iy), -(x0 + 1 - ix)),
                    (y0 + 1 - iy, -(ix - x0)),
                    (-(iy - y0), x0 + 1 - ix),
                    (iy - y0, ix - x0),
                ]
                grad_x = grad_y = 0.0
                for (y, x, w), (dx, dy) in zip(
                    corners, derivatives, strict=True
                ):
                    value = pixel(b, y, x)
                    out[b, i, j] += w * value
                    if 0 <= y < height and 0 <= x < width:
                        d_images[b, y, x] += w * g_out
                    grad_x += dx * np.dot(value, g_out)
                    grad_y += dy * np.dot(value, g_out)
                d_grid[b, i, j] = (grad_x * gx, grad_y * gy)
    return out, d_images, d_grid


def _tf_sample_and_grads(images, grid, output_grad, **kwargs):
    images = tf.constant(images)
    grid = tf.constant(grid)
    with tf.GradientTape() as tape:
        tape.watch([images, grid])
        out = grid_sample(images, grid, **kwargs)
        loss = tf.reduce_sum(out * tf.cast(output_grad, out.dtype))
    d_images, d_grid = tape.gradient(loss, [images, grid])
    return out.numpy(), d_images.numpy(), d_grid.numpy()


@pytest.mark.parametrize("channels", [1, 3])  # C = 1: unstacked weights
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_matches_reference_forward_and_gradients(
    interpolation, padding_mode, align_corners, channels
):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 4, 5, channels)).astype("float32")
    # Out of range too, several reflections deep for "reflection".
    grid = rng.uniform(-2.6, 2.6, size=(2, 3, 6, 2)).astype("float32")
    output_grad = rng.normal(size=(2, 3, 6, channels)).astype("float32")
    kwargs = dict(
        interpolation=interpolation,
        padding_mode=padding_mode,
        align_corners=align_corners,
    )
    out, d_images, d_grid = _tf_sample_and_grads(
        images, grid, output_grad, **kwargs
    )
    ref_out, ref_d_images, ref_d_grid = np_grid_sample(
        images, grid, output_grad=output_grad, **kwargs
    )
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    np.testing.assert_allclose(d_images, ref_d_images, atol=1e-5)
    np.testing.assert_allclose(d_grid, ref_d_grid, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_many_channels_path_matches_reference(padding_mode):
    # C >= 4 gathers the corners from the padded images, not the table.
    rng = np.random.default_rng(5)
    images = rng.normal(size=(2, 3, 4, 16)).astype("float32")
    grid = rng.uniform(-1.6, 1.6, size=(2, 2, 3, 2)).astype("float32")
    output_grad = rng.normal(size=(2, 2, 3, 16)).astype("float32")
    out, d_images, d_grid = _tf_sample_and_grads(
        images, grid, output_grad, padding_mode=padding_mode
    )
    ref_out, ref_d_images, ref_d_grid = np_grid_sample(
        images, grid, padding_mode=padding_mode, output_grad=output_grad
    )
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    np.testing.assert_allclose(d_images, ref_d_images, atol=1e-5)
    np.testing.assert_allclose(d_grid, ref_d_grid, atol=1e-4, rtol=1e-4)
    identity = affine_grid(np.tile([[1.0, 0, 0, 0, 1, 0]], (2, 1)), (3, 4))
    np.testing.assert_array_equal(
        np.asarray(grid_sample(images, identity, padding_mode=padding_mode)),
        images,
    )


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("unknown_channels", [False, True])
def test_many_channels_gradient_in_graphs_with_unknown_shapes(
    unknown_channels, jit_compile
):
    # The corner gather's own gradient (the backward gathers the corners
    # again): the same values and gradients in a graph with and without
    # XLA, with every dimension unknown or only the batch, and a NaN pixel
    # that reaches only the samples whose neighbourhood holds it.
    rng = np.random.default_rng(7)
    images = rng.normal(size=(2, 5, 6, 8)).astype("float32")
    images[1, 2, 3, 4] = np.nan
    grid = rng.uniform(-1.4, 1.4, size=(2, 4, 3, 2)).astype("float32")
    output_grad = rng.normal(size=(2, 4, 3, 8)).astype("float32")
    channels = None if unknown_channels else 8
    spec = [None, None, None, channels] if unknown_channels else [None, 5, 6, 8]

    @tf.function(
        jit_compile=jit_compile,
        input_signature=[
            tf.TensorSpec(spec, tf.float32),
            tf.TensorSpec([None, None, None, 2], tf.float32),
        ],
    )
    def step(x, g):
        with tf.GradientTape() as tape:
            tape.watch([x, g])
            out = grid_sample(x, g)
            loss = tf.reduce_sum(out * output_grad)
        return (out, *tape.gradient(loss, [x, g]))

    out, d_images, d_grid = (t.numpy() for t in step(images, grid))
    ref_out, ref_d_images, ref_d_grid = np_grid_sample(
        images, grid, output_grad=output_grad
    )
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    np.testing.assert_allclose(d_images, ref_d_images, atol=1e-5)
    np.testing.assert_allclose(d_grid, ref_d_grid, atol=1e-4, rtol=1e-4)
    assert np.isnan(out).any() and not np.isnan(out[0]).any()


@pytest.mark.parametrize("channels", [2, 4])  # the table and corner paths
def test_second_order_gradients_match_finite_differences(channels):
    # The corner path's backward is hand-written: its own derivatives
    # (the gradient's gradient, e.g. for a gradient penalty) must hold.
    rng = np.random.default_rng(9)
    grid = tf.constant(rng.uniform(-1.2, 1.2, size=(1, 3, 2, 2)))
    weights = tf.constant(rng.normal(size=(1, 3, 2, channels)))

    def first_order(images):
        with tf.GradientTape() as tape:
            tape.watch([images, grid])
            out = grid_sample(images, grid)
            loss = tf.reduce_sum(out * weights) + tf.reduce_sum(out**2)
        d_images, d_grid = tape.gradient(loss, [images, grid])
        return tf.concat(
            [tf.reshape(d_images, [-1]), tf.reshape(d_grid, [-1])], 0
        )

    images = rng.normal(size=(1, 3, 4, channels))
    check_numeric_gradients(first_order, [images], delta=1e-4, atol=1e-6)


def test_many_channels_float16_gradients():
    rng = np.random.default_rng(8)
    images = rng.normal(size=(2, 4, 5, 8))
    grid = rng.uniform(-1.2, 1.2, size=(2, 3, 3, 2))
    output_grad = rng.normal(size=(2, 3, 3, 8))
    out, d_images, d_grid = _tf_sample_and_grads(
        images.astype("float16"), grid.astype("float32"), output_grad
    )
    assert out.dtype == d_images.dtype == np.float16
    assert d_grid.dtype == np.float32
    ref_out, ref_d_images, ref_d_grid = np_grid_sample(
        images.astype("float16").astype("float64"),
        grid.astype("float32").astype("float64"),
        output_grad=output_grad.astype("float16").astype("float64"),
    )
    np.testing.assert_allclose(out, ref_out, atol=2e-2)
    np.testing.assert_allclose(d_images, ref_d_images, atol=2e-2)
    np.testing.assert_allclose(d_grid, ref_d_grid, atol=5e-2, rtol=2e-2)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_numeric_gradients_float64(padding_mode, align_corners):
    rng = np.random.default_rng(1)
    height, width = 3, 4
    images = rng.normal(size=(1, height, width, 2))
    # Pixel coordinates a fraction away from integers (the kinks), from
    # outside the image on the left/top to outside on the right/bottom.
    px = rng.integers(-width, 2 * width, size=(1, 2, 3)) + rng.uniform(
        0.2, 0.8, size=(1, 2, 3)
    )
    py = rng.integers(-height, 2 * height, size=(1, 2, 3)) + rng.uniform(
        0.2, 0.8, size=(1, 2, 3)
    )
    if align_corners:
        gx, gy = 2 * px / (width - 1) - 1, 2 * py / (height - 1) - 1
    else:
        gx, gy = (2 * px + 1) / width - 1, (2 * py + 1) / height - 1
    grid = np.stack([gx, gy], -1)

    def fn(x, g):
        return grid_sample(
            x, g, padding_mode=padding_mode, align_corners=align_corners
        )

    check_numeric_gradients(fn, [images, grid], delta=1e-4, atol=1e-5)
    _, d_images, d_grid = _tf_sample_and_grads(
        images,
        grid,
        np.ones((1, 2, 3, 2)),
        padding_mode=padding_mode,
        align_corners=align_corners,
    )
    _, ref_d_images, ref_d_grid = np_grid_sample(
        images, grid, padding_mode=padding_mode, align_corners=align_corners
    )
    np.testing.assert_allclose(d_images, ref_d_images, atol=1e-10)
    np.testing.assert_allclose(d_grid, ref_d_grid, atol=1e-10)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [(1, 1), (5, 7), (40, 40)])
def test_identity_theta_reproduces_input_exactly(
    size, interpolation, padding_mode, align_corners
):
    images = np.random.default_rng(2).normal(size=(2, *size, 3))
    images = images.astype("float32")
    theta = np.tile(np.array([1, 0, 0, 0, 1, 0], "float32"), (2, 1))
    grid = affine_grid(theta, size, align_corners)
    out = grid_sample(images, grid, interpolation, padding_mode, align_corners)
    np.testing.assert_array_equal(np.asarray(out), images)


def test_rotation_by_90_degrees_and_float16():
    images = np.arange(2 * 6 * 6, dtype="float32").reshape(2, 6, 6, 1)
    theta = np.tile(np.array([0, -1, 0, 1, 0, 0], "float32"), (2, 1))
    for align_corners in (False, True):
        grid = affine_grid(theta, (6, 6), align_corners)
        out = np.asarray(grid_sample(images, grid, align_corners=align_corners))
        np.testing.assert_array_equal(out, np.rot90(images, 1, axes=(1, 2)))
    half = grid_sample(images.astype("float16"), affine_grid(theta, (6, 6)))
    assert half.dtype == tf.float16
    np.testing.assert_array_equal(
        np.asarray(half, "float32"), np.rot90(images, 1, axes=(1, 2))
    )


def test_shifts_beyond_the_image():
    images = np.random.default_rng(3).normal(size=(1, 4, 5, 2))
    images = images.astype("float32")

    def shifted(tx, padding_mode):
        theta = np.array([[1, 0, tx, 0, 1, 0]], "float32")
        grid = affine_grid(theta, (4, 5))
        return np.asarray(grid_sample(images, grid, padding_mode=padding_mode))

    # Whole pixels: out[:, j] = in[:, j + k], zeros beyond the right edge.
    out = shifted(2 * 2 / 5, "zeros")
    np.testing.assert_allclose(out[:, :, :3], images[:, :, 2:], atol=1e-6)
    np.testing.assert_array_equal(out[:, :, 3:], 0.0)
    # Entirely outside: zeros, or the border column repeated.
    np.testing.assert_array_equal(shifted(2.5, "zeros"), 0.0)
    np.testing.assert_array_equal(
        shifted(2.5, "border"), np.repeat(images[:, :, -1:], 5, axis=2)
    )
    # One image width to the right, reflected about the right edge: mirror.
    np.testing.assert_array_equal(
        shifted(2.0, "reflection"), images[:, :, ::-1]
    )


def test_half_pixel_rounds_to_even_in_nearest_mode():
    images = np.arange(4, dtype="float32").reshape(1, 1, 4, 1)
    # Pixel x = 0.5, 1.5, 2.5 (align_corners=True: x_pixel = 1.5 (x + 1)).
    x = np.array([0.5, 1.5, 2.5]) / 1.5 - 1
    grid = np.stack([x, np.zeros(3)], -1).reshape(1, 1, 3, 2)
    out = grid_sample(
        images, grid.astype("float32"), "nearest", align_corners=True
    )
    np.testing.assert_array_equal(np.asarray(out)[0, 0, :, 0], [0, 2, 2])


def test_nan_and_huge_coordinates_give_zeros():
    images = np.ones((1, 3, 3, 1), "float32")
    grid = np.array([[[[np.nan, 0.0], [1e30, 0.0], [-1e30, 1e30]]]], "float32")
    for mode in PADDING_MODES:
        out = np.asarray(grid_sample(images, grid, padding_mode=mode))
        assert np.all(np.isfinite(out[0, 0, :1])), mode
    np.testing.assert_array_equal(np.asarray(grid_sample(images, grid)), 0.0)
    # Infinite coordinates are clamped like PyTorch's: the border pixel.
    ramp = np.arange(3, dtype="float32").reshape(1, 1, 3, 1)
    grid = np.array([[[[np.inf, 0.0], [-np.inf, 0.0]]]], "float32")
    out = grid_sample(ramp, grid, padding_mode="border")
    np.testing.assert_array_equal(np.asarray(out)[0, 0, :, 0], [2.0, 0.0])


def test_grid_gets_zero_gradient_in_nearest_mode():
    images = tf.ones((1, 3, 3, 1))
    grid = tf.constant(np.full((1, 2, 2, 2), 0.1, "float32"))
    with tf.GradientTape() as tape:
        tape.watch(grid)
        out = grid_sample(images, grid, "nearest")
    np.testing.assert_array_equal(tape.gradient(out, grid).numpy(), 0.0)


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_xla_with_unknown_batch_and_gradients(padding_mode):
    rng = np.random.default_rng(4)
    images = rng.normal(size=(3, 6, 5, 2)).astype("float32")
    theta = np.array([1, 0, 0, 0, 1, 0]) + 0.3 * rng.normal(size=(3, 6))
    theta = theta.astype("float32")

    @tf.function(
        jit_compile=True,
        input_signature=[
            tf.TensorSpec([None, 6, 5, 2], tf.float32),
            tf.TensorSpec([None, 6], tf.float32),
        ],
    )
    def step(x, t):
        with tf.GradientTape() as tape:
            tape.watch([x, t])
            out = grid_sample(
                x, affine_grid(t, (4, 3)), padding_mode=padding_mode
            )
            loss = tf.reduce_sum(out**2)
        return (out, *tape.gradient(loss, [x, t]))

    out, d_images, d_theta = step(images, theta)
    grid = np_affine_grid(theta, (4, 3))
    ref, _, _ = np_grid_sample(images, grid, padding_mode=padding_mode)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)
    eager = grid_sample(
        images, affine_grid(theta, (4, 3)), padding_mode=padding_mode
    )
    np.testing.assert_allclose(out.numpy(), np.asarray(eager), atol=1e-6)
    assert np.all(np.isfinite(d_images.numpy()))
    assert np.all(np.isfinite(d_theta.numpy()))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            dict(grid=np.zeros((1, 2, 2, 3), "float32")),
            ValueError,
            "the last dimension must be 2. Received: grid.shape=(1, 2, 2, 3)",
        ),
        (
            dict(grid=np.zeros((1, 2, 2), "float32")),
            ValueError,
            "Received: grid.shape=(1, 2, 2) (rank 3)",
        ),
        (
            dict(images=np.zeros((1, 3, 3), "float32")),
            ValueError,
            "Received: images.shape=(1, 3, 3) (rank 3)",
        ),
        (
            dict(images=np.zeros((1, 3, 3, 1), "uint8")),
            TypeError,
            "Expected a floating dtype. Received: images.dtype=uint8",
        ),
        (
            dict(grid=np.zeros((1, 2, 2, 2), "int32")),
            TypeError,
            "grid.dtype=int32",
        ),
        (
            dict(images=np.zeros((2, 3, 3, 1), "float32")),
            ValueError,
            "Mismatched batch sizes",
        ),
        (
            dict(padding_mode="wrap"),
            ValueError,
            "Expected one of ['zeros', 'border', 'reflection']. "
            "Received: padding_mode='wrap'",
        ),
        (
            dict(interpolation="bicubic"),
            ValueError,
            "Received: interpolation='bicubic'",
        ),
    ],
)
def test_bad_inputs(kwargs, exc, match):
    args = dict(
        images=np.zeros((1, 3, 3, 1), "float32"),
        grid=np.zeros((1, 2, 2, 2), "float32"),
    )
    args.update(kwargs)
    with pytest.raises(exc, match=re.escape(match)):
        grid_sample(**args)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("channels", [1, 16])
def test_samples_outside_the_image_are_zero_even_on_nan_pixels(
    interpolation, channels
):
    # Regression (issue 21): samples outside the image read pixel (0, 0)
    # with zero weights, and 0 * NaN gave NaN instead of the zero padding.
    images = np.ones((1, 3, 3, channels), "float32")
    images[0, 0, 0] = np.nan
    grid = np.array([[[[5.0, 5.0], [np.nan, 0.0], [-3.0, np.inf]]]], "f4")
    for fn in (grid_sample, tf.function(grid_sample, jit_compile=True)):
        out = np.asarray(fn(images, grid, interpolation))
        np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("padding_mode", ["border", "reflection"])
def test_nan_coordinates_give_zero_in_every_padding_mode(padding_mode):
    images = np.full((1, 2, 2, 1), 7.0, "float32")
    grid = np.array([[[[np.nan, 0.0], [0.0, 0.0]]]], "float32")
    out = np.asarray(grid_sample(images, grid, padding_mode=padding_mode))
    np.testing.assert_array_equal(out[0, 0, :, 0], [0.0, 7.0])


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_non_finite_coordinates_get_a_zero_gradient(
    padding_mode, interpolation
):
    # Regression (issue 21): 0 * NaN in the backward pass of the weights
    # (and of `mod` for "reflection") gave NaN gradients.
    images = tf.ones((1, 3, 3, 1))
    grid = tf.constant([[[[np.nan, 0.0], [np.inf, 0.0], [0.3, 0.2]]]])
    with tf.GradientTape() as tape:
        tape.watch(grid)
        out = grid_sample(images, grid, interpolation, padding_mode)
        total = tf.reduce_sum(out)
    grad = tape.gradient(total, grid).numpy()
    np.testing.assert_array_equal(grad[0, 0, :2], 0.0)
    assert np.isfinite(grad).all()
