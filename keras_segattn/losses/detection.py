"""The losses of Faster R-CNN and Mask R-CNN, as torchvision computes them.

Each function takes the outputs of a head and the targets of its labeler
or sampler (`AnchorLabeler`, `RoISampler`) for a batch and returns float32
scalars normalised as torchvision normalises them (by the number of sampled
anchors or RoIs, or of positive mask pixels, in the batch). Under
`tf.distribute` "the batch" is the global batch: inside a replica context
the counts are summed over the replicas (`losses.distribution.
sum_over_replicas`), so each replica returns its share of the global-batch
loss and the shares, whose gradients Keras sums, add up to the loss one
device computes on the whole batch. On one device nothing changes.
"""

from __future__ import annotations

from keras import ops

from keras_segattn.losses.distribution import sum_over_replicas
from keras_segattn.validation import Tensor

# torchvision's smooth L1 `beta` for both box losses.
SMOOTH_L1_BETA = 1.0 / 9.0


def smooth_l1(x: Tensor, beta: float = SMOOTH_L1_BETA) -> Tensor:
    """torchvision's `F.smooth_l1_loss(..., beta, reduction="none")` of a
    difference `x`, elementwise: 0.5 x^2 / beta below beta, else
    |x| - 0.5 beta."""
    magnitude = ops.abs(x)
    return ops.where(
        magnitude < beta, 0.5 * ops.square(x) / beta, magnitude - 0.5 * beta
    )


def _sampled_weights(labels: Tensor) -> tuple:
    """(sampled, positive) float32 masks and the sampled count (>= 1) of
    the global batch."""
    is_sampled = ops.cast(labels >= 0, "float32")
    is_positive = ops.cast(labels > 0, "float32")
    count = sum_over_replicas(ops.sum(is_sampled))
    return is_sampled, is_positive, ops.maximum(count, 1.0)


def rpn_loss(
    objectness: Tensor,
    box_deltas: Tensor,
    sampled_indices: Tensor,
    sampled_labels: Tensor,
    box_targets: Tensor,
) -> tuple[Tensor, Tensor]:
    """The RPN's objectness and box losses over the sampled anchors.

    torchvision's `RegionProposalNetwork.compute_loss`: binary
    cross-entropy of the logits of the sampled anchors, averaged over them;
    smooth L1 (beta 1/9) of the positives' deltas, summed and divided by
    the number of sampled anchors.

    Args:
        objectness: float tensor [B, N] of logits, one per anchor.
        box_deltas: float tensor [B, N, 4] of predicted deltas.
        sampled_indices: int tensor [B, S] of sampled anchor indices.
        sampled_labels: int tensor [B, S]: 1 positive, 0 negative, -1 an
            empty slot.
        box_targets: float tensor [B, S, 4], the encoded matched boxes.

    Returns:
        Tuple `(loss_objectness, loss_rpn_box_reg)` of float32 scalars.
    """
    is_sampled, is_positive, num_sampled = _sampled_weights(sampled_labels)
    logits = ops.take_along_axis(
        ops.cast(objectness, "float32"), sampled_indices, axis=1
    )
    objectness_loss = ops.binary_crossentropy(
        is_positive, logits, from_logits=True
    )
    objectness_loss = ops.sum(objectness_loss * is_sampled) / num_sampled
    predicted = ops.take_along_axis(
        ops.cast(box_deltas, "float32"), sampled_indices[..., None], axis=1
    )
    box_loss = ops.sum(smooth_l1(predicted - box_targets), axis=-1)
    return objectness_loss, ops.sum(box_loss * is_positive) / num_sampled


def fast_rcnn_loss(
    class_logits: Tensor,
    box_deltas: Tensor,
    labels: Tensor,
    box_targets: Tensor,
) -> tuple[Tensor, Tensor]:
    """The box head's classification and box regression losses.

    torchvision's `fastrcnn_loss`: cross-entropy over the sampled RoIs,
    averaged; smooth L1 (beta 1/9) of the deltas of each positive RoI's
    ground-truth class, summed and divided by the number of sampled RoIs.

    Args:
        class_logits: float tensor [B, R, K + 1].
        box_deltas: float tensor [B, R, 4 (K + 1)], class-specific deltas.
        labels: int tensor [B, R]: the class + 1 for a positive, 0 for
            background, -1 for an empty slot.
        box_targets: float tensor [B, R, 4], encoded matched boxes.

    Returns:
        Tuple `(loss_classifier, loss_box_reg)` of float32 scalars.
    """
    is_sampled, is_positive, num_sampled = _sampled_weights(labels)
    class_labels = ops.maximum(labels, 0)
    classifier_loss = ops.sparse_categorical_crossentropy(
        class_labels, ops.cast(class_logits, "float32"), from_logits=True
    )
    classifier_loss = ops.sum(classifier_loss * is_sampled) / num_sampled
    num_classes = class_logits.shape[-1]
    box_deltas = ops.reshape(
        ops.cast(box_deltas, "float32"), (-1, labels.shape[1], num_classes, 4)
    )
    predicted = ops.take_along_axis(
        box_deltas, class_labels[:, :, None, None], axis=2
    )[:, :, 0]
    box_loss = ops.sum(smooth_l1(predicted - box_targets), axis=-1)
    return classifier_loss, ops.sum(box_loss * is_positive) / num_sampled


def mask_rcnn_loss(
    mask_logits: Tensor, labels: Tensor, mask_targets: Tensor
) -> Tensor:
    """The mask head's loss.

    torchvision's `maskrcnn_loss`: per-pixel binary cross-entropy of the
    ground-truth class's mask logits on the positive RoIs against the
    ground-truth masks cropped to them, averaged over those pixels.

    Args:
        mask_logits: float tensor [B, P, m, m', K + 1].
        labels: int tensor [B, P], the class + 1 of a positive RoI, <= 0
            for the others (excluded from the loss).
        mask_targets: float tensor [B, P, m, m'] in [0, 1].

    Returns:
        float32 scalar `loss_mask`.
    """
    logits = ops.take_along_axis(
        ops.cast(mask_logits, "float32"),
        ops.maximum(labels, 0)[:, :, None, None, None],
        axis=-1,
    )[..., 0]
    return binary_mask_loss(logits, labels > 0, mask_targets)


def binary_mask_loss(
    mask_logits: Tensor, weights: Tensor, mask_targets: Tensor
) -> Tensor:
    """Per-pixel binary cross-entropy of box masks, averaged over the
    pixels of the selected boxes of the (global) batch.

    The normalisation of torchvision's `maskrcnn_loss` for one logit map
    per box (`mask_rcnn_loss` selects the class's map first; the
    class-agnostic masks of `SDSRefiner` use it directly).

    Args:
        mask_logits: float tensor [B, P, m, m'].
        weights: bool or float tensor [B, P]: 1 for the boxes in the loss,
            0 for the others (padding, negatives).
        mask_targets: float tensor [B, P, m, m'] in [0, 1].

    Returns:
        float32 scalar.
    """
    logits = ops.cast(mask_logits, "float32")
    loss = ops.binary_crossentropy(
        ops.cast(mask_targets, "float32"), logits, from_logits=True
    )
    weight = ops.cast(weights, "float32")[:, :, None, None]
    pixels = logits.shape[2] * logits.shape[3]
    count = ops.maximum(sum_over_replicas(ops.sum(weight)) * pixels, 1.0)
    return ops.sum(loss * weight) / count
