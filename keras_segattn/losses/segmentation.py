"""The per-pixel classification loss of the segmentation models."""

from __future__ import annotations

import keras

from keras_segattn.validation import check_void_label


def segmentation_loss(
    void_label: int | None = None,
    from_logits: bool = False,
    name: str = "segmentation_loss",
) -> keras.losses.Loss:
    """Returns the pixel-wise cross-entropy that skips void pixels.

    A thin factory over `keras.losses.SparseCategoricalCrossentropy` with
    `ignore_class=void_label`: the loss is the mean over the non-void
    pixels of the batch (void pixels add nothing to the sum nor to the
    count), the average of the FCN paper's per-pixel multinomial logistic
    loss (Long et al., 2015), which ignores "void" as FCN's
    `ignore_label=255` does.

    Args:
        void_label: int or None. The label of unlabelled pixels (e.g. 11 for
            CamVid with 11 classes, 255 for PASCAL VOC); None keeps every
            pixel.
        from_logits: bool. Whether predictions are logits; the models here
            output probabilities (`"mask_probs"`).
        name: loss name.

    Returns:
        A `keras.losses.SparseCategoricalCrossentropy` taking integer masks
        [B, H, W] (or [B, H, W, 1]) and predictions [B, H, W, num_classes].

    Raises:
        ValueError: if `void_label` is neither None nor an int.

    Example:

    >>> model.compile(optimizer="adam", loss=segmentation_loss(void_label=11))

    Reference:
        - [Long, Shelhamer and Darrell, "Fully Convolutional Networks for
          Semantic Segmentation", CVPR 2015](https://arxiv.org/abs/1411.4038)
    """
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=from_logits,
        ignore_class=check_void_label(void_label),
        name=name,
    )
