"""Multi-scale RoIAlign over a feature pyramid (FPN level assignment)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from keras import backend
from keras import ops

from keras_segattn import validation
from keras_segattn.ops.roi_align import _prepare_boxes
from keras_segattn.ops.roi_align import _prepare_features
from keras_segattn.ops.roi_align import _prepare_rois
from keras_segattn.ops.roi_align import _roi_align_maps
from keras_segattn.validation import Tensor
from keras_segattn.validation import shape_list


def _pyramid_levels(spatial_scales: Sequence[float]) -> list[int]:
    """FPN levels k = -log2(scale) of a pyramid, checked to be consecutive.

    Args:
        spatial_scales: one float per level, finest first, each a power of
            two (1/4, 1/8, ...), as torchvision's `MultiScaleRoIAlign`
            infers them.

    Returns:
        The integer levels, e.g. [2, 3, 4, 5] for (1/4, 1/8, 1/16, 1/32).

    Raises:
        ValueError: if a scale is not a positive power of two or the levels
            are not consecutive, finest first.
    """
    if (
        not isinstance(spatial_scales, (list, tuple))
        or not spatial_scales
        or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0
            for s in spatial_scales
        )
    ):
        raise ValueError(
            "Invalid value for argument `spatial_scales`. Expected a "
            "non-empty list of positive floats, one per pyramid level. "
            f"Received: spatial_scales={spatial_scales!r}."
        )
    levels = [-math.log2(float(s)) for s in spatial_scales]
    rounded = [round(k) for k in levels]
    consecutive = all(
        b == a + 1 for a, b in zip(rounded, rounded[1:], strict=False)
    )
    exact = all(abs(k - r) < 1e-6 for k, r in zip(levels, rounded, strict=True))
    if not (exact and consecutive):
        raise ValueError(
            "Invalid value for argument `spatial_scales`. Expected powers of "
            "two for consecutive pyramid levels, finest first (e.g. "
            "[1/4, 1/8, 1/16, 1/32]), as the FPN level assignment picks "
            f"levels by index. Received: spatial_scales={spatial_scales!r}."
        )
    return rounded


def _assign_pyramid_levels(
    boxes_xyxy,
    min_level: int,
    max_level: int,
    canonical_scale: float = 224.0,
    canonical_level: int = 4,
) -> Tensor:
    """FPN level index of each box: Eq. (1) of Lin et al. (2017).

    k = floor(canonical_level + log2(sqrt(area) / canonical_scale + 1e-6)),
    clamped to [min_level, max_level], minus `min_level` (torchvision's
    `LevelMapper`). The area is (x2 - x1) * (y2 - y1) in image pixels,
    clamped at 0 (so a degenerate box goes to the finest level).

    Args:
        boxes_xyxy: float tensor [..., 4].

    Returns:
        int32 tensor [...] in [0, max_level - min_level].
    """
    boxes_xyxy = ops.cast(boxes_xyxy, "float32")
    width = boxes_xyxy[..., 2] - boxes_xyxy[..., 0]
    height = boxes_xyxy[..., 3] - boxes_xyxy[..., 1]
    size = ops.sqrt(ops.maximum(width * height, 0.0))
    level = ops.floor(
        canonical_level + ops.log2(size / float(canonical_scale) + 1e-6)
    )
    level = ops.clip(level, float(min_level), float(max_level))
    return ops.cast(level, "int32") - min_level


def multilevel_roi_align(
    features_by_level: Sequence[Tensor],
    boxes: Tensor,
    output_size: int | Sequence[int],
    spatial_scales: Sequence[float],
    sampling_ratio: int = 2,
    aligned: bool = True,
    canonical_scale: float = 224.0,
    canonical_level: int = 4,
    validate: bool = False,
) -> Tensor:
    """RoIAlign of each box on the pyramid level that suits its size.

    The multi-scale RoI pooling of Feature Pyramid Networks (Lin et al.,
    2017) as in `torchvision.ops.MultiScaleRoIAlign`: each box goes to
    level k = floor(k0 + log2(sqrt(area) / s0 + 1e-6)) with k0 =
    `canonical_level` (4) and s0 = `canonical_scale` (224), clamped to the
    levels present (`_assign_pyramid_levels`), and is pooled by `roi_align`
    on that level with the level's spatial scale. The area is that of the
    (x1, y1, x2, y2) box in image pixels.

    Unlike torchvision, which splits the boxes by level with data-dependent
    shapes, every box is pooled in one pass: the levels' pixels are
    flattened and concatenated and each box gathers its samples' four
    corners from its own level (its own offset, size and scale), so shapes
    stay static and the op compiles under XLA. No neighbourhood table of
    the whole pyramid is built for the forward (it cost 8x the forward
    time on a 4-level pyramid); the gradient is `roi_align`'s, one
    scatter of the four corners per sample into the table's gradient,
    folded back onto each level. Padding boxes (four
    -1), boxes with non-finite coordinates and flat rows with an invalid
    batch index give zero output and zero gradient, whatever the features
    hold; NaN and infinite feature values propagate as in `roi_align`.

    Note that torchvision's `MultiScaleRoIAlign` calls `roi_align` with
    `aligned=False`; pass `aligned=False` to match its numbers. (Newer
    torchvision adds the 1e-6 outside the log2, older inside as here, the
    FPN paper's form; they differ only within 1e-6 of a level boundary.)

    Args:
        features_by_level: list of float tensors [B, H_l, W_l, C], finest
            level first, with the same B, C and dtype.
        boxes: float tensor [B, N, 4] of (x1, y1, x2, y2) in image pixels,
            or [K, 5] of (batch index, x1, y1, x2, y2).
        output_size: int or (height, width). Size of the pooled grid.
        spatial_scales: one float per level, powers of two for consecutive
            levels, finest first (e.g. [1/4, 1/8, 1/16, 1/32]).
        sampling_ratio: int > 0. Sample points per bin along each axis.
        aligned: bool. Shift boxes by -0.5 pixel (see `roi_align`).
        canonical_scale: float > 0. Box size mapped to `canonical_level`.
        canonical_level: int. Level of a `canonical_scale`-sized box.
        validate: bool. If True, check the box values eagerly (see
            `roi_align`).

    Returns:
        Tensor [B, N, out_h, out_w, C] (or [K, out_h, out_w, C] for flat
        boxes) of the features' dtype.

    Raises:
        ValueError: if an argument is out of range, the levels disagree in
            rank, batch size or channels, their number differs from
            `spatial_scales`, or `boxes` is not [B, N, 4] or [K, 5].
        TypeError: if the features are not floating or their dtypes differ.

    Example:

    >>> p2 = np.ones((1, 64, 64, 8), "float32")
    >>> p3 = np.ones((1, 32, 32, 8), "float32")
    >>> boxes = np.array([[[0.0, 0.0, 100.0, 100.0]]], "float32")
    >>> multilevel_roi_align([p2, p3], boxes, 7, [1 / 4, 1 / 8]).shape
    TensorShape([1, 1, 7, 7, 8])

    Reference:
        - [Lin et al., "Feature Pyramid Networks for Object Detection",
          CVPR 2017](https://arxiv.org/abs/1612.03144)
        - [He et al., "Mask R-CNN", ICCV 2017](
          https://arxiv.org/abs/1703.06870)
        - `torchvision.ops.MultiScaleRoIAlign` (pytorch/vision:
          torchvision/ops/poolers.py, `LevelMapper`)
    """
    output_size = validation.standardize_size(output_size, "output_size")
    sampling_ratio = validation.check_sampling_ratio(sampling_ratio)
    canonical_scale = validation.check_positive_float(
        canonical_scale, "canonical_scale"
    )
    validation.check_int(canonical_level, "canonical_level")
    levels = _pyramid_levels(spatial_scales)
    features_by_level = _prepare_levels(features_by_level, len(levels))
    first = features_by_level[0]
    boxes = _prepare_boxes(boxes, first, validate, "features_by_level[0]")

    batch = shape_list(first)[0]
    rois = _prepare_rois(boxes, batch)
    if len(levels) == 1:
        level = ops.zeros_like(rois.batch_index)
    else:
        level = _assign_pyramid_levels(
            rois.coords,
            levels[0],
            levels[-1],
            canonical_scale,
            canonical_level,
        )
    heights, widths, offsets = [], [], []
    offset = 0
    for features in features_by_level:
        _, height, width, _ = shape_list(features)
        heights.append(height)
        widths.append(width)
        offsets.append(offset)
        offset = offset + batch * height * width

    def per_box(values, dtype):
        return ops.take(
            ops.stack([ops.cast(v, dtype) for v in values]), level, axis=0
        )

    height = per_box(heights, "int32")
    width = per_box(widths, "int32")
    base = per_box(offsets, "int32") + rois.batch_index * height * width
    scale = per_box([float(s) for s in spatial_scales], "float32")
    return _roi_align_maps(
        list(features_by_level),
        rois,
        base,
        height,
        width,
        scale,
        output_size,
        sampling_ratio,
        aligned,
    )


def _prepare_levels(features_by_level, num_levels: int) -> list:
    if not isinstance(features_by_level, (list, tuple)):
        features_by_level = [features_by_level]
    if len(features_by_level) != num_levels:
        raise ValueError(
            "Invalid value for argument `features_by_level`. Expected one "
            f"feature map per spatial scale ({num_levels}). Received "
            f"{len(features_by_level)} feature maps."
        )
    prepared = [
        _prepare_features(f, f"features_by_level[{i}]")
        for i, f in enumerate(features_by_level)
    ]
    first = prepared[0]
    for i, features in enumerate(prepared[1:], start=1):
        name = f"features_by_level[{i}]"
        if backend.standardize_dtype(features.dtype) != (
            backend.standardize_dtype(first.dtype)
        ):
            raise TypeError(
                f"Invalid dtype for argument `{name}`. Expected the dtype of "
                f"features_by_level[0] ({first.dtype}). Received: "
                f"{name}.dtype={features.dtype}."
            )
        for axis, what in ((0, "batch size"), (3, "channels")):
            a, b = first.shape[axis], features.shape[axis]
            if a is not None and b is not None and a != b:
                raise ValueError(
                    f"Invalid shape for argument `{name}`. Expected the same "
                    f"{what} as features_by_level[0]. Received: "
                    f"features_by_level[0].shape={first.shape} and "
                    f"{name}.shape={features.shape}."
                )
    return prepared
