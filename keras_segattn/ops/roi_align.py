"""RoIAlign (Mask R-CNN) as an exact, vectorised, XLA-compilable op."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import tensorflow as tf
from keras import ops

from keras_segattn import validation
from keras_segattn.ops._tables import neighbourhood_table
from keras_segattn.validation import Tensor
from keras_segattn.validation import shape_list


class _RoIs(NamedTuple):
    """Boxes in the flat internal form shared by the RoI ops."""

    coords: Tensor  # [K, 4] float32 (x1, y1, x2, y2); 0 where not `keep`
    batch_index: Tensor  # [K] int32, clipped to [0, B)
    keep: Tensor  # [K] bool: not padding, finite, batch index in range
    batch_shape: list | None  # [B, N] for batched boxes, None for flat


def _prepare_features(features, name: str = "features") -> Tensor:
    features = ops.convert_to_tensor(features)
    validation.check_rank(features, 4, name)
    validation.check_floating(features.dtype, name)
    return features


def _prepare_boxes(
    boxes, features, validate: bool, features_name: str = "features"
) -> Tensor:
    """Converts RoI boxes and checks them against the (prepared) features.

    Static checks always ([B, N, 4] or [K, 5], same batch size); with
    `validate`, also the values (eagerly, see `check_roi_box_values`).
    """
    boxes = ops.convert_to_tensor(boxes)
    validation.check_roi_boxes(boxes)
    validation.check_roi_batch_sizes(features, boxes, features_name)
    if validate:
        validation.check_roi_box_values(boxes, num_images=features.shape[0])
    return boxes


def _prepare_rois(boxes, num_images, name: str = "boxes") -> _RoIs:
    """Flattens [B, N, 4] or [K, 5] boxes to [K] RoIs with a keep mask.

    A box whose four coordinates are -1 is padding; boxes with a
    non-finite coordinate and flat rows whose batch index is outside
    [0, num_images) are dropped as well. Dropped boxes get coordinates 0
    (so no NaN reaches the arithmetic) and `keep=False`; the ops zero their
    output, which also zeroes their gradient.
    """
    flat = validation.check_roi_boxes(boxes, name)
    boxes = ops.cast(boxes, "float32")
    if flat:
        coords = boxes[:, 1:]
        batch_value = boxes[:, 0]
        # torchvision casts with `(int)`, which truncates toward zero.
        in_range = ops.logical_and(
            ops.greater(batch_value, -1.0),
            ops.less(batch_value, ops.cast(num_images, "float32")),
        )
        safe_value = ops.where(in_range, batch_value, 0.0)
        batch_index = ops.cast(safe_value, "int32")
        batch_shape = None
    else:
        batch, num_boxes = shape_list(boxes)[:2]
        coords = ops.reshape(boxes, (-1, 4))
        batch_index = ops.broadcast_to(
            ops.expand_dims(ops.arange(batch, dtype="int32"), 1),
            (batch, num_boxes),
        )
        batch_index = ops.reshape(batch_index, (-1,))
        in_range = ops.less(batch_index, ops.cast(num_images, "int32"))
        batch_shape = [batch, num_boxes]
    batch_index = ops.minimum(batch_index, ops.cast(num_images, "int32") - 1)
    padding = ops.all(ops.equal(coords, -1.0), axis=-1)
    finite = ops.all(ops.isfinite(coords), axis=-1)
    keep = ops.logical_and(
        ops.logical_and(ops.logical_not(padding), finite), in_range
    )
    coords = ops.where(ops.expand_dims(keep, -1), coords, 0.0)
    return _RoIs(coords, batch_index, keep, batch_shape)


def _restore_batch(pooled, rois: _RoIs) -> Tensor:
    """[K, ph, pw, C] -> [B, N, ph, pw, C] for batched boxes."""
    if rois.batch_shape is None:
        return pooled
    # The batch size itself, not -1: with N = 0 boxes, -1 is ambiguous
    # and B = 0 came back as B = 1.
    return ops.reshape(pooled, (*rois.batch_shape, *shape_list(pooled)[1:]))


def _neighbourhood_table(features) -> Tensor:
    """[B, H, W, C] -> [B * H * W, 4 * C]: each pixel with its right, lower
    and lower-right neighbours (zero beyond the map)."""
    return neighbourhood_table(
        ops.pad(features, ((0, 0), (0, 1), (0, 1), (0, 0)))
    )


def _divide(x, divisor: int):
    """float32 `x / divisor`, correctly rounded in every execution mode.

    Grappler and XLA rewrite a division by a constant into a multiplication
    by its reciprocal, which is off by one ulp for about half of all
    quotients (e.g. 57 / 7), enough to move a `floor` or `ceil` of a bin
    edge. Dividing in float64 and rounding to float32 gives the float32
    quotient of torchvision's kernels whatever the rewrite (for the small
    integer divisors used here the float64 error cannot reach a float32
    rounding boundary). The tensors involved are a few numbers per box.
    """
    quotient = ops.cast(x, "float64") / float(divisor)
    return ops.cast(quotient, "float32")


def _axis_samples(start, end, scale, size, pooled, sampling_ratio, aligned):
    """Sample positions along one axis, as in torchvision's CPU kernel.

    Args:
        start, end: [K] float32 box edges in image pixels.
        scale: float or [K] float32 spatial scale.
        size: [K] or scalar float32 map size along this axis.

    Returns:
        `(low, w_low, w_high)`, each [K, pooled, sampling_ratio]: the lower
        pixel index (int32) and the two linear-interpolation weights, zero
        for samples outside [-1, size].
    """
    offset = 0.5 if aligned else 0.0
    roi_start = start * scale - offset
    roi_end = end * scale - offset
    roi_size = roi_end - roi_start
    if not aligned:  # torchvision forces malformed RoIs to 1x1
        roi_size = ops.maximum(roi_size, 1.0)
    bin_size = ops.expand_dims(ops.expand_dims(_divide(roi_size, pooled), 1), 2)
    roi_start = ops.expand_dims(ops.expand_dims(roi_start, 1), 2)
    bins = ops.reshape(ops.arange(pooled, dtype="float32"), (1, pooled, 1))
    steps = ops.reshape(
        ops.arange(sampling_ratio, dtype="float32") + 0.5,
        (1, 1, sampling_ratio),
    )
    # roi_start + p * bin + (i + 0.5) * bin / grid, the kernel's order.
    coord = (roi_start + bins * bin_size) + _divide(
        steps * bin_size, sampling_ratio
    )
    size = ops.convert_to_tensor(size, "float32")
    if len(size.shape) == 1:
        size = ops.reshape(size, (-1, 1, 1))
    valid = ops.logical_and(
        ops.greater_equal(coord, -1.0), ops.less_equal(coord, size)
    )
    coord = ops.maximum(coord, 0.0)
    low = ops.floor(coord)
    at_edge = ops.greater_equal(low, size - 1.0)
    low = ops.where(at_edge, size - 1.0, low)
    coord = ops.where(at_edge, low, coord)
    frac = coord - low
    zeros = ops.zeros_like(frac)
    w_low = ops.where(valid, 1.0 - frac, zeros)
    w_high = ops.where(valid, frac, zeros)
    # Clamp as integers so that no index leaves the map, even for the NaN
    # that overflowing coordinates can produce.
    low = ops.cast(low, "int32")
    low = ops.minimum(ops.maximum(low, 0), ops.cast(size, "int32") - 1)
    return low, w_low, w_high


def _sample_grid(
    rois: _RoIs, height, width, scale, output_size, sampling_ratio, aligned
):
    """The bilinear samples of every bin, for both formulations below.

    Returns `(y_low, wy_low, wy_high)` [K, ph, S] and `(x_low, wx_low,
    wx_high)` [K, pw, S]: lower pixel indices (int32) and weights, the y
    weights already holding the 1 / S**2 average and the dropped RoIs'
    zero. `height` and `width` are scalars or [K] (one map per RoI).
    """
    ph, pw = output_size
    aligned = bool(aligned)
    height = ops.cast(height, "float32")
    width = ops.cast(width, "float32")
    x1, y1, x2, y2 = (rois.coords[:, i] for i in range(4))
    y_low, wy_low, wy_high = _axis_samples(
        y1, y2, scale, height, ph, sampling_ratio, aligned
    )
    x_low, wx_low, wx_high = _axis_samples(
        x1, x2, scale, width, pw, sampling_ratio, aligned
    )
    # Average over the grid and zero the dropped RoIs through the weights.
    keep = ops.cast(rois.keep, "float32") / float(sampling_ratio**2)
    keep = ops.reshape(keep, (-1, 1, 1))
    return (y_low, wy_low * keep, wy_high * keep), (x_low, wx_low, wx_high)


def _per_roi(size):
    """A map size as int32, [K, 1, 1] when it is one per RoI."""
    size = ops.cast(ops.convert_to_tensor(size, "float32"), "int32")
    return ops.reshape(size, (-1, 1, 1)) if len(size.shape) == 1 else size


class _Sample(NamedTuple):
    """One bilinear sample of every bin (there are S**2)."""

    index: Tensor  # [K, ph, pw] int32: row of the low corner (flat maps)
    right: Tensor  # [K, 1, pw] int32: +1 to the right corner, 0 at the edge
    down: Tensor  # [K, ph, 1] int32: +W to the lower corner, 0 at the edge
    weights: Tensor  # [K, ph, pw, 4]: low-low, low-high, high-low, high-high


def _samples(
    rois: _RoIs,
    base,
    height,
    width,
    scale,
    output_size: tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
) -> list[_Sample]:
    """The S**2 samples of every bin, as torchvision's kernel places and
    weighs them; rows count from `base` [K], the row of pixel (0, 0) of
    each RoI's map in the maps flattened (and concatenated) row-major.
    At the last row or column the high corner is the low one, with weight
    0, as in that kernel. The weights hold the 1 / S**2 average and the
    dropped RoIs' zero."""
    (y_low, wy_low, wy_high), (x_low, wx_low, wx_high) = _sample_grid(
        rois, height, width, scale, output_size, sampling_ratio, aligned
    )
    height, width = _per_roi(height), _per_roi(width)
    down = ops.where(ops.less(y_low, height - 1), width, 0)  # [K, ph, S]
    right = ops.where(ops.less(x_low, width - 1), 1, 0)  # [K, pw, S]
    row = ops.reshape(base, (-1, 1, 1)) + y_low * width  # [K, ph, S]
    samples = []
    for iy in range(sampling_ratio):
        wy0 = ops.expand_dims(wy_low[:, :, iy], 2)  # [K, ph, 1]
        wy1 = ops.expand_dims(wy_high[:, :, iy], 2)
        for ix in range(sampling_ratio):
            wx0 = ops.expand_dims(wx_low[:, :, ix], 1)  # [K, 1, pw]
            wx1 = ops.expand_dims(wx_high[:, :, ix], 1)
            samples.append(
                _Sample(
                    index=ops.expand_dims(row[:, :, iy], 2)
                    + ops.expand_dims(x_low[:, :, ix], 1),
                    right=ops.expand_dims(right[:, :, ix], 1),
                    down=ops.expand_dims(down[:, :, iy], 2),
                    weights=ops.stack(
                        [wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1], axis=-1
                    ),
                )
            )
    return samples


def _keep_finite_zeros(pooled, rois: _RoIs):
    """Zero weights do not zero a NaN or infinite feature (0 * NaN is NaN):
    select, so dropped RoIs give 0 whatever the map they point at holds."""
    keep = ops.reshape(rois.keep, (-1, 1, 1, 1))
    return ops.where(keep, pooled, ops.zeros_like(pooled))


def _pool_table(table, samples: list[_Sample]) -> Tensor:
    """[K, ph, pw, C] from a neighbourhood table [T, 4 C] (one gather of
    the four corners per sample)."""
    channels = shape_list(table)[1] // 4
    pooled = None
    for sample in samples:
        corners = ops.take(table, sample.index, axis=0)  # [K, ph, pw, 4C]
        corners = ops.reshape(corners, (*shape_list(sample.index), 4, channels))
        weights = ops.cast(sample.weights, table.dtype)
        term = ops.sum(corners * ops.expand_dims(weights, -1), axis=3)
        pooled = term if pooled is None else pooled + term
    return pooled


def _pool_maps(flat, samples: list[_Sample]) -> Tensor:
    """[K, ph, pw, C] from the maps' pixels `flat` [T, C] (four gathers of
    C values per sample, no table to build)."""
    pooled = None
    for sample in samples:
        weights = ops.cast(sample.weights, flat.dtype)
        corners = (
            sample.index,
            sample.index + sample.right,
            sample.index + sample.down,
            sample.index + sample.down + sample.right,
        )
        for k, index in enumerate(corners):
            term = ops.take(flat, index, axis=0) * weights[..., k : k + 1]
            pooled = term if pooled is None else pooled + term
    return pooled


def _concatenate(rows: list) -> Tensor:
    return rows[0] if len(rows) == 1 else ops.concatenate(rows, 0)


def _tables(maps: list) -> Tensor:
    return _concatenate([_neighbourhood_table(m) for m in maps])


def _roi_align_maps(
    maps: list,
    rois: _RoIs,
    base,
    height,
    width,
    scale,
    output_size: tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """RoIAlign of [K] RoIs from one or more maps [B, H_l, W_l, C].

    Args:
        maps: the feature maps; the RoIs' rows count in them flattened
            and concatenated in order.
        rois: the flat RoIs.
        base: [K] int32, the row of pixel (0, 0) of each RoI's map.
        height, width: scalar or [K] size of each RoI's map.
        scale: float or [K] float32 spatial scale of each RoI's map.

    Returns:
        [B, N, ph, pw, C] for batched boxes, else [K, ph, pw, C].

    The forward gathers each sample's four corners from the maps
    (`_pool_maps`: 4 S**2 gathers of C values per bin, no neighbourhood
    table [T, 4 C] to build). The gradient to the maps is the table's:
    one scatter-add of 4 C values per sample into a table gradient,
    folded back onto the maps (4 S**2 scatters of C values are about 1.4x
    slower), from the sample weights the forward used. The gradient to
    the box coordinates (the derivative of the weights, from the table's
    corners) is built only when used: XLA and graph pruning drop it for
    boxes under `stop_gradient`, as proposals are.

    `multilevel_roi_align` uses it: with XLA on CPU (4-level pyramid of
    256 channels, 64 boxes per image) forward 128 -> 15 ms and training
    path 211 -> 109 ms against the pyramid's table. Single-level
    `roi_align` keeps the table path: there this one's forward is a
    little faster (1.3 vs 1.6 ms since the table is one gather) but its
    training path 1.4x slower (35 vs 24 ms, also with the table's
    backward under this forward: XLA runs that backward faster when the
    table's forward is in the step).
    """
    grid = (base, height, width, scale, output_size, sampling_ratio, aligned)

    @ops.custom_gradient
    def align(*inputs):
        levels, coords = list(inputs[:-1]), inputs[-1]
        samples = _samples(rois._replace(coords=coords), *grid)
        flat = _concatenate(
            [ops.reshape(m, (-1, shape_list(m)[3])) for m in levels]
        )
        pooled = _keep_finite_zeros(_pool_maps(flat, samples), rois)

        def grad(*upstreams, upstream=None):
            if upstream is None:
                (upstream,) = upstreams
            upstream = ops.reshape(upstream, shape_list(pooled))
            upstream = _keep_finite_zeros(upstream, rois)
            channels = shape_list(upstream)[-1]
            table_shape = (shape_list(flat)[0], 4 * channels)
            updates = [
                ops.reshape(
                    ops.expand_dims(upstream, 3)
                    * ops.expand_dims(ops.cast(s.weights, upstream.dtype), -1),
                    (-1, 4 * channels),
                )
                for s in samples
            ]
            rows = [ops.reshape(s.index, (-1, 1)) for s in samples]
            table_grad = ops.scatter(
                _concatenate(rows), _concatenate(updates), table_shape
            )
            # `tf.GradientTape`: keras.ops has no vector-Jacobian product.
            # The table's adjoint is slicing and padding; the boxes' needs
            # the corners (pruned when unused).
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(inputs)
                table = _tables(levels)
                reference = _pool_table(
                    ops.stop_gradient(table),
                    _samples(rois._replace(coords=coords), *grid),
                )
            grads = tape.gradient(table, levels, output_gradients=table_grad)
            grads.append(
                tape.gradient(reference, coords, output_gradients=upstream)
            )
            del tape
            return [
                ops.zeros_like(x) if g is None else ops.convert_to_tensor(g)
                for x, g in zip(inputs, grads, strict=True)
            ]

        return _restore_batch(pooled, rois), grad

    return align(*maps, rois.coords)


def roi_align(
    features: Tensor,
    boxes: Tensor,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
    validate: bool = False,
) -> Tensor:
    """Pools every box of a feature map to a fixed grid by bilinear sampling.

    RoIAlign of Mask R-CNN (He et al., 2017), matching the numbers of
    `torchvision.ops.roi_align` (its CPU kernel, roi_align_kernel.cpp).
    Each box is scaled by `spatial_scale` (and shifted by -0.5 pixel when
    `aligned`), divided into `output_size` bins, and each bin is the
    average of `sampling_ratio ** 2` bilinear samples at the centres of a
    regular grid. A sample outside [-1, H] x [-1, W] contributes 0; other
    samples clamp their coordinates to [0, H - 1] x [0, W - 1]. With
    `aligned=False` box sizes are clamped to at least 1 feature pixel.

    Boxes are a padded, static-size batch [B, N, 4] of absolute
    (x1, y1, x2, y2) image pixels; torchvision's flat [K, 5] form
    (batch index, x1, y1, x2, y2) is accepted too. A box whose four
    coordinates are -1 is padding: its output and its gradient are zero,
    never NaN. So are boxes with a NaN or infinite coordinate and flat
    rows with a batch index outside [0, B) (`validate=True` raises
    instead), whatever the features hold. Boxes with x2 < x1 or y2 < y1
    follow torchvision's formulas (a negative bin size with
    `aligned=True`, a 1-pixel box otherwise). Huge or negative finite
    coordinates are clamped like any other sample (to 0 outside
    [-1, H] x [-1, W]). A NaN or infinite feature value propagates to
    every bin of its image that has a sample whose 2 x 2 bilinear
    neighbourhood (the clamped low corner and the pixels right of and
    below it) contains that pixel, even with a zero weight
    (0 * NaN = NaN, as in torchvision); bins of other images and dropped
    boxes stay finite.

    The op is vectorised: it gathers the four corners of every sample from
    a flat [B * H * W, 4 * C] neighbourhood table (in the spirit of TF
    Model Garden's official/vision/ops/spatial_transform_ops.py), with no
    Python loop over images, boxes or bins, so it compiles under XLA and
    accepts an unknown batch size and spatial size. Coordinates are
    computed in float32 whatever the feature dtype; the interpolation
    weights are cast to the features' dtype just before multiplying, so
    float16 features stay float16. The gradient flows to `features` (the
    bilinear weights scattered back) and, unlike torchvision's, also to
    `boxes` (the derivative of the weights); wrap boxes in
    `keras.ops.stop_gradient` for torchvision's behaviour.

    Args:
        features: float tensor [B, H, W, C].
        boxes: float tensor [B, N, 4] of (x1, y1, x2, y2) in image pixels,
            or [K, 5] of (batch index, x1, y1, x2, y2).
        output_size: int or (height, width). Size of the pooled grid.
        spatial_scale: float > 0. Maps box coordinates to feature pixels
            (1/16 for a stride-16 map).
        sampling_ratio: int > 0. Sample points per bin along each axis.
            torchvision's adaptive mode (`<= 0`) has a data-dependent
            sample count that XLA cannot compile, so it is rejected.
        aligned: bool. Shift boxes by -0.5 pixel so that pixel centres
            align (Detectron2's ROIAlignV2); False is the original
            Mask R-CNN op.
        validate: bool. If True, check the box values eagerly (NaN,
            x2 < x1, y2 < y1, batch index) and raise `ValueError`; needs
            concrete boxes, so leave it False inside compiled functions.

    Returns:
        Tensor [B, N, out_h, out_w, C] (or [K, out_h, out_w, C] for flat
        boxes) of the features' dtype.

    Raises:
        ValueError: if `output_size`, `spatial_scale` or `sampling_ratio`
            is not positive, `features` is not rank 4, `boxes` is not
            [B, N, 4] or [K, 5], the batch sizes differ, or (with
            `validate=True`) a box value is invalid.
        TypeError: if `features` is not floating.

    Example:

    >>> features = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    >>> boxes = np.array([[[0.0, 0.0, 2.0, 2.0]]], "float32")
    >>> pooled = roi_align(features, boxes, output_size=1, aligned=False)
    >>> np.asarray(pooled)[0, 0, :, :, 0]
    array([[5.]], dtype=float32)

    Reference:
        - [He et al., "Mask R-CNN", ICCV 2017](
          https://arxiv.org/abs/1703.06870)
        - `torchvision.ops.roi_align` (pytorch/vision:
          torchvision/csrc/ops/cpu/roi_align_kernel.cpp)
    """
    output_size = validation.standardize_size(output_size, "output_size")
    spatial_scale = validation.check_positive_float(
        spatial_scale, "spatial_scale"
    )
    sampling_ratio = validation.check_sampling_ratio(sampling_ratio)
    features = _prepare_features(features)
    boxes = _prepare_boxes(boxes, features, validate)
    batch, height, width, _ = shape_list(features)
    rois = _prepare_rois(boxes, batch)
    samples = _samples(
        rois,
        rois.batch_index * (height * width),
        height,
        width,
        spatial_scale,
        output_size,
        sampling_ratio,
        aligned,
    )
    pooled = _pool_table(_neighbourhood_table(features), samples)
    return _restore_batch(_keep_finite_zeros(pooled, rois), rois)
