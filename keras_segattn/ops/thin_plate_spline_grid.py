"""Sampling grids of thin-plate-spline warps (STN's TPS transform)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_segattn import validation
from keras_segattn.ops.affine_grid import _check_parameters
from keras_segattn.ops.affine_grid import _normalized_coordinates
from keras_segattn.validation import Tensor


def _tps_kernel(squared_distance: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log(r^2), with U(0) = 0."""
    safe = np.where(squared_distance > 0, squared_distance, 1.0)
    return np.where(squared_distance > 0, safe * np.log(safe), 0.0)


def thin_plate_spline_control_points(
    control_grid: int | Sequence[int],
) -> np.ndarray:
    """The fixed control points: a regular (rows, columns) grid spanning
    [-1, 1]^2, as float64 [K, 2] of normalised (x, y), row-major."""
    rows, columns = validation.standardize_size(control_grid, "control_grid")
    if rows < 2 or columns < 2:
        raise ValueError(
            "Invalid value for argument `control_grid`. Expected at least 2 "
            f"control points per axis. Received: control_grid={control_grid!r}."
        )
    ys, xs = np.meshgrid(
        np.linspace(-1.0, 1.0, rows),
        np.linspace(-1.0, 1.0, columns),
        indexing="ij",
    )
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def _interpolation_matrix(
    output_size: tuple[int, int],
    control_grid: tuple[int, int],
    align_corners: bool,
) -> np.ndarray:
    """[H * W, K] float64 matrix mapping control-point offsets to the offsets
    of every output pixel (the TPS interpolant, solved once in float64)."""
    points = thin_plate_spline_control_points(control_grid)
    count = len(points)
    squared = np.sum((points[:, None] - points[None]) ** 2, axis=-1)
    affine = np.concatenate([np.ones((count, 1)), points], axis=1)
    system = np.zeros((count + 3, count + 3))
    system[:count, :count] = _tps_kernel(squared)
    system[:count, count:] = affine
    system[count:, :count] = affine.T
    # Columns: the coefficients (w, a) for a unit offset at each point.
    coefficients = np.linalg.solve(
        system, np.concatenate([np.eye(count), np.zeros((3, count))])
    )
    height, width = output_size
    xs = _normalized_coordinates(width, align_corners, "float64")
    ys = _normalized_coordinates(height, align_corners, "float64")
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    pixels = np.stack([xx.ravel(), yy.ravel()], axis=-1)
    squared = np.sum((pixels[:, None] - points[None]) ** 2, axis=-1)
    basis = np.concatenate(
        [_tps_kernel(squared), np.ones((len(pixels), 1)), pixels], axis=1
    )
    return basis @ coefficients


def thin_plate_spline_grid(
    params: Tensor,
    output_size: int | Sequence[int],
    control_grid: int | Sequence[int] = 3,
    align_corners: bool = False,
) -> Tensor:
    """Generates the sampling grid of a thin-plate-spline (TPS) warp.

    The TPS transform of Jaderberg et al. (2015), section 3.1 (after
    Bookstein, 1989): a regular `control_grid` of K control points spans
    [-1, 1]^2 in output coordinates, `params` moves each one by an offset
    `(dx, dy)` in normalised input coordinates, and every output pixel is
    moved by the thin-plate-spline interpolation of those offsets (kernel
    `U(r) = r^2 log r^2` plus an affine part), i.e. output pixel `p`
    samples the input at `p + sum_i w_i U(|p - c_i|) + a_0 + a_1 x + a_2 y`.
    The interpolation matrix depends only on the sizes, so it is solved
    once in float64 (NumPy) and the op itself is one matrix product.
    Zero offsets are the identity and give exactly the identity grid of
    `affine_grid`; pixel-centre conventions are those of
    `torch.nn.functional.affine_grid` (PyTorch has no TPS op).

    Args:
        params: float tensor [B, 2 K] (the offsets `(dx_1, dy_1, dx_2, ...)`
            of the control points, row-major) or [B, K, 2].
        output_size: int or (height, width) of the grid.
        control_grid: int or (rows, columns) >= 2 of control points.
        align_corners: bool. PyTorch's `align_corners`.

    Returns:
        Tensor [B, height, width, 2] of normalised `(x, y)` coordinates
        (float64 for float64 `params`, float32 otherwise).

    Raises:
        ValueError: if `params` does not hold 2 K offsets, or `output_size`
            or `control_grid` is invalid.
        TypeError: if `params` is not floating.

    Example:

    >>> params = np.zeros((1, 18), "float32")  # 3x3 points, identity
    >>> np.asarray(thin_plate_spline_grid(params, (1, 2)))[0, 0]
    array([[-0.5,  0. ],
           [ 0.5,  0. ]], dtype=float32)

    Reference:
        - [Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015](
          https://arxiv.org/abs/1506.02025)
        - Bookstein, "Principal warps: thin-plate splines and the
          decomposition of deformations", IEEE TPAMI 1989.
    """
    output_size = validation.standardize_size(output_size, "output_size")
    control_grid = validation.standardize_size(control_grid, "control_grid")
    count = control_grid[0] * control_grid[1]
    params = _check_parameters(
        params,
        "params",
        2 * count,
        (count, 2),
        f"[B, {2 * count}] or [B, {count}, 2] offsets of the "
        f"{control_grid[0]}x{control_grid[1]} control points",
    )
    dtype = keras.backend.standardize_dtype(params.dtype)
    align_corners = bool(align_corners)
    matrix = _interpolation_matrix(output_size, control_grid, align_corners)
    height, width = output_size
    xs = _normalized_coordinates(width, align_corners, dtype)
    ys = _normalized_coordinates(height, align_corners, dtype)
    base = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None]), axis=-1)
    offsets = ops.matmul(
        ops.convert_to_tensor(matrix.astype(dtype)),  # [H W, K]
        ops.reshape(params, (-1, count, 2)),  # [B, K, 2]
    )
    offsets = ops.reshape(offsets, (-1, height, width, 2))
    return ops.convert_to_tensor(base[None]) + offsets
