"""Sampling grids from affine matrices (`torch.nn.functional.affine_grid`)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_segattn import validation
from keras_segattn.validation import Tensor


def _coordinate_dtype(x) -> str:
    """float64 for float64 parameters, float32 otherwise (also for float16:
    coordinates are never rounded to half precision)."""
    dtype = keras.backend.standardize_dtype(x.dtype)
    return "float64" if dtype == "float64" else "float32"


def _normalized_coordinates(
    size: int, align_corners: bool, dtype: str
) -> np.ndarray:
    """The `size` normalised pixel-centre coordinates of one axis, in [-1, 1].

    `align_corners=True`: `linspace(-1, 1, size)` (the first and last
    centres at -1 and 1); False: `(2 i + 1) / size - 1` (the image edges at
    -1 and 1). Computed in float64 from exact integers and rounded once, so
    each value is the correctly rounded one (PyTorch's float32 `linspace`
    can differ from it in the last bit).
    """
    index = np.arange(size, dtype="float64")
    if align_corners:
        if size == 1:  # torch.linspace(-1, 1, 1) == [-1]
            return np.full((1,), -1.0, dtype)
        values = (2.0 * index - (size - 1)) / (size - 1)
    else:
        values = (2.0 * index + 1.0 - size) / size
    return values.astype(dtype)


def _base_grid(
    output_size: tuple[int, int], align_corners: bool, dtype: str
) -> tuple[Tensor, Tensor]:
    """`(x, y)`: x [1, 1, W] and y [1, H, 1] normalised output coordinates."""
    height, width = output_size
    xs = _normalized_coordinates(width, align_corners, dtype)
    ys = _normalized_coordinates(height, align_corners, dtype)
    return (
        ops.convert_to_tensor(xs.reshape(1, 1, width), dtype),
        ops.convert_to_tensor(ys.reshape(1, height, 1), dtype),
    )


def _check_parameters(
    params, name: str, count: int, matrix_shape: tuple[int, int], expected: str
) -> Tensor:
    """Converts transform parameters and checks their static shape.

    Accepts [B, count] or [B, *matrix_shape]; returns [B, count] in the
    coordinate dtype.
    """
    params = ops.convert_to_tensor(params)
    validation.check_floating(params.dtype, name)
    shape = validation.static_shape(params)
    ok = shape is not None and (
        (len(shape) == 2 and shape[1] == count)
        or (len(shape) == 3 and tuple(shape[1:]) == matrix_shape)
    )
    if not ok:
        raise ValueError(
            f"Invalid shape for argument `{name}`. Expected {expected}. "
            f"Received: {name}.shape={shape}."
        )
    params = ops.cast(params, _coordinate_dtype(params))
    return ops.reshape(params, (-1, count))


def _column(params, index: int) -> Tensor:
    """Parameter `index` of every batch element as [B, 1, 1]."""
    return ops.reshape(params[:, index], (-1, 1, 1))


def affine_grid(
    theta: Tensor,
    output_size: int | Sequence[int],
    align_corners: bool = False,
) -> Tensor:
    """Generates the sampling grid of a batch of 2D affine transforms.

    The grid generator of a spatial transformer (Jaderberg et al., 2015),
    matching `torch.nn.functional.affine_grid` for 2D inputs: output pixel
    `(i, j)` has normalised coordinates `(x_j, y_i)` in [-1, 1] and is
    mapped to `theta @ (x_j, y_i, 1)`, the normalised `(x, y)` position of
    the input image to sample (with `grid_sample`). With
    `align_corners=False` the pixel centres are at `(2 j + 1) / W - 1`
    (-1 and 1 are the image's outer edges); with `align_corners=True` at
    `linspace(-1, 1, W)` (-1 and 1 are the centres of the corner pixels).
    The identity `theta = [[1, 0, 0], [0, 1, 0]]` gives exactly these
    coordinates, so `grid_sample` then returns its input unchanged.

    Unlike PyTorch (N, C, H, W), `output_size` is just `(height, width)`,
    and the result is channels-last like the rest of this package. The
    grid is float64 for float64 `theta` and float32 otherwise (float16
    `theta` is upcast: coordinates are never computed in half precision).

    Args:
        theta: float tensor [B, 2, 3], or [B, 6] (the same matrices
            flattened row-major: `(a, b, tx, c, d, ty)`), mapping output to
            input coordinates.
        output_size: int or (height, width) of the grid.
        align_corners: bool. PyTorch's `align_corners`.

    Returns:
        Tensor [B, height, width, 2] of normalised `(x, y)` coordinates.

    Raises:
        ValueError: if `theta` is not [B, 2, 3] or [B, 6], or
            `output_size` is not a positive int or a pair of them.
        TypeError: if `theta` is not floating.

    Example:

    >>> theta = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], "float32")
    >>> grid = affine_grid(theta, (1, 2))
    >>> np.asarray(grid)[0, 0]
    array([[-0.5,  0. ],
           [ 0.5,  0. ]], dtype=float32)

    Reference:
        - [Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015](
          https://arxiv.org/abs/1506.02025)
        - `torch.nn.functional.affine_grid` (pytorch/pytorch:
          aten/src/ATen/native/AffineGridGenerator.cpp).
    """
    output_size = validation.standardize_size(output_size, "output_size")
    theta = _check_parameters(
        theta,
        "theta",
        6,
        (2, 3),
        "affine matrices [B, 2, 3] or their flat form [B, 6]",
    )
    dtype = keras.backend.standardize_dtype(theta.dtype)
    xs, ys = _base_grid(output_size, bool(align_corners), dtype)

    @ops.custom_gradient
    def grid(theta):
        grid_x = _column(theta, 0) * xs + _column(theta, 1) * ys
        grid_x = grid_x + _column(theta, 2)
        grid_y = _column(theta, 3) * xs + _column(theta, 4) * ys
        grid_y = grid_y + _column(theta, 5)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return _theta_gradient(upstream, xs, ys)

        return ops.stack([grid_x, grid_y], axis=-1), grad

    return grid(theta)


def _theta_gradient(upstream, xs, ys) -> Tensor:
    """d loss / d theta [B, 6] from d loss / d grid [B, H, W, 2]: one
    matrix product with the homogeneous base grid [H * W, 3] (`xs`
    [1, 1, W] and `ys` [1, H, 1] of `_base_grid`), as PyTorch's backward
    (AffineGridGenerator.cpp) computes it. Autodiff of the broadcast
    products gave six separate reductions over H * W, which XLA on CPU
    runs as trees of reduce-windows (affine_grid + grid_sample training
    path at B64 60x60x1: 4.3 -> 3.9 ms)."""
    height, width = ys.shape[1], xs.shape[2]
    plane = (height, width)
    base = ops.stack(
        [
            ops.broadcast_to(ops.reshape(xs, (1, width)), plane),
            ops.broadcast_to(ops.reshape(ys, (height, 1)), plane),
            ops.ones(plane, xs.dtype),
        ],
        axis=-1,
    )
    rows = ops.transpose(
        ops.reshape(upstream, (-1, height * width, 2)), (0, 2, 1)
    )  # [B, 2, H * W]: the x then the y row of each matrix
    grad = ops.matmul(
        ops.reshape(rows, (-1, height * width)),
        ops.reshape(base, (height * width, 3)),
    )
    return ops.reshape(grad, (-1, 6))
