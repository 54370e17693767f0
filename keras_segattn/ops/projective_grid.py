"""Sampling grids of 2D projective transforms (homographies)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.ops.affine_grid import _base_grid
from keras_segattn.ops.affine_grid import _check_parameters
from keras_segattn.ops.affine_grid import _column
from keras_segattn.validation import Tensor

# |denominator| is kept at least this large (with its sign), so points
# mapped to infinity get huge, finite coordinates (sampled as padding) and
# finite gradients.
_MIN_DENOMINATOR = 1e-6


def projective_grid(
    params: Tensor,
    output_size: int | Sequence[int],
    align_corners: bool = False,
) -> Tensor:
    """Generates the sampling grid of a batch of 2D projective transforms.

    The 8-parameter projective transform named by Jaderberg et al. (2015),
    section 3.1: output pixel `(x, y)` (normalised, as in `affine_grid`)
    samples the input at
    `((h0 x + h1 y + h2) / d, (h3 x + h4 y + h5) / d)` with
    `d = h6 x + h7 y + 1`, i.e. the homography `[[h0, h1, h2],
    [h3, h4, h5], [h6, h7, 1]]`. `(1, 0, 0, 0, 1, 0, 0, 0)` is the identity
    and gives exactly the identity grid of `affine_grid`; `h6 = h7 = 0` is
    an affine transform. PyTorch has no such op: the pixel-centre
    conventions are those of `torch.nn.functional.affine_grid`. Where
    `|d| < 1e-6` (points sent to infinity) `d` is clamped to `±1e-6`, so
    the coordinates and gradients stay finite.

    Args:
        params: float tensor [B, 8] of `(h0, ..., h7)`, or [B, 3, 3]
            homographies (used as given, not divided by their last entry).
        output_size: int or (height, width) of the grid.
        align_corners: bool. PyTorch's `align_corners`.

    Returns:
        Tensor [B, height, width, 2] of normalised `(x, y)` coordinates
        (float64 for float64 `params`, float32 otherwise).

    Raises:
        ValueError: if `params` is not [B, 8] or [B, 3, 3], or
            `output_size` is invalid.
        TypeError: if `params` is not floating.

    Example:

    >>> params = np.array([[1, 0, 0, 0, 1, 0, 0, 0]], "float32")
    >>> np.asarray(projective_grid(params, (1, 2)))[0, 0]
    array([[-0.5,  0. ],
           [ 0.5,  0. ]], dtype=float32)

    Reference:
        - [Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015](
          https://arxiv.org/abs/1506.02025)
    """
    output_size = validation.standardize_size(output_size, "output_size")
    expected = "[B, 8] projective parameters or [B, 3, 3] homographies"
    params = ops.convert_to_tensor(params)
    shape = validation.static_shape(params)
    if shape is not None and len(shape) == 3:
        params = _check_parameters(params, "params", 9, (3, 3), expected)
        denominator_constant = _column(params, 8)
    else:
        params = _check_parameters(params, "params", 8, (8,), expected)
        denominator_constant = 1.0
    dtype = keras.backend.standardize_dtype(params.dtype)
    xs, ys = _base_grid(output_size, bool(align_corners), dtype)
    x = _column(params, 0) * xs + _column(params, 1) * ys + _column(params, 2)
    y = _column(params, 3) * xs + _column(params, 4) * ys + _column(params, 5)
    denominator = _column(params, 6) * xs + _column(params, 7) * ys
    denominator = denominator + denominator_constant
    magnitude = ops.maximum(ops.abs(denominator), _MIN_DENOMINATOR)
    denominator = ops.where(ops.less(denominator, 0.0), -magnitude, magnitude)
    return ops.stack([x / denominator, y / denominator], axis=-1)
