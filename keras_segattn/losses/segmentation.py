"""The per-pixel classification loss of the segmentation models."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import keras
import numpy as np
from keras import ops

from keras_segattn.losses import distribution
from keras_segattn.validation import check_num_classes
from keras_segattn.validation import check_void_label


def segmentation_loss(
    void_label: int | None = None,
    from_logits: bool = False,
    name: str = "segmentation_loss",
    class_weights=None,
) -> keras.losses.Loss:
    """Returns the pixel-wise cross-entropy that skips void pixels.

    The mean over the non-void pixels of the batch (void pixels add nothing
    to the sum nor to the count) of the FCN paper's per-pixel multinomial
    logistic loss (Long et al., 2015), which ignores "void" as FCN's
    `ignore_label=255` does; optionally class-weighted.

    - Without `void_label` and `class_weights`: Keras's
      `SparseCategoricalCrossentropy` (every pixel counts, so Keras's
      per-replica mean is exact under `tf.distribute`).
    - Otherwise: `SegmentationCrossentropy`, which divides by the non-void
      count of the *global* batch under `tf.distribute`. Keras's
      `ignore_class` divides by each replica's own count, which trains
      differently from one device when the replicas' void shares differ
      (30 % off in the update of tests/distribute's case).

    Args:
        void_label: int or None. The label of unlabelled pixels (e.g. 11 for
            CamVid with 11 classes, 255 for PASCAL VOC); None keeps every
            pixel.
        from_logits: bool. Whether predictions are logits; the models here
            output probabilities (`"mask_probs"`).
        name: loss name.
        class_weights: None, or one non-negative weight per class (e.g.
            `median_frequency_weights`): each pixel's cross-entropy is
            multiplied by its class's weight, and the sum is still divided
            by the number of non-void pixels, as SegNet's weighted
            `SoftmaxWithLoss` does (Badrinarayanan et al., 2017).

    Returns:
        A `keras.losses.Loss` taking integer masks [B, H, W] (or
        [B, H, W, 1]) and predictions [B, H, W, num_classes].

    Raises:
        ValueError: if `void_label` is neither None nor an int, or
            `class_weights` is not a list of non-negative finite numbers.

    Example:

    >>> model.compile(optimizer="adam", loss=segmentation_loss(void_label=11))

    Reference:
        - [Long, Shelhamer and Darrell, "Fully Convolutional Networks for
          Semantic Segmentation", CVPR 2015](https://arxiv.org/abs/1411.4038)
    """
    void_label = check_void_label(void_label)
    if class_weights is None and void_label is None:
        return keras.losses.SparseCategoricalCrossentropy(
            from_logits=from_logits, name=name
        )
    return SegmentationCrossentropy(
        class_weights,
        void_label=void_label,
        from_logits=from_logits,
        name=name,
    )


def _check_class_weights(class_weights) -> list:
    weights = (
        np.asarray(class_weights, dtype="float64")
        if (isinstance(class_weights, (list, tuple, np.ndarray)))
        else None
    )
    if (
        weights is None
        or weights.ndim != 1
        or weights.size == 0
        or not np.all(np.isfinite(weights))
        or np.any(weights < 0)
    ):
        raise ValueError(
            "Invalid value for argument `class_weights`. Expected a "
            "non-empty list of non-negative finite numbers, one per class. "
            f"Received: class_weights={class_weights!r}."
        )
    return [float(w) for w in weights]


@keras.saving.register_keras_serializable(package="keras_segattn")
class SegmentationCrossentropy(keras.losses.Loss):
    """Pixel-wise cross-entropy that skips void pixels, class-weighted.

    Per pixel `i` with label `c_i` (not void): `w[c_i] * -log p_i[c_i]`;
    void pixels add 0. With the default `"sum_over_batch_size"` reduction
    the loss is `sum_i w[c_i] * CE_i / (number of non-void pixels)`: the
    normalisation of `keras.losses.SparseCategoricalCrossentropy`'s
    `ignore_class` (and of Caffe's `SoftmaxWithLoss` with
    `normalization: VALID`, which SegNet trains CamVid with), so without
    weights it equals Keras's `ignore_class` loss on one device. Under
    `tf.distribute` each replica's value is its weighted sum divided by the
    non-void count of the global batch (summed over the replicas), so the
    replicas' shares add up to the one-device loss even when their void
    shares differ (Keras's `ignore_class` divides by each replica's own
    count). Reductions "sum" and "none" return the plain weighted sums.

    Args:
        class_weights: None (every class 1) or one non-negative weight per
            class.
        void_label: int or None. Label of pixels to skip.
        from_logits: bool. Whether predictions are logits.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Reference:
        - [Badrinarayanan, Kendall and Cipolla, "SegNet", TPAMI 2017](
          https://arxiv.org/abs/1511.00561), Section 4 (median frequency
          balancing, after Eigen and Fergus, ICCV 2015)
    """

    def __init__(
        self,
        class_weights=None,
        void_label=None,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="segmentation_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.class_weights = (
            None
            if class_weights is None
            else _check_class_weights(class_weights)
        )
        self.void_label = check_void_label(void_label)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        num_classes = y_pred.shape[-1]
        weighted = self.class_weights is not None
        if (
            weighted
            and num_classes is not None
            and num_classes != len(self.class_weights)
        ):
            raise ValueError(
                "Invalid value for argument `class_weights`. Expected one "
                f"weight per class of the predictions ({num_classes}). "
                f"Received: {len(self.class_weights)} weights."
            )
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.squeeze(y_true, axis=-1)
        labels = ops.cast(y_true, "int32")
        if self.void_label is None:
            valid = ops.ones_like(labels, dtype="bool")
        else:
            valid = ops.not_equal(labels, self.void_label)
        labels = ops.where(valid, labels, 0)
        pixel_loss = keras.losses.sparse_categorical_crossentropy(
            labels, y_pred, from_logits=self.from_logits
        )
        if weighted:
            weights = ops.convert_to_tensor(
                self.class_weights, pixel_loss.dtype
            )
            pixel_loss = pixel_loss * ops.take(weights, labels)
        if self.reduction not in ("sum_over_batch_size", "mean"):
            return ops.where(valid, pixel_loss, 0.0)
        # The reduction divides by this replica's pixel count and by the
        # number of replicas; scaled so, the replica's value is its sum
        # over the global batch's non-void pixel count (the single-device
        # loss, split exactly however unequal the void shares are).
        valid_float = ops.cast(valid, pixel_loss.dtype)
        total = ops.cast(ops.size(valid_float), pixel_loss.dtype)
        replicas = float(distribution.num_replicas_in_sync())
        global_valid = distribution.sum_over_replicas(ops.sum(valid_float))
        scale = ops.divide_no_nan(total * replicas, global_valid)
        return ops.where(valid, pixel_loss * scale, 0.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            class_weights=self.class_weights,
            void_label=self.void_label,
            from_logits=self.from_logits,
        )
        return config


def median_frequency_weights(
    masks, num_classes: int, void_label: int | None = None
) -> np.ndarray:
    """Median frequency balancing weights (Eigen & Fergus 2015, SegNet).

    `freq(c)` is the number of pixels of class `c` divided by the number of
    (non-void) pixels of the images in which `c` appears, and
    `weight(c) = median(freq) / freq(c)`, the median taken over the classes
    that appear. Rare classes (CamVid's pole, sign, pedestrian, bicyclist)
    get weights above 1, frequent ones (road, sky) below 1. A class that
    never appears gets weight 0 (it has no pixels to weight) and a warning.

    Args:
        masks: integer label maps [N, H, W] or [N, H, W, 1], or an iterable
            of such batches or of `(images, masks)` pairs (e.g. a
            `tf.data.Dataset` of the training split, unaugmented).
        num_classes: number of classes; labels must be in
            `[0, num_classes)` or equal to `void_label`.
        void_label: int or None. Label excluded from every count.

    Returns:
        float32 array [num_classes].

    Raises:
        ValueError: for labels outside `[0, num_classes)` that are not
            `void_label`, or when no non-void pixel is found.
    """
    num_classes = check_num_classes(num_classes)
    void_label = check_void_label(void_label)
    if isinstance(masks, np.ndarray) or not isinstance(masks, Iterable):
        batches = [masks]
    else:
        batches = masks
    class_pixels = np.zeros(num_classes, "float64")
    image_pixels = np.zeros(num_classes, "float64")
    for batch in batches:
        if isinstance(batch, (tuple, list)):
            batch = batch[1]
        batch = np.asarray(batch)
        if batch.ndim == 4 and batch.shape[-1] == 1:
            batch = batch[..., 0]
        if batch.ndim == 2:
            batch = batch[None]
        if batch.ndim != 3 or not np.issubdtype(batch.dtype, np.integer):
            raise ValueError(
                "Invalid value for argument `masks`. Expected integer label "
                "maps [N, H, W] or [N, H, W, 1]. Received: an array of "
                f"shape {batch.shape} and dtype {batch.dtype}."
            )
        for mask in batch:
            labels = mask.ravel()
            if void_label is not None:
                labels = labels[labels != void_label]
            if labels.size and (
                labels.min() < 0 or labels.max() >= num_classes
            ):
                bad = labels[(labels < 0) | (labels >= num_classes)][0]
                raise ValueError(
                    "Invalid value for argument `masks`. Expected labels in "
                    f"[0, {num_classes}) or void_label={void_label}. "
                    f"Received: a mask with label {int(bad)}."
                )
            counts = np.bincount(labels, minlength=num_classes)
            class_pixels += counts
            image_pixels[counts > 0] += labels.size
    present = class_pixels > 0
    if not present.any():
        raise ValueError(
            "Invalid value for argument `masks`. Expected at least one "
            "non-void pixel. Received: none."
        )
    if not present.all():
        warnings.warn(
            "median_frequency_weights: classes "
            f"{np.flatnonzero(~present).tolist()} never appear in `masks`; "
            "their weight is 0.",
            stacklevel=2,
        )
    frequency = np.zeros(num_classes, "float64")
    frequency[present] = class_pixels[present] / image_pixels[present]
    weights = np.zeros(num_classes, "float64")
    weights[present] = np.median(frequency[present]) / frequency[present]
    return weights.astype("float32")
