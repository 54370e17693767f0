"""Balanced positive/negative sampling with static shapes (Faster R-CNN)."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.ops import _random
from keras_segattn.validation import Tensor


def sample_balanced(
    labels: Tensor,
    num_samples: int,
    positive_fraction: float,
    seed=None,
) -> tuple[Tensor, Tensor]:
    """Draws a fixed-size random subset of positives and negatives per image.

    The sampler of Faster R-CNN, with the numbers of `torchvision.models.
    detection._utils.BalancedPositiveNegativeSampler`: per image, at most
    `int(num_samples * positive_fraction)` positives (all of them if there
    are fewer), then negatives up to `num_samples` in all (fewer if there
    are not enough), each set a uniformly random subset. torchvision draws
    with `torch.randperm`; here every candidate gets a uniform random
    score and `top_k` keeps the largest, which draws subsets with the same
    distribution, vectorised over the batch with static shapes (no Python
    loop, no `boolean_mask`).

    The output always has `num_samples` slots per image: positives first,
    then negatives, then empty slots (label -1, index 0) when an image has
    too few candidates.

    Args:
        labels: int tensor [B, N]: 1 for a positive, 0 for a negative, any
            other value (-1) for a box that must not be sampled (ignored
            or padding).
        num_samples: int > 0. Slots per image (256 for the RPN, 128 or 512
            for the box head).
        positive_fraction: float in [0, 1]. Largest share of positives
            (0.5 for the RPN, 0.25 for the box head).
        seed: None, an int or a `keras.random.SeedGenerator` (use a
            generator made once, in a layer's or model's `__init__`, for
            fresh draws at every step of a compiled function).

    Returns:
        Tuple `(indices, sampled_labels)`, both int32 [B, num_samples]:
        the index in [0, N) of each sampled box (0 in empty slots) and its
        label (1 positive, 0 negative, -1 empty slot).

    Raises:
        ValueError: if `labels` is not rank 2 with a static N,
            `num_samples` is not a positive int or `positive_fraction` is
            outside [0, 1].
        TypeError: if `labels` is not an integer tensor.
    """
    num_samples = validation.check_positive_int(num_samples, "num_samples")
    validation.check_fraction(positive_fraction, "positive_fraction")
    shape = validation.check_rank(labels, 2, "labels")
    if shape[1] is None:
        raise ValueError(
            "Invalid shape for argument `labels`. Expected a static number "
            f"of boxes N in [B, N]. Received: labels.shape={shape}."
        )
    validation.check_integer(
        keras.backend.standardize_dtype(labels.dtype), "labels"
    )
    labels = ops.cast(labels, "int32")
    num_boxes = shape[1]
    if num_boxes < num_samples:  # top_k needs k <= N: pad with ignored
        labels = ops.pad(
            labels, [[0, 0], [0, num_samples - num_boxes]], constant_values=-1
        )
    max_positives = int(num_samples * positive_fraction)

    scores = _random.uniform(ops.shape(labels), seed)  # [0, 1)
    slots = ops.arange(num_samples, dtype="int32")[None, :]
    neg_scores, neg_index = ops.top_k(
        ops.where(ops.equal(labels, 0), scores, -1.0), k=num_samples
    )
    if max_positives > 0:
        pos_scores, pos_index = ops.top_k(
            ops.where(ops.equal(labels, 1), scores, -1.0), k=max_positives
        )
        num_positives = ops.sum(
            ops.cast(pos_scores >= 0.0, "int32"), axis=1, keepdims=True
        )
    else:
        num_positives = ops.zeros_like(labels[:, :1])
    # Slot k holds positive k while k < num_positives, then negative
    # k - num_positives: a gather, not a second sort.
    is_positive = slots < num_positives
    neg_slot = ops.maximum(slots - num_positives, 0)
    index = ops.take_along_axis(neg_index, neg_slot, axis=1)
    is_negative = ops.logical_and(
        ops.logical_not(is_positive),
        ops.take_along_axis(neg_scores, neg_slot, axis=1) >= 0.0,
    )
    if max_positives > 0:
        pos_slot = ops.minimum(slots, max_positives - 1)
        pos_slot = ops.broadcast_to(pos_slot, ops.shape(index))
        index = ops.where(
            is_positive, ops.take_along_axis(pos_index, pos_slot, axis=1), index
        )
    sampled_labels = ops.where(is_positive, 1, ops.where(is_negative, 0, -1))
    index = ops.where(sampled_labels >= 0, ops.cast(index, "int32"), 0)
    return index, ops.cast(sampled_labels, "int32")
