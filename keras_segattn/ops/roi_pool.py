"""RoIPool (Fast R-CNN) as an exact, vectorised, XLA-compilable op."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import keras
import tensorflow as tf
from keras import ops

from keras_segattn import validation
from keras_segattn.ops._fusion import materialize
from keras_segattn.ops.roi_align import _divide
from keras_segattn.ops.roi_align import _prepare_boxes
from keras_segattn.ops.roi_align import _prepare_features
from keras_segattn.ops.roi_align import _prepare_rois
from keras_segattn.ops.roi_align import _restore_batch
from keras_segattn.ops.roi_align import _RoIs
from keras_segattn.validation import Tensor
from keras_segattn.validation import shape_list


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


# --- Method 1: window tables (static H and W) ------------------------------
#
# Table (i, j) holds, at (h, w), the max over the window
# [h, h + s_i) x [w, w + t_j) for every window inside the map, with window
# heights s_0 = 1, s_(i+1) = m * s_i + 1 up to H (and widths likewise up
# to W) for a base m. A bin of extent (eh, ew) is covered exactly by
# m x m (possibly overlapping) windows of the largest level with
# s_i <= eh, t_j <= ew (its extent is at most m * s_i), placed from its
# start in steps of one window and clamped to its end; max is idempotent,
# so m * m gathers give the exact bin max whatever the bin size. A larger
# base trades more gathers for smaller tables (on a 50 x 50 map, base 2:
# 4 gathers, windows 1, 3, 7, 15, 31, tables about 12 times the map;
# base 4: 16 gathers, windows 1, 5, 21, 6.4 times; base 7: 49 gathers,
# windows 1 and 8, 3.5 times), and `_table_base` picks the cheaper for
# the static shapes. Tables are grown by columns first, within single
# rows, then by rows, with plain maxima only.
#
# Gradients go to each bin's argmax with torchvision's tie rule: the first
# maximum in row-major order. The backward pass finds it with the same
# tables built over int64 keys, (order-preserving bits of the value) << 32
# | (2**31 - 1 - position), position = b * H * W + h * W + w: the max key
# of a bin is its max value at its lowest position, so one max per table
# step and per lookup carries the argmax (no select, no second table).
# -0.0 is keyed as 0.0 (torchvision's `>` sees them equal). Without
# `training` the forward pass builds value tables only, so inference pays
# nothing for the argmax; with it, the forward reads both the value (the
# key's high bits) and the argmax from the key tables, so the backward
# builds nothing. Keys hold float32 (float16 converts exactly); float64 features
# find their argmax with the scan of method 2 instead.


def _window_sizes(size: int, base: int) -> list[int]:
    """Window lengths 1, base + 1, base * (base + 1) + 1, ... up to
    `size`: each the longest that `base` windows of the previous length
    still cover when shorter."""
    sizes = [1]
    while sizes[-1] * base + 1 <= size:
        sizes.append(sizes[-1] * base + 1)
    return sizes


def _num_lookups(size: int, base: int) -> int:
    """Windows per bin along an axis: `base`, fewer on maps shorter than it."""
    return min(base, max(int(size), 1))


def _grow(table, axis: int, window: int, new_window: int):
    """Maxima over windows of `new_window` along `axis` from those over
    `window`: doubled while that fits, then two overlapping windows.
    (Maxima of `base` shifted slices at once become a slow reduce-window
    in XLA for bases above 4.)"""

    def shifted_max(x, shift):
        length = x.shape[axis]
        head = [slice(None)] * 4
        tail = [slice(None)] * 4
        head[axis] = slice(0, length - shift)
        tail[axis] = slice(shift, length)
        return ops.maximum(x[tuple(head)], x[tuple(tail)])

    while 2 * window <= new_window:
        table = shifted_max(table, window)
        window *= 2
    if window < new_window:
        table = shifted_max(table, new_window - window)
    return table


def _window_tables(x, base: int, empty):
    """Flat window-max tables of `x` [B, H, W, C]: [sum_ij B * H_i * W_j + 1,
    C], row level major (the order of `_table_lookups`); the last row, the
    empty bin's, is `empty` [1, C]."""
    _, height, width, channels = shape_list(x)
    sizes_h = _window_sizes(height, base)
    sizes_w = _window_sizes(width, base)
    columns = [x]
    for j in range(1, len(sizes_w)):
        columns.append(_grow(columns[-1], 2, sizes_w[j - 1], sizes_w[j]))
    tables = {}
    for j, level in enumerate(columns):
        tables[0, j] = level
        for i in range(1, len(sizes_h)):
            level = _grow(level, 1, sizes_h[i - 1], sizes_h[i])
            tables[i, j] = level
    num_h = len(sizes_h)
    order = [tables[i, j] for i in range(num_h) for j in range(len(columns))]
    return ops.concatenate(
        [ops.reshape(t, (-1, channels)) for t in order] + [empty], 0
    )


def _axis_lookups(start, end, size: int, base: int):
    """Per-bin level and window [K, p], and the `_num_lookups` window
    starts [K, p, lookups]."""
    sizes = _window_sizes(size, base)
    extent = end - start
    level = ops.zeros_like(extent)
    for window in sizes[1:]:
        level = level + ops.cast(ops.greater_equal(extent, window), "int32")
    window = ops.take(ops.convert_to_tensor(sizes, "int32"), level)
    steps = ops.arange(_num_lookups(size, base), dtype="int32")
    starts = ops.minimum(
        ops.expand_dims(start, -1) + steps * ops.expand_dims(window, -1),
        ops.expand_dims(end - window, -1),
    )
    return level, window, starts


def _table_lookups(rois: _RoIs, bins: _Bins, batch, height, width, base):
    """Table row indices [K, ph, pw, lookups] of the windows covering each
    bin (one tensor: XLA makes one fusion of it, not one per lookup)."""
    sizes_h = _window_sizes(height, base)
    sizes_w = _window_sizes(width, base)
    # Table (i, j) is [B, H_i, W_j] flattened, after B * offsets[i, j] rows.
    offsets, total = [], 0
    for s in sizes_h:
        for t in sizes_w:
            offsets.append(total)
            total += (height - s + 1) * (width - t + 1)
    offsets = ops.convert_to_tensor(offsets, "int32")
    level_h, window_h, rows = _axis_lookups(
        bins.h_start, bins.h_end, height, base
    )
    level_w, window_w, cols = _axis_lookups(
        bins.w_start, bins.w_end, width, base
    )
    level = ops.expand_dims(level_h, 2) * len(sizes_w) + ops.expand_dims(
        level_w, 1
    )

    def grid(x, axes):  # [K, ph, pw, lookups_h, lookups_w] broadcasts
        return ops.expand_dims(x, axes)

    level_base = grid(ops.take(offsets, level) * batch, (3, 4))
    image = ops.reshape(rois.batch_index, (-1, 1, 1, 1, 1))
    table_h = grid(height + 1 - window_h, (2, 3, 4))  # H_i
    table_w = grid(width + 1 - window_w, (1, 3, 4))  # W_j
    index = (
        level_base
        + (image * table_h + grid(rows, (2, 4))) * table_w
        + grid(cols, (1, 3))
    )
    lookups = _num_lookups(height, base) * _num_lookups(width, base)
    ph, pw = bins.nonempty.shape[1:]
    index = ops.reshape(index, (-1, ph, pw, lookups))
    empty_row = total * batch  # the last table row: the empty bin's
    index = ops.where(ops.expand_dims(bins.nonempty, -1), index, empty_row)
    # Stored once, or every gather recomputes the index arithmetic for
    # each element it gathers (3.5x slower training path).
    (index,) = materialize(index)
    return index


# Lookups per gather: fewer gathers are fewer passes, but XLA stops
# fusing larger ones into their reduction (49 lookups at 64 boxes per
# image: 3 gathers of 17 took 14.8 ms, 4 of 13 15.8, 2 of 25 18, 1 of 49
# 84).
_STACKED_LOOKUPS = 17


def _table_max(table, lookups, stacked: bool = False):
    """The max over the looked-up table rows: [K, ph, pw, C]. `stacked`:
    one gather per 17 lookups, then a reduction (XLA then copies whole
    rows instead of fusing element-wise gathers into the consumer, which
    the backward pass's scatter indices would otherwise recompute; with
    more lookups per gather it materialises the gather)."""
    count = lookups.shape[-1]
    if stacked:
        groups = -(-count // _STACKED_LOOKUPS)
        size = -(-count // groups)  # groups of even sizes
        pooled = None
        for first in range(0, count, size):
            group = lookups[..., first : first + size]
            group = ops.max(ops.take(table, group, 0), axis=3)
            pooled = group if pooled is None else ops.maximum(pooled, group)
        return pooled
    pooled = ops.take(table, lookups[..., 0], 0)
    for k in range(1, count):
        pooled = ops.maximum(pooled, ops.take(table, lookups[..., k], 0))
    return pooled


def _pool_table(features, lookups, base: int):
    """Bin maxima [K, ph, pw, C] from the value tables (0 for empty bins
    and dropped RoIs)."""
    channels = shape_list(features)[3]
    empty = ops.zeros((1, channels), features.dtype)
    return _table_max(_window_tables(features, base, empty), lookups)


_POSITION_BITS = 32
_LOW_MASK = 2**_POSITION_BITS - 1
_FIRST_KEY = 2**31 - 1  # position 0; position p is keyed _FIRST_KEY - p


def _argmax_keys(features):
    """int64 keys [B, H, W, C] whose max is the max value at the lowest
    position (see the section comment), for features without NaN (`roi_pool`
    raises NaN and -inf to the lowest finite value first). `tf.bitcast`
    because `keras.ops` has no bit cast."""
    batch, height, width, channels = shape_list(features)
    values = ops.cast(features, "float32")
    # -0.0 as 0.0 (torchvision's `>` sees them equal).
    values = ops.where(ops.equal(values, 0.0), ops.zeros_like(values), values)
    bits = tf.bitcast(values, tf.int32)
    # Negative floats order backwards as integers: flip their magnitude.
    ordered = ops.where(
        ops.less(bits, 0), ops.bitwise_xor(bits, 2**31 - 1), bits
    )
    position = ops.reshape(
        ops.arange(batch * height * width, dtype="int64"),
        (batch, height, width, 1),
    )
    return ops.bitwise_or(
        ops.left_shift(ops.cast(ordered, "int64"), _POSITION_BITS),
        _FIRST_KEY - position,
    )


def _table_pool_with_argmax(features, lookups, base):
    """Bin maxima [K, ph, pw, C] float32 and image-absolute first-argmax
    positions [K, ph, pw, C] int32, both read from the max key: the value
    from its high bits (-0.0 comes back as 0.0), the position from its
    low bits, -1 (none) for empty bins and dropped RoIs: they look up the
    empty row, whose key decodes to 0.0 and -1."""
    channels = shape_list(features)[3]
    empty = ops.full((1, channels), _FIRST_KEY + 1, "int64")
    table = _window_tables(_argmax_keys(features), base, empty)
    keys = _table_max(table, lookups, stacked=True)
    position = ops.cast(_FIRST_KEY - ops.bitwise_and(keys, _LOW_MASK), "int32")
    ordered = ops.cast(ops.right_shift(keys, _POSITION_BITS), "int32")
    bits = ops.where(
        ops.less(ordered, 0), ops.bitwise_xor(ordered, 2**31 - 1), ordered
    )
    return tf.bitcast(bits, tf.float32), position


# --- Method 2: scan over rows then columns (any H and W) --------------------
#
# A running masked max over the map rows gives [K, ph, W, C], then one over
# its columns gives [K, ph, pw, C]: intermediates stay [K, ph, W, C], the
# loops are `fori_loop`s over the map (never over boxes or bins), and H and
# W may be unknown. Work is K * ph * H * W * C, so it is used when H or W
# is unknown, or when the tables would cost more (few boxes, large map).


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


# Relative costs per image and channel, fitted (least squares over bases
# 3 to 10) to times with XLA on a 2-core CPU (features [2, 50, 50, 256],
# 7 x 7 bins, 64 and 256 boxes per image): writing one table element ~ 1,
# one step of the scan per element ~ 1, and for the int64 keys (the
# training path) / the values (inference): looking up one element ~ 0.1 /
# 0.04, each table (i, j) ~ 1.3 / 0.4 per map pixel on top of its size
# (its passes over the map). This picks base 7 for the keys at 64 boxes
# (windows 1 and 8, 49 lookups per bin), 4 at 256 (windows 1, 5 and 21,
# 16 lookups); 7 and 4 for the values.
_TABLE_BASES = (2, 3, 4, 5, 6, 7, 8)
_KEY_COSTS = (0.1, 1.3)  # (per looked-up element, per table and pixel)
_VALUE_COSTS = (0.04, 0.4)
_DEFAULT_BOXES_PER_IMAGE = 64  # for the cost model when N is unknown


def _table_size(height: int, width: int, base: int) -> int:
    """Elements per image and channel of all window tables."""
    rows = sum(height - s + 1 for s in _window_sizes(height, base))
    cols = sum(width - s + 1 for s in _window_sizes(width, base))
    return rows * cols


def _table_cost(
    height, width, boxes_per_image, output_size, base, costs=_KEY_COSTS
) -> float:
    lookup_cost, level_cost = costs
    lookups = _num_lookups(height, base) * _num_lookups(width, base)
    bins = boxes_per_image * output_size[0] * output_size[1]
    tables = len(_window_sizes(height, base)) * len(_window_sizes(width, base))
    return (
        _table_size(height, width, base)
        + lookup_cost * bins * lookups
        + level_cost * tables * height * width
    )


def _boxes_per_image(features, boxes):
    batch = features.shape[0]
    if len(boxes.shape) == 3 and boxes.shape[1] is not None:
        return boxes.shape[1]
    if len(boxes.shape) == 2 and boxes.shape[0] is not None and batch:
        return boxes.shape[0] / batch
    return _DEFAULT_BOXES_PER_IMAGE


def _table_base(
    height: int, width: int, boxes_per_image, output_size, costs=_KEY_COSTS
) -> int:
    """The table base with the lowest modelled cost."""
    return min(
        _TABLE_BASES,
        key=lambda base: _table_cost(
            height, width, boxes_per_image, output_size, base, costs
        ),
    )


def _choose_method(features, boxes, output_size) -> tuple[str, int | None]:
    """("table", base) when H and W are static and the tables cost no more
    than scanning, else ("scan", None) (both exact)."""
    _, height, width, _ = features.shape
    if height is None or width is None:
        return "scan", None
    boxes_per_image = _boxes_per_image(features, boxes)
    base = _table_base(height, width, boxes_per_image, output_size)
    table = _table_cost(height, width, boxes_per_image, output_size, base)
    scan = boxes_per_image * output_size[0] * height * width
    return ("table", base) if table <= scan else ("scan", None)


def _pool_scan_masked(features, rois: _RoIs, bins: _Bins, with_positions):
    """`_pool_scan` in `_pool_table`'s conventions: the values, or (values,
    positions) `with_positions`; empty bins and dropped RoIs give 0,
    positions are image-absolute and -1 when empty."""
    _, height, width, _ = shape_list(features)
    nonempty = ops.expand_dims(bins.nonempty, -1)
    pooled = _pool_scan(features, rois, bins, with_positions)
    values = pooled[0] if with_positions else pooled
    values = ops.where(nonempty, values, ops.zeros_like(values))
    if not with_positions:
        return values
    image = ops.reshape(rois.batch_index, (-1, 1, 1, 1))
    positions = ops.where(nonempty, image * (height * width) + pooled[1], -1)
    return values, positions


def _id_dtype(rows, channels) -> str:
    """int32 when every flat id `row * channels + channel` fits, else (or
    when a size is unknown) int64."""
    if isinstance(rows, int) and isinstance(channels, int):
        if rows * channels <= 2**31 - 1:
            return "int32"
    return "int64"


def _roi_pool_flat(
    features, boxes, output_size, spatial_scale, method, bases, training
):
    """`bases`: (value tables, key tables) for "table". `training`: find
    the argmax in the forward pass (keys, or the scan with positions)."""

    @ops.custom_gradient
    def pool_with_argmax_gradient(features, boxes):
        # torchvision's kernel starts each bin at -FLT_MAX and takes a
        # value only if it is larger, so NaN and -inf never win and a bin
        # holding nothing else gives -FLT_MAX. Raising them to the lowest
        # finite value gives exactly that, the same eagerly and under XLA
        # (whose max reductions treat NaN differently). No gradient
        # reaches them: a bin whose argmax they could be has that lowest
        # maximum and passes none (`grad`), so the gradient needs no mask
        # of them (outside this function, the raise's gradient was one
        # more pass over the map).
        lowest = tf.as_dtype(features.dtype).min
        features = ops.where(
            ops.greater_equal(features, lowest), features, lowest
        )
        batch, height, width, channels = shape_list(features)
        rois = _prepare_rois(boxes, batch)
        bins = _compute_bins(rois, spatial_scale, height, width, output_size)
        dtype = keras.backend.standardize_dtype(features.dtype)
        keyed = method == "table" and dtype != "float64"

        value_lookups = None  # the forward's, reused when the bases agree

        def key_argmax():
            if value_lookups is not None and bases[1] == bases[0]:
                lookups = value_lookups
            else:
                lookups = _table_lookups(
                    rois, bins, batch, height, width, bases[1]
                )
            return _table_pool_with_argmax(features, lookups, bases[1])

        positions = None
        if training and keyed:
            pooled, positions = key_argmax()
            pooled = ops.cast(pooled, features.dtype)
        elif training:
            pooled, positions = _pool_scan_masked(features, rois, bins, True)
        elif method == "table":
            value_lookups = _table_lookups(
                rois, bins, batch, height, width, bases[0]
            )
            pooled = _pool_table(features, value_lookups, bases[0])
        else:
            pooled = _pool_scan_masked(features, rois, bins, False)

        def argmax_positions():
            # Found by the forward pass when training, else only now.
            if positions is not None:
                return positions
            if keyed:
                return key_argmax()[1]
            return _pool_scan_masked(features, rois, bins, True)[1]

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            # Each bin's gradient goes to its argmax (torchvision's
            # backward). Empty bins and dropped RoIs have position -1,
            # whose negative ids the segment sum drops: no mask over the
            # channels, which XLA would fuse into the scatter and
            # recompute per element, and no dump row to slice off after.
            # A segment sum over flat ids pixel * C + channel (channels
            # innermost; int64 when int32 could overflow): 8 % faster
            # than a scatter at (pixel, channel) index pairs, whose
            # [K * ph * pw * C, 2] indices XLA builds and copies
            # (training path at 256 boxes, 2-core CPU).
            rows = batch * height * width
            id_dtype = _id_dtype(rows, channels)
            # torchvision keeps a value only if it beats -FLT_MAX (here
            # the dtype's lowest): a bin whose maximum is that value has
            # no argmax and passes no gradient.
            positions = ops.where(
                ops.equal(pooled, lowest), -1, argmax_positions()
            )
            ids = ops.cast(positions, id_dtype) * channels
            ids = ids + ops.arange(channels, dtype=id_dtype)
            grad_features = ops.segment_sum(
                ops.reshape(upstream, (-1,)),
                ops.reshape(ids, (-1,)),
                num_segments=rows * channels,
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
    training: bool = False,
) -> Tensor:
    """Max-pools every box of a feature map to a fixed grid of bins.

    RoI max pooling of Fast R-CNN (Girshick, 2015), matching the numbers
    of `torchvision.ops.roi_pool` (its CPU kernel, roi_pool_kernel.cpp):
    the box corners, times `spatial_scale`, are rounded to the feature grid
    (C `round`, half away from zero), the box is end-inclusive and at least
    1 x 1 pixel, bin `i` spans rows [floor(i * bin_h), ceil((i + 1) *
    bin_h)) from the box start (overlapping its neighbours by up to a
    pixel), bins are clipped to the map, an empty bin gives 0 and any other
    bin its maximum, NaN and -inf features never winning (as in that
    kernel: a bin holding only NaN or -inf gives the dtype's lowest
    finite value, -FLT_MAX in float32; +inf wins like any maximum). The
    gradient of each bin goes to its argmax only (the first maximum in
    row-major order on ties), as in torchvision; a bin whose maximum is
    that lowest value has no argmax there and passes no gradient.

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
    max from tables of window maxima: windows of 1, m + 1, m (m + 1) + 1,
    ... pixels along each axis, m * m gathers per bin whatever its size,
    the base m chosen from the shapes (for 7 x 7 bins on a 50 x 50 map: 7
    at 64 boxes per image, tables about 3.5 times the map, and 4 at 256,
    6.4 times). With an unknown H or W, or
    when the tables would cost more than scanning (few boxes on a large
    map), it runs a masked running max over the rows then the columns of
    the map (`fori_loop`s over H and W, intermediates [K, ph, W, C]). Both
    are exact. The argmax positions are found with the same window tables
    built over int64 (value, position) keys, whose max is the first
    maximum (float16 and float32 features), or with the scan (float64
    features, or when the scan is the method). With `training=False` only
    the backward pass finds them, so inference pays nothing for them; with
    `training=True` the forward pass reads the values and the positions
    from the key tables at once (or runs the scan with positions), which
    costs the forward more and saves the backward its second pass over
    the map: the train step (output and gradient) of 7 x 7 bins on a
    [2, 50, 50, 256] map takes about 16 instead of 27 ms at 64 boxes per
    image and 44 instead of 54 ms at 256 (XLA, 2-core CPU). Both settings
    give the same outputs and gradients, except that the sign of a zero
    maximum may differ (-0.0 and 0.0 tie, as in torchvision). The gradient
    (a custom gradient) scatter-adds each bin's upstream value to its
    argmax; a bin holding a NaN sends none. Float16 features stay float16;
    coordinates are float32.

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
        training: bool. True when the output will be differentiated (a
            train step; `RoIPool` passes its `training` argument): the
            forward pass then also finds the argmax positions that the
            gradient needs, faster for the pair and slower for the
            forward alone. The results are the same either way.

    Returns:
        Tensor [B, N, out_h, out_w, C] (or [K, out_h, out_w, C] for flat
        boxes) of the features' dtype.

    Raises:
        ValueError: if `output_size` or `spatial_scale` is not positive,
            `features` is not rank 4, `boxes` is not [B, N, 4] or [K, 5],
            the batch sizes differ, or (with `validate=True`) a box value is
            invalid.
        TypeError: if `features` is not floating or `training` is not a
            bool.

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
    return _roi_pool(
        features, boxes, output_size, spatial_scale, validate, training
    )


def _roi_pool(
    features,
    boxes,
    output_size,
    spatial_scale=1.0,
    validate=False,
    training=False,
    method: str = "auto",
    base: int | None = None,
):
    """`roi_pool` with the method ("auto", "table", "scan") and the table
    base (None: the cheapest for the shapes) selectable."""
    training = validation.check_bool(training, "training")
    output_size = validation.standardize_size(output_size, "output_size")
    spatial_scale = validation.check_positive_float(
        spatial_scale, "spatial_scale"
    )
    validation.check_one_of(method, ("auto", "table", "scan"), "method")
    if base is not None:
        validation.check_one_of(base, _TABLE_BASES, "base")
    features = _prepare_features(features)
    boxes = _prepare_boxes(boxes, features, validate)
    if method == "table" and None in features.shape[1:3]:
        raise ValueError(
            "The window-table method needs static H and W. Received: "
            f"features.shape={features.shape}."
        )
    bases = (base, base)
    if method == "auto":
        method, _ = _choose_method(features, boxes, output_size)
    if method == "table" and base is None:
        height, width = features.shape[1:3]
        per_image = _boxes_per_image(features, boxes)
        bases = tuple(
            _table_base(height, width, per_image, output_size, cost)
            for cost in (_VALUE_COSTS, _KEY_COSTS)
        )
    return _roi_pool_flat(
        features, boxes, output_size, spatial_scale, method, bases, training
    )
