"""RoIPool (Fast R-CNN) as an exact, vectorised, XLA-compilable op."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from keras import backend
from keras import ops

from keras_segattn.ops import validation
from keras_segattn.ops.roi_align import _divide
from keras_segattn.ops.roi_align import _prepare_boxes
from keras_segattn.ops.roi_align import _prepare_features
from keras_segattn.ops.roi_align import _prepare_rois
from keras_segattn.ops.roi_align import _restore_batch
from keras_segattn.ops.roi_align import _RoIs
from keras_segattn.ops.validation import Tensor
from keras_segattn.ops.validation import shape_list


class _Bins(NamedTuple):
    """Clipped bin extents, [start, end) in feature pixels, int32."""

    h_start: Tensor  # [K, ph]
    h_end: Tensor  # [K, ph]
    w_start: Tensor  # [K, pw]
    w_end: Tensor  # [K, pw]
    nonempty: Tensor  # [K, ph, pw] bool, False for dropped RoIs too


def _round_half_away(x):
    """C `round` (half away from zero), exactly, in float32.

    `floor(x + 0.5)` is what the kernel's `round` gives for x >= 0 up to
    one case: x + 0.5 can round up to the next integer in float32 (x =
    0.49999997 gives 1). Splitting off the fraction, which is exact, gives
    C's result for every float32, negative ones included.
    """
    magnitude = ops.abs(x)
    whole = ops.floor(magnitude)
    rounded = whole + ops.cast(
        ops.greater_equal(magnitude - whole, 0.5), "float32"
    )
    return ops.where(ops.less(x, 0.0), -rounded, rounded)


def _axis_bins(start, end, scale, size, pooled):
    """torchvision's roi_pool bins along one axis: [K, pooled] int32 pairs.

    The corners are rounded to the grid, the RoI is end-inclusive and at
    least 1 pixel, bin p spans [floor(p * bin), ceil((p + 1) * bin)) from
    the RoI start, clipped to [0, size]. All arithmetic rounds to float32
    like the float kernel's (see `_divide`); integers below 2**24 are
    exact.
    """
    roi_start = _round_half_away(start * scale)
    roi_end = _round_half_away(end * scale)
    roi_size = ops.maximum(roi_end - roi_start + 1.0, 1.0)
    bin_size = ops.expand_dims(_divide(roi_size, pooled), 1)
    bins = ops.expand_dims(ops.arange(pooled, dtype="float32"), 0)
    lower = ops.floor(bins * bin_size) + ops.expand_dims(roi_start, 1)
    upper = ops.ceil((bins + 1.0) * bin_size) + ops.expand_dims(roi_start, 1)
    size_f = ops.cast(size, "float32")
    lower = ops.cast(ops.minimum(ops.maximum(lower, 0.0), size_f), "int32")
    upper = ops.cast(ops.minimum(ops.maximum(upper, 0.0), size_f), "int32")
    return lower, upper


def _compute_bins(rois: _RoIs, scale, height, width, output_size) -> _Bins:
    ph, pw = output_size
    x1, y1, x2, y2 = (rois.coords[:, i] for i in range(4))
    h_start, h_end = _axis_bins(y1, y2, scale, height, ph)
    w_start, w_end = _axis_bins(x1, x2, scale, width, pw)
    nonempty = ops.logical_and(
        ops.expand_dims(ops.greater(h_end, h_start), 2),
        ops.expand_dims(ops.greater(w_end, w_start), 1),
    )
    nonempty = ops.logical_and(nonempty, ops.reshape(rois.keep, (-1, 1, 1)))
    # Give empty bins (and dropped RoIs) a valid 1-pixel extent at (0, 0)
    # so that every lookup stays inside the map; their output is zeroed.
    h_ok = ops.greater(h_end, h_start)
    w_ok = ops.greater(w_end, w_start)
    h_start = ops.where(h_ok, h_start, 0)
    h_end = ops.where(h_ok, h_end, 1)
    w_start = ops.where(w_ok, w_start, 0)
    w_end = ops.where(w_ok, w_end, 1)
    return _Bins(h_start, h_end, w_start, w_end, nonempty)


# --- Values and argmax positions ------------------------------------------
#
# The forward pass computes values only, so inference pays nothing for
# argmaxes. The backward pass recomputes the maxima with their positions
# (h * W + w in the image) to find each bin's argmax with torchvision's tie
# rule: the first maximum in row-major order.

_MAX_POSITION = 2**31 - 1


def _combine(a: tuple, b: tuple) -> tuple:
    """The max of two (value, position) pairs, ties to the lower position."""
    value_a, pos_a = a
    value_b, pos_b = b
    take_b = ops.logical_or(
        ops.greater(value_b, value_a),
        ops.logical_and(ops.equal(value_b, value_a), ops.less(pos_b, pos_a)),
    )
    return ops.where(take_b, value_b, value_a), ops.where(take_b, pos_b, pos_a)


# For 16- and 32-bit floats the backward pass packs each pair into one
# int64 key: the value's bits made order-preserving, then the complement of
# the position. A plain integer `maximum` then picks the largest value and,
# on ties, the lowest position (-0.0 is folded into +0.0 first, since `>`
# treats them as equal), so the tables need one integer max chain instead
# of select chains, which XLA compiles far faster. Float64 does not fit and
# uses explicit pairs.

_KEY_INT = {"float16": "int16", "bfloat16": "int16", "float32": "int32"}


def _magnitude_mask(int_dtype: str):
    """All bits but the sign: XOR-ing a negative float's bits with it makes
    signed-integer order match float order (an involution)."""
    bits = 16 if int_dtype == "int16" else 32
    return ops.convert_to_tensor(2 ** (bits - 1) - 1, int_dtype)


def _keys(features):
    """int64 keys [B, H, W, C] ordered by (value, -position)."""
    int_dtype = _KEY_INT[backend.standardize_dtype(features.dtype)]
    _, height, width, _ = shape_list(features)
    positions = ops.reshape(
        ops.arange(height * width, dtype="int32"), (1, height, width, 1)
    )
    features = ops.where(
        ops.equal(features, 0), ops.zeros_like(features), features
    )
    bits = ops.view(features, int_dtype)
    ordered = ops.where(
        ops.less(bits, 0),
        ops.bitwise_xor(bits, _magnitude_mask(int_dtype)),
        bits,
    )
    low = ops.cast(_MAX_POSITION - positions, "int64")
    return ops.cast(ordered, "int64") * 2**32 + low


def _key_positions(keys):
    """The positions packed in `_keys`."""
    ordered = ops.right_shift(keys, 32)  # arithmetic: floor(key / 2**32)
    return _MAX_POSITION - ops.cast(keys - ordered * 2**32, "int32")


def _positions(features):
    """Row-major position h * W + w of every element, int32 [B, H, W, C]."""
    _, height, width, _ = shape_list(features)
    grid = ops.reshape(
        ops.arange(height * width, dtype="int32"), (1, height, width, 1)
    )
    return ops.broadcast_to(grid, ops.shape(features))


def _num_levels(size: int) -> int:
    """Sparse-table levels for windows of 1 .. size: floor(log2(size)) + 1."""
    return max(int(size), 1).bit_length()


def _level_sizes(size: int) -> list[int]:
    return [size - 2**i + 1 for i in range(_num_levels(size))]


# --- Method 1: 2D sparse table (static H and W) -----------------------------
#
# Table (i, j) holds, at (h, w), the max over the window
# [h, h + 2**i) x [w, w + 2**j), for every window inside the map. A bin of
# extent (eh, ew) is covered exactly by the four (possibly overlapping)
# windows of level (floor(log2 eh), floor(log2 ew)) anchored at its corners,
# and max is idempotent, so four gathers give the exact bin max whatever the
# bin size. The tables hold about 0.7 (log2 H + 1)(log2 W + 1) times the
# feature map, independent of the number of boxes.
#
# With explicit (value, position) pairs (float64), columns are doubled
# first, then rows, and each doubling keeps the first operand on ties: it
# covers columns left of the second in the same rows, or rows above it, so
# all its elements come first in row-major order and each table position
# is the first argmax of its window. The four overlapping windows of a bin
# are then combined with the full tie rule. Keys need no such care.


def _double(values, positions, axis: int, shift: int):
    """Max of each window with the window `shift` further along `axis`."""

    def part(t, start, stop):
        index = [slice(None)] * 4
        index[axis] = slice(start, stop)
        return t[tuple(index)]

    a, b = part(values, None, -shift), part(values, shift, None)
    if positions is None:
        return ops.maximum(a, b), None
    take_b = ops.greater(b, a)  # ties keep `a`, whose elements come first
    return ops.where(take_b, b, a), ops.where(
        take_b, part(positions, shift, None), part(positions, None, -shift)
    )


def _sparse_tables(features, with_positions: bool):
    """Flat [sum_ij B * H_i * W_j, C] tables (values, positions or None);
    with positions, for 16- and 32-bit floats, the values are int64 keys
    (`_keys`) and the positions None."""
    _, height, width, channels = shape_list(features)
    positions = None
    if with_positions:
        if backend.standardize_dtype(features.dtype) in _KEY_INT:
            features = _keys(features)
        else:
            positions = _positions(features)
    columns = [(features, positions)]
    for j in range(1, _num_levels(width)):
        columns.append(_double(*columns[-1], axis=2, shift=2 ** (j - 1)))
    tables = {}
    for j, level in enumerate(columns):
        tables[0, j] = level
        for i in range(1, _num_levels(height)):
            level = _double(*level, axis=1, shift=2 ** (i - 1))
            tables[i, j] = level
    order = sorted(tables)  # row level major, as `_sparse_table_lookups`
    values = ops.concatenate(
        [ops.reshape(tables[key][0], (-1, channels)) for key in order], 0
    )
    if positions is None:
        return values, None
    positions = ops.concatenate(
        [ops.reshape(tables[key][1], (-1, channels)) for key in order], 0
    )
    return values, positions


def _floor_log2(extent, num_levels: int):
    level = ops.zeros_like(extent)
    for i in range(1, num_levels):
        level = level + ops.cast(ops.greater_equal(extent, 2**i), "int32")
    return level


def _sparse_table_lookups(rois: _RoIs, bins: _Bins, batch, height, width):
    """Table row indices [K, ph, pw] of the four windows covering each bin."""
    heights, widths = _level_sizes(height), _level_sizes(width)
    num_w = len(widths)
    # Table (i, j) is [B, H_i, W_j] flattened, after B * offsets[ij] rows.
    offsets, total = [], 0
    for hi in heights:
        for wj in widths:
            offsets.append(total)
            total += hi * wj
    offsets = ops.convert_to_tensor(offsets, "int32")
    powers_h = ops.convert_to_tensor([2**i for i in range(len(heights))])
    powers_w = ops.convert_to_tensor([2**j for j in range(num_w)])

    level_h = _floor_log2(bins.h_end - bins.h_start, len(heights))
    level_w = _floor_log2(bins.w_end - bins.w_start, num_w)
    span_h = ops.take(ops.cast(powers_h, "int32"), level_h)  # [K, ph]
    span_w = ops.take(ops.cast(powers_w, "int32"), level_w)  # [K, pw]
    rows = [bins.h_start, bins.h_end - span_h]
    cols = [bins.w_start, bins.w_end - span_w]
    level = ops.expand_dims(level_h, 2) * num_w + ops.expand_dims(level_w, 1)
    level_base = ops.take(offsets, level) * batch  # [K, ph, pw]
    image = ops.reshape(rois.batch_index, (-1, 1, 1))
    table_h = ops.expand_dims(height + 1 - span_h, 2)  # H_i
    table_w = ops.expand_dims(width + 1 - span_w, 1)  # W_j
    lookups = []
    for r in rows:
        for c in cols:
            row = image * table_h + ops.expand_dims(r, 2)
            lookups.append(level_base + row * table_w + ops.expand_dims(c, 1))
    return lookups


def _pool_sparse_table(features, rois: _RoIs, bins: _Bins, with_positions):
    batch, height, width, _ = shape_list(features)
    values, positions = _sparse_tables(features, with_positions)
    lookups = _sparse_table_lookups(rois, bins, batch, height, width)
    if positions is None:  # values, or keys that carry the positions
        found = [ops.take(values, index, axis=0) for index in lookups]
        pooled = ops.maximum(
            ops.maximum(found[0], found[1]), ops.maximum(found[2], found[3])
        )
        if with_positions:
            return None, _key_positions(pooled)
        return pooled
    pooled = None
    for index in lookups:
        found = (ops.take(values, index, 0), ops.take(positions, index, 0))
        pooled = found if pooled is None else _combine(pooled, found)
    return pooled


# --- Method 2: scan over rows then columns (any H and W) --------------------
#
# A running masked max over the map rows gives [K, ph, W, C], then one over
# its columns gives [K, ph, pw, C]: intermediates stay [K, ph, W, C], the
# loops are `fori_loop`s over the map (never over boxes or bins), and H and
# W may be unknown. Work is K * ph * H * W * C, so it is used when H or W
# is unknown, or when the tables would cost more (few boxes, large map).


def _pool_scan(features, rois: _RoIs, bins: _Bins, with_positions):
    _, height, width, channels = shape_list(features)
    num_rois = shape_list(rois.batch_index)[0]
    ph, pw = bins.h_start.shape[1], bins.w_start.shape[1]
    h_start = ops.reshape(bins.h_start, (-1, ph, 1, 1))
    h_end = ops.reshape(bins.h_end, (-1, ph, 1, 1))
    w_start = ops.reshape(bins.w_start, (-1, 1, pw, 1))
    w_end = ops.reshape(bins.w_end, (-1, 1, pw, 1))
    lowest = ops.convert_to_tensor(float("-inf"), features.dtype)

    def initial(shape):
        values = ops.full(shape, lowest, dtype=features.dtype)
        if not with_positions:
            return (values,)
        return values, ops.full(shape, _MAX_POSITION, dtype="int32")

    def merge(best, new, inside):
        if with_positions:
            merged = _combine(best, new)
        else:
            merged = (ops.maximum(best[0], new[0]),)
        return tuple(
            ops.where(inside, m, b) for m, b in zip(merged, best, strict=True)
        )

    def row_step(h, best):
        row = ops.take(ops.take(features, h, axis=1), rois.batch_index, 0)
        row = ops.expand_dims(row, 1)  # row h of every RoI's image [K,1,W,C]
        inside = ops.logical_and(
            ops.less_equal(h_start, h), ops.less(h, h_end)
        )  # [K, ph, 1, 1]
        new = (row,)
        if with_positions:
            w = ops.reshape(ops.arange(width, dtype="int32"), (1, 1, -1, 1))
            new = (row, ops.broadcast_to(h * width + w, ops.shape(row)))
        return merge(best, new, inside)

    rows = ops.fori_loop(
        0, height, row_step, initial((num_rois, ph, width, channels))
    )

    def col_step(w, best):
        column = tuple(ops.expand_dims(ops.take(t, w, axis=2), 2) for t in rows)
        inside = ops.logical_and(
            ops.less_equal(w_start, w), ops.less(w, w_end)
        )  # [K, 1, pw, 1]
        return merge(best, column, inside)

    pooled = ops.fori_loop(
        0, width, col_step, initial((num_rois, ph, pw, channels))
    )
    return pooled if with_positions else pooled[0]


def _choose_method(features, boxes, output_size) -> str:
    """ "table" when H and W are static and the tables cost no more than
    scanning, else "scan" (both exact)."""
    batch, height, width, _ = features.shape
    if height is None or width is None:
        return "scan"
    table_cost = sum(_level_sizes(height)) * sum(_level_sizes(width))
    if len(boxes.shape) == 3:
        boxes_per_image = boxes.shape[1]
    elif boxes.shape[0] is not None and batch:
        boxes_per_image = boxes.shape[0] / batch
    else:
        boxes_per_image = None
    if boxes_per_image is None:
        return "table"
    scan_cost = boxes_per_image * output_size[0] * height * width
    return "table" if table_cost <= scan_cost else "scan"


def _roi_pool_flat(features, boxes, output_size, spatial_scale, method):
    pool = _pool_sparse_table if method == "table" else _pool_scan

    @ops.custom_gradient
    def pool_with_argmax_gradient(features, boxes):
        batch, height, width, channels = shape_list(features)
        rois = _prepare_rois(boxes, batch)
        bins = _compute_bins(rois, spatial_scale, height, width, output_size)
        nonempty = ops.expand_dims(bins.nonempty, -1)
        values = pool(features, rois, bins, with_positions=False)
        pooled = ops.where(nonempty, values, ops.zeros_like(values))

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            _, positions = pool(features, rois, bins, with_positions=True)
            # Each bin's gradient goes to its argmax (torchvision's
            # backward); empty bins and dropped RoIs send nothing.
            upstream = ops.reshape(upstream, ops.shape(pooled))
            upstream = ops.where(nonempty, upstream, ops.zeros_like(upstream))
            # Scatter-add into [B * H * W, C] at (pixel, channel) pairs
            # shaped [K * ph * pw, C, 2]: unlike flat ids, this keeps the
            # channel loop innermost, which XLA runs about 3x faster.
            image = ops.reshape(rois.batch_index, (-1, 1, 1, 1))
            pixel = ops.reshape(
                image * (height * width) + positions, (-1, channels)
            )
            channel = ops.broadcast_to(
                ops.arange(channels, dtype="int32"), ops.shape(pixel)
            )
            grad_features = ops.scatter(
                ops.stack([pixel, channel], axis=-1),
                ops.reshape(upstream, (-1, channels)),
                (batch * height * width, channels),
            )
            grad_features = ops.reshape(grad_features, ops.shape(features))
            return grad_features, ops.zeros_like(boxes)

        return _restore_batch(pooled, rois), grad

    return pool_with_argmax_gradient(features, ops.cast(boxes, "float32"))


def roi_pool(
    features: Tensor,
    boxes: Tensor,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    validate: bool = False,
) -> Tensor:
    """Max-pools every box of a feature map to a fixed grid of bins.

    RoI max pooling of Fast R-CNN (Girshick, 2015), matching the numbers
    of `torchvision.ops.roi_pool` (its CPU kernel, roi_pool_kernel.cpp):
    the box corners, times `spatial_scale`, are rounded to the feature grid
    (C `round`, half away from zero), the box is end-inclusive and at least
    1 x 1 pixel, bin `i` spans rows [floor(i * bin_h), ceil((i + 1) *
    bin_h)) from the box start (overlapping its neighbours by up to a
    pixel), bins are clipped to the map, an empty bin gives 0 and any other
    bin its maximum. The gradient of each bin goes to its argmax only (the
    first maximum in row-major order on ties), as in torchvision.

    Boxes are a padded, static-size batch [B, N, 4] of absolute
    (x1, y1, x2, y2) image pixels; torchvision's flat [K, 5] form
    (batch index, x1, y1, x2, y2) is accepted too. A box whose four
    coordinates are -1 is padding: its output and its gradient are zero,
    never NaN. So are boxes with a NaN or infinite coordinate and flat
    rows with a batch index outside [0, B) (`validate=True` raises
    instead). Boxes with x2 < x1 or y2 < y1 become 1-pixel boxes at their
    start, as in torchvision. `boxes` receive a zero gradient (the op is
    piecewise constant in them).

    The op is vectorised and compiles under XLA with no Python loop over
    images, boxes or bins. With a static feature size it reads each bin's
    max from a 2D sparse table of window maxima (four gathers per bin,
    whatever its size; the tables take about (log2 H + 1)(log2 W + 1)
    times the feature map); with an unknown H or W, or when that would cost
    more than scanning (few boxes on a large map), it runs a masked running
    max over the rows then the columns of the map (`fori_loop`s over H and
    W, intermediates [K, ph, W, C]). Both are exact. The forward pass
    computes values only; the backward pass (a custom gradient) recomputes
    the maxima with their positions, packed with the value into int64 keys
    for 16- and 32-bit floats, and scatter-adds each bin's gradient to its
    argmax. Float16 features stay float16; coordinates are float32.

    Args:
        features: float tensor [B, H, W, C].
        boxes: float tensor [B, N, 4] of (x1, y1, x2, y2) in image pixels,
            or [K, 5] of (batch index, x1, y1, x2, y2).
        output_size: int or (height, width). Number of bins.
        spatial_scale: float > 0. Maps box coordinates to feature pixels
            (1/16 for a stride-16 map).
        validate: bool. If True, check the box values eagerly (NaN,
            x2 < x1, y2 < y1, batch index) and raise `ValueError`; needs
            concrete boxes, so leave it False inside compiled functions.

    Returns:
        Tensor [B, N, out_h, out_w, C] (or [K, out_h, out_w, C] for flat
        boxes) of the features' dtype.

    Raises:
        ValueError: if `output_size` or `spatial_scale` is not positive,
            `features` is not rank 4, `boxes` is not [B, N, 4] or [K, 5],
            the batch sizes differ, or (with `validate=True`) a box value is
            invalid.
        TypeError: if `features` is not floating.

    Example:

    >>> features = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    >>> boxes = np.array([[[0.0, 0.0, 3.0, 3.0]]], "float32")
    >>> pooled = roi_pool(features, boxes, output_size=2)
    >>> np.asarray(pooled)[0, 0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)

    Reference:
        - [Girshick, "Fast R-CNN", ICCV 2015](
          https://arxiv.org/abs/1504.08083)
        - `torchvision.ops.roi_pool` (pytorch/vision:
          torchvision/csrc/ops/cpu/roi_pool_kernel.cpp)
    """
    return _roi_pool(features, boxes, output_size, spatial_scale, validate)


def _roi_pool(
    features,
    boxes,
    output_size,
    spatial_scale=1.0,
    validate=False,
    method: str = "auto",
):
    """`roi_pool` with the method selectable ("auto", "table", "scan")."""
    output_size = validation.standardize_size(output_size, "output_size")
    spatial_scale = validation.check_positive_float(
        spatial_scale, "spatial_scale"
    )
    validation.check_one_of(method, ("auto", "table", "scan"), "method")
    features = _prepare_features(features)
    boxes = _prepare_boxes(boxes, features, validate)
    if method == "table" and None in features.shape[1:3]:
        raise ValueError(
            "The sparse-table method needs static H and W. Received: "
            f"features.shape={features.shape}."
        )
    if method == "auto":
        method = _choose_method(features, boxes, output_size)
    return _roi_pool_flat(features, boxes, output_size, spatial_scale, method)
