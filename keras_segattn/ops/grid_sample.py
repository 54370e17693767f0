"""Differentiable image sampling (`torch.nn.functional.grid_sample`)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_segattn import validation
from keras_segattn.ops._fusion import materialize
from keras_segattn.validation import Tensor

INTERPOLATIONS = ("bilinear", "nearest")
PADDING_MODES = ("zeros", "border", "reflection")

# Unnormalised coordinates closer than `_SNAP_ULPS * eps * size` pixels to an
# integer are moved onto it (value only; the gradient is untouched). The
# normalised pixel centres of `affine_grid` carry float rounding that
# unnormalising magnifies by size / 2, so without this an identity grid would
# give 0.99999994 * pixel + 6e-8 * neighbour instead of the pixel itself.
_SNAP_ULPS = 2.0
# Below this many (static) channels the bilinear corners are gathered from
# a neighbourhood table; at and above it (or unknown), from the padded
# images (measured crossover on a 2-core CPU with XLA, forward + backward).
_TABLE_MAX_CHANNELS = 4


def _dims(x) -> list:
    """Each dimension of `x` as a static int, or a scalar tensor if unknown."""
    dynamic = ops.shape(x)
    return [
        static if static is not None else dynamic[axis]
        for axis, static in enumerate(x.shape)
    ]


def _check_inputs(images, grid) -> tuple[Tensor, Tensor]:
    images = ops.convert_to_tensor(images)
    grid = ops.convert_to_tensor(grid)
    validation.check_rank(images, 4, "images")
    validation.check_floating(images.dtype, "images")
    shape = validation.check_rank(grid, 4, "grid")
    if shape is not None and shape[-1] is not None and shape[-1] != 2:
        raise ValueError(
            "Invalid shape for argument `grid`. Expected [B, h, w, 2] of "
            "normalised (x, y) coordinates: the last dimension must be 2. "
            f"Received: grid.shape={shape}."
        )
    validation.check_floating(grid.dtype, "grid")
    image_batch = validation.static_shape(images)[0]
    if image_batch is not None and shape[0] is not None:
        if image_batch != shape[0]:
            raise ValueError(
                "Mismatched batch sizes: `images` and `grid` must have the "
                "same batch size B. Received: "
                f"images.shape={validation.static_shape(images)} and "
                f"grid.shape={shape}."
            )
    return images, grid


def _unnormalize(coord, size, align_corners: bool, dtype: str) -> Tensor:
    """Normalised [-1, 1] -> pixel coordinates (PyTorch's formulas), with
    coordinates within float noise of an integer snapped onto it."""
    size = ops.cast(size, dtype)
    if align_corners:
        pixel = ((coord + 1.0) / 2.0) * (size - 1.0)
    else:
        pixel = ((coord + 1.0) * size - 1.0) / 2.0
    eps = float(np.finfo(dtype).eps)
    tolerance = _SNAP_ULPS * eps * ops.maximum(size, 1.0)
    nearest = ops.round(pixel)
    close = ops.less_equal(ops.abs(pixel - nearest), tolerance)
    # `pixel + (nearest - pixel)` is exactly `nearest` (Sterbenz), and an
    # infinite `pixel` is left alone (never inf - inf).
    correction = ops.where(close, nearest - pixel, ops.zeros_like(pixel))
    return pixel + ops.stop_gradient(correction)


def _clip(coord, size, dtype: str) -> Tensor:
    """Clamps to [0, size - 1] with PyTorch's gradient: 1 strictly inside,
    0 on and beyond the edges (`clip_coordinates_set_grad`)."""
    upper = ops.cast(size, dtype) - 1.0
    zero = ops.zeros_like(coord)
    return ops.where(
        ops.less_equal(coord, 0.0),
        zero,
        ops.where(ops.greater_equal(coord, upper), zero + upper, coord),
    )


def _reflect(coord, size, align_corners: bool, dtype: str) -> Tensor:
    """PyTorch's `reflect_coordinates`: reflects about the borders (pixel
    centres 0 and size - 1 with `align_corners`, else the edges -0.5 and
    size - 0.5) until the coordinate is inside; the gradient's sign flips
    with each reflection, as in `reflect_coordinates_set_grad`."""
    size = ops.cast(size, dtype)
    if align_corners:
        twice_low, twice_high = 0.0, 2.0 * (size - 1.0)
    else:
        twice_low, twice_high = -1.0, 2.0 * size - 1.0
    minimum = twice_low / 2.0
    span = (twice_high - twice_low) / 2.0
    degenerate = ops.less_equal(span, 0.0)  # one pixel, align_corners
    span = ops.where(degenerate, 1.0, span)
    distance = ops.abs(coord - minimum)
    extra = ops.mod(distance, span)
    flips = ops.floor(distance / span)
    even = ops.equal(ops.mod(flips, 2.0), 0.0)
    reflected = ops.where(even, extra + minimum, span - extra + minimum)
    return ops.where(degenerate, ops.zeros_like(reflected), reflected)


def _source_index(coord, size, padding_mode, align_corners, dtype) -> Tensor:
    """PyTorch's `grid_sampler_compute_source_index`.

    NaN coordinates (and infinite ones with "reflection", which has no
    edge to reflect them to) come back as NaN, which the samplers read as
    outside the image, and they are replaced by 0 in between, so that no
    NaN reaches the gradient through `floor`, `mod` or `where`.
    """
    if padding_mode == "reflection":
        unusable = ops.logical_not(ops.isfinite(coord))
    else:
        unusable = ops.isnan(coord)
    coord = ops.where(unusable, ops.zeros_like(coord), coord)
    coord = _unnormalize(coord, size, align_corners, dtype)
    if padding_mode == "border":
        coord = _clip(coord, size, dtype)
    elif padding_mode == "reflection":
        coord = _reflect(coord, size, align_corners, dtype)
        coord = _clip(coord, size, dtype)
    return ops.where(unusable, float("nan"), coord)


def _neighbourhood_table(images) -> Tensor:
    """[B, H, W, C] -> [B * (H + 1) * (W + 1), 4 * C].

    Row `(b, y + 1, x + 1)` holds pixels (y, x), (y, x + 1), (y + 1, x) and
    (y + 1, x + 1) for y in [-1, H - 1] and x in [-1, W - 1], with zeros
    outside the image, so one gather fetches all four bilinear corners and
    out-of-range corners contribute 0 (zeros padding) with no extra mask.

    Four shifted slices concatenated, not RoIAlign's gathered
    `ops._tables.neighbourhood_table`: here XLA fuses a gathered table
    into the sampling gather, which doubled the forward (B64 60x60x1).
    """
    channels = _dims(images)[3]
    padded = ops.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    table = ops.concatenate(
        [
            padded[:, :-1, :-1],
            padded[:, :-1, 1:],
            padded[:, 1:, :-1],
            padded[:, 1:, 1:],
        ],
        axis=-1,
    )
    return ops.reshape(table, (-1, 4 * channels))


def _batch_offsets(batch, rows_per_image, dtype="int32") -> Tensor:
    """[B, 1, 1] int32 offsets `b * rows_per_image` into a flat table."""
    return ops.reshape(
        ops.arange(batch, dtype=dtype) * ops.cast(rows_per_image, dtype),
        (-1, 1, 1),
    )


def _bilinear(images, ix, iy, dims) -> Tensor:
    batch, height, width, channels = dims
    dtype = keras.backend.standardize_dtype(ix.dtype)
    x0 = ops.floor(ix)
    y0 = ops.floor(iy)
    # A sample touches the image iff its top-left corner is in
    # [-1, W - 1] x [-1, H - 1] (False for NaN coordinates as well).
    valid = ops.logical_and(
        ops.logical_and(
            ops.greater_equal(x0, -1.0),
            ops.less_equal(x0, ops.cast(width, dtype) - 1.0),
        ),
        ops.logical_and(
            ops.greater_equal(y0, -1.0),
            ops.less_equal(y0, ops.cast(height, dtype) - 1.0),
        ),
    )
    zero = ops.zeros_like(x0)
    # Invalid samples get coordinate 0 before the weights, so that a NaN
    # or infinite coordinate cannot reach the gradient (0 * NaN is NaN).
    ix = ops.where(valid, ix, zero)
    iy = ops.where(valid, iy, zero)
    x0 = ops.where(valid, x0, zero)
    y0 = ops.where(valid, y0, zero)
    # PyTorch's weights: nw = (x_se - x) (y_se - y), ne = (x - x_sw)
    # (y_sw - y), sw = (x_ne - x) (y - y_ne), se = (x - x_nw) (y - y_nw).
    wx1 = ix - x0
    wx0 = (x0 + 1.0) - ix
    wy1 = iy - y0
    wy0 = (y0 + 1.0) - iy
    column = ops.cast(ops.where(valid, x0 + 1.0, zero), "int32")
    row = ops.cast(ops.where(valid, y0 + 1.0, zero), "int32")
    weights = [
        ops.cast(ops.where(valid, w, zero), images.dtype)
        for w in (wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1)
    ]
    out_h, out_w = _dims(ix)[1:3]
    if isinstance(channels, int) and channels < _TABLE_MAX_CHANNELS:
        # Few channels: one gather of 4 C values per sample from the
        # neighbourhood table (its one scatter-add is the cheap gradient).
        table_width = ops.cast(width, "int32") + 1
        rows_per_image = (ops.cast(height, "int32") + 1) * table_width
        (index,) = materialize(
            _batch_offsets(batch, rows_per_image) + row * table_width + column
        )
        corners = ops.take(_neighbourhood_table(images), index, axis=0)
    else:
        # Many channels: building the table (4 copies of the images) costs
        # more than it saves; gather the four corners from the zero-padded
        # images with a [B, h, w, 4] index instead.
        padded_width = ops.cast(width, "int32") + 2
        rows_per_image = (ops.cast(height, "int32") + 2) * padded_width
        (index,) = materialize(
            _batch_offsets(batch, rows_per_image) + row * padded_width + column
        )
        index = ops.expand_dims(index, -1) + ops.stack(
            [0, 1, padded_width, padded_width + 1]
        )
        padded = ops.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
        values = _weighted_corners(
            ops.reshape(padded, (-1, channels)),
            ops.reshape(index, (-1, 4)),
            ops.reshape(ops.stack(weights, axis=-1), (-1, 4, 1)),
        )
        values = ops.reshape(values, (-1, out_h, out_w, channels))
        return ops.where(ops.expand_dims(valid, -1), values, 0.0)
    corners = ops.reshape(corners, (-1, out_h, out_w, 4, channels))
    if channels == 1:
        # The four weighted corners added one by one: XLA then computes the
        # weights inside the forward's and the gradient's fusions, where it
        # stored a stack of them (B64 60x60x1 training path 4.7 -> 3.7 ms).
        # With more channels each channel would recompute them (C = 2:
        # 6.0 -> 6.2 ms; C = 4: 12.8 -> 14.9 ms), so they stay stacked.
        values = corners[..., 0, :] * ops.expand_dims(weights[0], -1)
        for k in range(1, 4):
            term = corners[..., k, :] * ops.expand_dims(weights[k], -1)
            values = values + term
    else:
        weights = ops.expand_dims(ops.stack(weights, axis=-1), -1)
        values = ops.sum(corners * weights, axis=-2)
    # Invalid samples read row 0 with zero weights, but 0 * NaN is NaN:
    # select, so they are 0 whatever the image holds.
    return ops.where(ops.expand_dims(valid, -1), values, 0.0)


def _weighted_corners(flat, index, weights) -> Tensor:
    """`sum_k weights[n, k] * flat[index[n, k]]`: [R, C], [N, 4], [N, 4, 1]
    -> [N, C], with a gradient that gathers the corners again.

    Autodiff would keep the forward's gathered corners ([N, 4, C], four
    times the output) for the weights' gradient: under XLA the gather is
    then written to memory once and read by the forward's sum and by the
    backward, where alone XLA fuses it into each reduction. Gathering
    again in the backward (a gather of another index shape, which XLA
    does not merge with the forward's) keeps both fused. Values and
    gradients are unchanged (the same products summed in the same
    order). Training path of `grid_sample(affine_grid)` at B16
    128x128x32 with XLA on a 2-core CPU: 97 -> 77 ms.
    """
    rows, channels = ops.shape(flat)[0], ops.shape(flat)[1]

    @ops.custom_gradient
    def forward(flat, weights):
        values = ops.sum(ops.take(flat, index, axis=0) * weights, axis=1)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            upstream = ops.expand_dims(upstream, 1)
            flat_index = ops.reshape(index, (-1,))
            corners = ops.take(flat, flat_index, axis=0)
            corners = ops.reshape(corners, (-1, 4, channels))
            d_weights = ops.sum(corners * upstream, axis=-1, keepdims=True)
            updates = ops.reshape(weights * upstream, (-1, channels))
            d_flat = ops.segment_sum(updates, flat_index, num_segments=rows)
            return d_flat, d_weights

        return values, grad

    return forward(flat, weights)


def _nearest(images, ix, iy, dims) -> Tensor:
    batch, height, width, channels = dims
    dtype = keras.backend.standardize_dtype(ix.dtype)
    # `ops.round` rounds half to even, like PyTorch's `nearbyint`.
    x = ops.round(ix)
    y = ops.round(iy)
    valid = ops.logical_and(
        ops.logical_and(
            ops.greater_equal(x, 0.0),
            ops.less_equal(x, ops.cast(width, dtype) - 1.0),
        ),
        ops.logical_and(
            ops.greater_equal(y, 0.0),
            ops.less_equal(y, ops.cast(height, dtype) - 1.0),
        ),
    )
    zero = ops.zeros_like(x)
    column = ops.cast(ops.where(valid, x, zero), "int32")
    row = ops.cast(ops.where(valid, y, zero), "int32")
    width_i = ops.cast(width, "int32")
    rows_per_image = ops.cast(height, "int32") * width_i
    (index,) = materialize(
        _batch_offsets(batch, rows_per_image) + row * width_i + column
    )
    flat = ops.reshape(images, (-1, channels))
    values = ops.take(flat, index, axis=0)  # [B, h, w, C]
    # A zero-valued term that depends on the grid, so that the grid gets a
    # zero gradient (as in PyTorch) instead of none at all.
    finite = ops.logical_and(ops.isfinite(ix), ops.isfinite(iy))
    link = ops.where(
        finite,
        (ix - ops.stop_gradient(ix)) + (iy - ops.stop_gradient(iy)),
        zero,
    )
    weight = ops.where(valid, 1.0 + 0.0 * link, zero)
    values = values * ops.cast(ops.expand_dims(weight, -1), images.dtype)
    return ops.where(ops.expand_dims(valid, -1), values, 0.0)


def grid_sample(
    images: Tensor,
    grid: Tensor,
    interpolation: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = False,
) -> Tensor:
    """Samples images at normalised grid positions, differentiably.

    The sampler of a spatial transformer (Jaderberg et al., 2015), matching
    `torch.nn.functional.grid_sample` for 4D inputs, channels-last. Output
    pixel `(b, i, j)` samples image `b` at `grid[b, i, j] = (x, y)`, where
    -1 and 1 are the left/top and right/bottom of the image: with
    `align_corners=False` the outer edges of the border pixels
    (`x_pixel = ((x + 1) W - 1) / 2`), with `align_corners=True` the
    centres of the corner pixels (`x_pixel = (x + 1) (W - 1) / 2`).

    - `interpolation="bilinear"` weights the four neighbouring pixels;
      `"nearest"` takes the closest one, rounding halves to even like
      PyTorch's `nearbyint`.
    - `padding_mode="zeros"`: pixels outside the image are 0 (a corner
      outside contributes nothing); `"border"`: coordinates are clamped to
      the image; `"reflection"`: coordinates are reflected about the border
      (the edges with `align_corners=False`, the corner centres with True)
      and then clamped, as in PyTorch's `reflect_coordinates`.

    Gradients flow to `images` (the interpolation weights scattered back)
    and to `grid` (the analytic derivatives of the bilinear weights, times
    W / 2 or (W - 1) / 2 for unnormalising, with PyTorch's conventions:
    zero on and beyond the clamp limits of "border"/"reflection", sign
    flips for each reflection, and a zero gradient for "nearest"). At
    integer pixel coordinates (the kinks of bilinear interpolation) the
    one-sided derivative towards larger coordinates is used, as PyTorch's
    `floor` does.

    The op is vectorised (one gather with flat int32 indices, no Python
    loop over the batch or pixels: of a [B * (H + 1) * (W + 1), 4 * C]
    neighbourhood table for C < 4, of the four corners from the padded
    images otherwise), compiles under XLA and accepts unknown batch and
    spatial sizes. Coordinates are computed in float32 (float64 for a
    float64 grid); the weights are cast to the images' dtype just before
    multiplying, so float16 images stay float16. Unnormalised coordinates
    within 2 float epsilons times the image size of an integer are moved
    onto it (value only, not the gradient): this makes the identity grid
    of `affine_grid` return its input exactly, where float rounding would
    otherwise mix in 1e-7 of the neighbours (PyTorch's own output differs
    from its input by such amounts).

    Non-finite values: a NaN grid coordinate gives 0 in every padding
    mode, and so does an infinite one except with "border", which clamps
    it to the edge; huge finite coordinates are outside the image (0 with
    "zeros") or clamped/reflected like any other (the reflection of a
    coordinate beyond about 1e7 pixels, where float32 no longer resolves
    a pixel, is finite but float noise, and differs eagerly and under
    XLA). A sample outside the
    image with "zeros" padding is exactly 0 whatever the image holds. A
    NaN or infinite pixel propagates to every sample whose 2 x 2 bilinear
    neighbourhood contains it, even with a zero weight (0 * NaN = NaN, as
    in PyTorch), and to "nearest" samples that pick it; other samples
    stay finite. Gradients with respect to a non-finite coordinate are 0.

    Args:
        images: float tensor [B, H, W, C].
        grid: float tensor [B, h, w, 2] of normalised `(x, y)` positions,
            e.g. from `affine_grid`.
        interpolation: `"bilinear"` or `"nearest"` (PyTorch's `mode`).
        padding_mode: `"zeros"`, `"border"` or `"reflection"`.
        align_corners: bool. PyTorch's `align_corners`.

    Returns:
        Tensor [B, h, w, C] of the images' dtype.

    Raises:
        ValueError: if `images` or `grid` is not rank 4, the last dimension
            of `grid` is not 2, the batch sizes differ, or
            `interpolation`/`padding_mode` is unknown.
        TypeError: if `images` or `grid` is not floating.

    Example:

    >>> images = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
    >>> grid = np.array([[[[0.0, 0.0]]]], "float32")  # the image centre
    >>> np.asarray(grid_sample(images, grid))[0, 0, 0]
    array([1.5], dtype=float32)

    Reference:
        - [Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015](
          https://arxiv.org/abs/1506.02025)
        - `torch.nn.functional.grid_sample` (pytorch/pytorch:
          aten/src/ATen/native/GridSampler.h and GridSampler.cpp).
    """
    validation.check_one_of(interpolation, INTERPOLATIONS, "interpolation")
    validation.check_one_of(padding_mode, PADDING_MODES, "padding_mode")
    images, grid = _check_inputs(images, grid)
    align_corners = bool(align_corners)
    grid_dtype = keras.backend.standardize_dtype(grid.dtype)
    dtype = "float64" if grid_dtype == "float64" else "float32"
    grid = ops.cast(grid, dtype)
    dims = _dims(images)
    height, width = dims[1], dims[2]
    ix = _source_index(grid[..., 0], width, padding_mode, align_corners, dtype)
    iy = _source_index(grid[..., 1], height, padding_mode, align_corners, dtype)
    ix, iy = materialize(ix, iy)
    if interpolation == "nearest":
        return _nearest(images, ix, iy, dims)
    return _bilinear(images, ix, iy, dims)
