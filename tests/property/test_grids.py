"""Property-based tests of the sampling grids (affine_grid,
attention_grid, projective_grid, thin_plate_spline_grid), grid_sample and
the SpatialTransformer layer's dtype check.

Properties: grids are [B, h, w, 2], float64 for float64 parameters and
float32 otherwise, finite with finite gradients for finite parameters
(huge ones included), NaN parameters only reach their own batch element,
eager equals XLA. grid_sample: [B, h, w, C] of the images' dtype; finite
output and gradients for finite images and grids (huge coordinates
included); NaN grid coordinates give 0 in every padding mode, infinite
ones 0 except with "border"; samples outside the image are exactly 0
with "zeros" padding even when the image holds NaN; integers refused.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from keras_segattn import layers
from keras_segattn import ops
from tests.property import helpers as h

# name -> (op, number of parameters, their identity)
GRIDS = {
    "affine_grid": (ops.affine_grid, 6, [1, 0, 0, 0, 1, 0]),
    "attention_grid": (ops.attention_grid, 3, [1, 0, 0]),
    "projective_grid": (ops.projective_grid, 8, [1, 0, 0, 0, 1, 0, 0, 0]),
    "thin_plate_spline_grid": (ops.thin_plate_spline_grid, 18, [0] * 18),
}
SIZES = st.sampled_from([(1, 1), (2, 3), (4, 4)])
PARAMS = st.one_of(h.finite(10.0), st.sampled_from([1e30, -1e30, 1e-30]))


@pytest.mark.parametrize("name", sorted(GRIDS))
@given(
    dtype=h.float_dtypes,
    batch=st.sampled_from([0, 1, 2]),
    size=SIZES,
    align_corners=st.booleans(),
    data=st.data(),
)
def test_grids(name, dtype, batch, size, align_corners, data):
    op, count, _ = GRIDS[name]
    params = data.draw(h.array((batch, count), PARAMS))
    if dtype in ("float16", "bfloat16"):  # huge values overflow halves
        params = np.clip(params, -1e4, 1e4)
    params_t = h.tensor(params, dtype)

    def fn(p):
        return op(p, size, align_corners=align_corners)

    key = (name, size, align_corners)
    magnitude = float(np.abs(params).max(initial=1.0))  # rounding scale
    (grid,) = h.assert_eager_equals_xla(
        fn, (params_t,), key, "float32", scale=max(1.0, magnitude)
    )
    assert grid.shape == (batch, *size, 2)
    expected = "float64" if dtype == "float64" else "float32"
    assert fn(params_t).dtype == expected
    if np.abs(params).max(initial=0.0) < 1e20:
        h.assert_all_finite(grid)
        if dtype in ("float32", "float64"):
            # Half-precision parameters get half-precision gradients, which
            # overflow where a projective denominator nears 0 (1e6).
            h.assert_all_finite(*h.gradients(fn, (params_t,), (0,)))


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_nan_parameters_stay_in_their_batch_element(name):
    op, count, identity = GRIDS[name]
    params = np.array([identity, identity], "float32")
    params[0, -1] = np.nan
    grid = np.asarray(op(params, (2, 3)))
    assert np.isnan(grid[0]).any() and np.isfinite(grid[1]).all()


@pytest.mark.parametrize("name", sorted(GRIDS))
@given(dtype=h.integer_dtypes)
def test_grids_refuse_integer_parameters(name, dtype):
    op, count, identity = GRIDS[name]
    with pytest.raises(TypeError, match=r"\.dtype=" + dtype):
        op(np.array([identity], dtype), 2)


COORDINATES = st.one_of(
    h.finite(1.5), st.sampled_from([1e30, -1e30, 7.0, -7.0])
)


@st.composite
def _sampling(draw, special: bool = False):
    batch = draw(st.sampled_from([0, 1, 2]))
    height, width = draw(SIZES)
    channels = draw(st.sampled_from([1, 16]))  # both gather paths
    images = draw(h.array((batch, height, width, channels), h.finite()))
    coordinates = (
        st.one_of(COORDINATES, h.non_finite()) if special else (COORDINATES)
    )
    grid = draw(h.array((batch, 2, 2, 2), coordinates))
    return images, grid


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@given(
    data=_sampling(),
    dtype=h.float_dtypes,
    interpolation=st.sampled_from(["bilinear", "nearest"]),
    align_corners=st.booleans(),
)
def test_grid_sample_finite(
    padding_mode, data, dtype, interpolation, align_corners
):
    images, grid = data
    images_t = h.tensor(images, dtype)
    grid_t = h.tensor(grid, "float64" if dtype == "float64" else "float32")

    def fn(x, g):
        return ops.grid_sample(x, g, interpolation, padding_mode, align_corners)

    key = ("grid_sample", interpolation, padding_mode, align_corners)
    if padding_mode == "reflection" and np.abs(grid).max(initial=0) > 1e6:
        # Reflecting 1e30 (ulp 7e22) by an image size is float noise, and
        # eager and XLA `mod` differ: only finiteness is promised there.
        out = h.numpy(fn(images_t, grid_t))
    else:
        (out,) = h.assert_eager_equals_xla(fn, (images_t, grid_t), key, dtype)
    assert out.shape == (*grid.shape[:3], images.shape[-1])
    assert fn(images_t, grid_t).dtype == images_t.dtype
    h.assert_all_finite(out, *h.gradients(fn, (images_t, grid_t), (0, 1)))


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@given(
    data=_sampling(special=True),
    interpolation=st.sampled_from(["bilinear", "nearest"]),
)
def test_grid_sample_non_finite(padding_mode, data, interpolation):
    images, grid = data
    if images.shape[0] == 0:
        return
    images = images.copy()
    images[:, 0, 0] = np.nan  # pixel (0, 0): what invalid samples read
    out = h.numpy(
        ops.grid_sample(
            h.tensor(images, "float32"),
            h.tensor(grid, "float32"),
            interpolation,
            padding_mode,
        )
    )
    nan_coordinate = np.isnan(grid).any(-1)
    infinite = np.isinf(grid).any(-1)
    np.testing.assert_array_equal(out[nan_coordinate], 0.0)
    if padding_mode != "border":
        np.testing.assert_array_equal(out[infinite], 0.0)
    if padding_mode == "zeros":
        # Far outside the image (2 pixels beyond the edge for any size).
        outside = (np.abs(np.nan_to_num(grid)) > 6.0).any(-1)
        np.testing.assert_array_equal(out[outside], 0.0)
    grads = h.gradients(
        lambda g: ops.grid_sample(
            h.tensor(np.nan_to_num(images), "float32"),
            g,
            interpolation,
            padding_mode,
        ),
        (h.tensor(grid, "float32"),),
        (0,),
    )
    np.testing.assert_array_equal(grads[0][nan_coordinate], 0.0)


@given(dtype=h.integer_dtypes, argument=st.sampled_from(["images", "grid"]))
def test_grid_sample_refuses_integers(dtype, argument):
    images = np.zeros((1, 2, 2, 1), "float32")
    grid = np.zeros((1, 1, 1, 2), "float32")
    if argument == "images":
        images = images.astype(dtype)
    else:
        grid = grid.astype(dtype)
    with pytest.raises(TypeError, match=f"{argument}.dtype={dtype}"):
        ops.grid_sample(images, grid)


def test_spatial_transformer_refuses_integer_images():
    localization = keras.Sequential(
        [keras.layers.Flatten(), layers.build_localization_head()]
    )
    layer = layers.SpatialTransformer(localization, (2, 2))
    with pytest.raises(TypeError, match="images.dtype=int32"):
        layer(tf.zeros((1, 4, 4, 1), tf.int32))
