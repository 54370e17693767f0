"""Sampling grids of the attention transform (isotropic scale + shift)."""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

from keras_segattn import validation
from keras_segattn.ops.affine_grid import _check_parameters
from keras_segattn.ops.affine_grid import affine_grid
from keras_segattn.validation import Tensor


def attention_grid(
    params: Tensor,
    output_size: int | Sequence[int],
    align_corners: bool = False,
) -> Tensor:
    """Generates the sampling grid of the STN "attention" transform.

    The constrained transform of Jaderberg et al. (2015), section 3.1:
    `theta = [[s, 0, tx], [0, s, ty]]`, an isotropic scaling by `s` and a
    translation by `(tx, ty)` in normalised coordinates, i.e. a square
    crop (a glimpse) whose centre is `(tx, ty)` and whose side is `s`
    times the image's. Equal to `affine_grid` of that matrix, with
    PyTorch's `affine_grid` conventions (see there); the identity is
    `(1, 0, 0)`.

    Args:
        params: float tensor [B, 3] of `(s, tx, ty)`.
        output_size: int or (height, width) of the grid.
        align_corners: bool. PyTorch's `align_corners`.

    Returns:
        Tensor [B, height, width, 2] of normalised `(x, y)` coordinates
        (float64 for float64 `params`, float32 otherwise).

    Raises:
        ValueError: if `params` is not [B, 3] or `output_size` is invalid.
        TypeError: if `params` is not floating.

    Example:

    >>> params = np.array([[0.5, 0.5, 0.5]], "float32")  # bottom-right
    >>> np.asarray(attention_grid(params, 1))[0, 0, 0]
    array([0.5, 0.5], dtype=float32)

    Reference:
        - [Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015](
          https://arxiv.org/abs/1506.02025)
    """
    output_size = validation.standardize_size(output_size, "output_size")
    params = _check_parameters(
        params, "params", 3, (3,), "[B, 3] attention parameters (s, tx, ty)"
    )
    scale, shift_x, shift_y = (params[:, k] for k in range(3))
    zero = ops.zeros_like(scale)
    theta = ops.stack([scale, zero, shift_x, zero, scale, shift_y], axis=-1)
    return affine_grid(theta, output_size, align_corners)
