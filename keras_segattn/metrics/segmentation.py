"""Segmentation metrics: mean IoU and pixel accuracy, void pixels skipped."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation


@keras.saving.register_keras_serializable(package="keras_segattn")
class MaskedPixelAccuracy(keras.metrics.Metric):
    """Fraction of labelled pixels whose predicted class is right.

    The "pixel accuracy" of Long et al. (2015), `sum_i n_ii / sum_i t_i`,
    over the pixels whose label is not `ignore_class` (which
    `keras.metrics.SparseCategoricalAccuracy` would count). Predictions
    are class scores (argmax over the last axis) or, with
    `sparse_y_pred=True`, class labels. Accumulates over batches; 0 before
    any labelled pixel was seen.

    Args:
        ignore_class: int or None. Label of void pixels, skipped.
        sparse_y_pred: bool. Whether `y_pred` holds labels, not scores.
        name: metric name.
        dtype: dtype of the result.

    Call arguments (`update_state`):
        y_true: integer labels [B, H, W] or [B, H, W, 1].
        y_pred: scores [B, H, W, num_classes] (or labels [B, H, W] with
            `sparse_y_pred=True`).
        sample_weight: optional weights broadcastable to [B, H, W].

    Raises:
        ValueError: if `ignore_class` is neither None nor an int.

    Reference:
        - [Long, Shelhamer and Darrell, "Fully Convolutional Networks for
          Semantic Segmentation", CVPR 2015](https://arxiv.org/abs/1411.4038)
    """

    def __init__(
        self,
        ignore_class: int | None = None,
        sparse_y_pred: bool = False,
        name: str = "pixel_accuracy",
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        self.ignore_class = validation.check_void_label(
            ignore_class, "ignore_class"
        )
        self.sparse_y_pred = bool(sparse_y_pred)
        self.correct = self.add_variable(
            shape=(), initializer="zeros", name="correct", dtype="float32"
        )
        self.count = self.add_variable(
            shape=(), initializer="zeros", name="count", dtype="float32"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        if not self.sparse_y_pred:
            y_pred = ops.argmax(y_pred, axis=-1)
        if len(y_true.shape) == len(y_pred.shape) + 1 and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        y_true = ops.cast(y_true, "int32")
        y_pred = ops.cast(y_pred, "int32")
        weights = ops.ones_like(y_true, dtype="float32")
        if self.ignore_class is not None:
            weights = ops.where(
                ops.equal(y_true, self.ignore_class), 0.0, weights
            )
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            if (
                len(sample_weight.shape) == len(weights.shape) + 1
                and sample_weight.shape[-1] == 1
            ):
                sample_weight = ops.squeeze(sample_weight, axis=-1)
            weights = weights * ops.broadcast_to(
                sample_weight, ops.shape(weights)
            )
        matches = ops.cast(ops.equal(y_true, y_pred), "float32")
        self.correct.assign_add(ops.sum(matches * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.cast(ops.divide_no_nan(self.correct, self.count), self.dtype)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "ignore_class": self.ignore_class,
            "sparse_y_pred": self.sparse_y_pred,
        }


def segmentation_metrics(
    num_classes: int, void_label: int | None = None
) -> list[keras.metrics.Metric]:
    """Returns `[mean_iou, pixel_accuracy]` for `model.compile`.

    `keras.metrics.MeanIoU(num_classes, ignore_class=void_label,
    sparse_y_pred=False, name="mean_iou")` (the mean over classes of
    `n_ii / (t_i + sum_j n_ji - n_ii)` of Long et al., 2015, accumulated
    over the whole evaluation set) and `MaskedPixelAccuracy`, both
    skipping void pixels.

    Args:
        num_classes: int >= 1. Number of real classes (void excluded).
        void_label: int or None. Label of unlabelled pixels.

    Returns:
        A list of two metrics taking integer masks [B, H, W] and class
        probabilities [B, H, W, num_classes].

    Raises:
        ValueError: if `num_classes < 1` or `void_label` is not None or an
            int.
    """
    validation.check_num_classes(num_classes)
    void_label = validation.check_void_label(void_label)
    return [
        keras.metrics.MeanIoU(
            num_classes=num_classes,
            ignore_class=void_label,
            sparse_y_pred=False,
            name="mean_iou",
        ),
        MaskedPixelAccuracy(ignore_class=void_label, name="pixel_accuracy"),
    ]
