"""`AnchorLabeler`: the RPN's training targets at its anchors."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.ops.box_coding import check_box_coder_weights
from keras_segattn.ops.box_coding import encode_boxes
from keras_segattn.ops.match_boxes import match_boxes
from keras_segattn.ops.sample_balanced import sample_balanced
from keras_segattn.validation import check_fraction


def check_iou_thresholds(high, low, prefix: str = "") -> tuple[float, float]:
    """`(fg, bg)` IoU thresholds in [0, 1] with bg <= fg, or `ValueError`
    naming `{prefix}fg_iou_threshold` / `{prefix}bg_iou_threshold`."""
    high = check_fraction(high, f"{prefix}fg_iou_threshold")
    low = check_fraction(low, f"{prefix}bg_iou_threshold")
    if low > high:
        raise ValueError(
            f"Invalid value for argument `{prefix}bg_iou_threshold`. "
            f"Expected {prefix}bg_iou_threshold <= {prefix}fg_iou_threshold. "
            f"Received: {prefix}bg_iou_threshold={low} and "
            f"{prefix}fg_iou_threshold={high}."
        )
    return high, low


def check_gt_boxes_shape(gt_boxes_shape) -> tuple:
    shape = validation.check_rank(gt_boxes_shape, 3, "gt_boxes")
    if shape[-1] != 4 or shape[1] is None:
        raise ValueError(
            "Invalid shape for argument `gt_boxes`. Expected [B, M, 4] with "
            f"a static M. Received: gt_boxes.shape={shape}."
        )
    return shape


@keras.saving.register_keras_serializable(package="keras_segattn")
class AnchorLabeler(keras.layers.Layer):
    """Matches anchors to ground truth, samples them and encodes targets.

    The training half of Faster R-CNN's Region Proposal Network (Ren et
    al., 2015) with torchvision's numbers (`RegionProposalNetwork.
    assign_targets_to_anchors` and its `BalancedPositiveNegativeSampler`):

    1. `match_boxes`: an anchor with IoU >= `fg_iou_threshold` with some
       ground-truth box is positive, one below `bg_iou_threshold` with all
       is negative, the rest are ignored; with
       `allow_low_quality_matches` every ground truth's best anchors are
       positive too;
    2. `sample_balanced`: `batch_size_per_image` anchors per image, at
       most `positive_fraction` of them positive;
    3. `encode_boxes`: each sampled anchor's matched box as (dx, dy, dw,
       dh) deltas with `box_coder_weights` (torchvision's RPN: 1, 1, 1, 1).

    Static shapes throughout (no Python loop over images or anchors), so
    it compiles with XLA. Sampling draws from a `keras.random.
    SeedGenerator` (`seed`). Weightless; float32 (`autocast=False`).

    Args:
        fg_iou_threshold: float in [0, 1], 0.7.
        bg_iou_threshold: float in [0, fg_iou_threshold], 0.3.
        batch_size_per_image: int > 0. Anchors sampled per image (256).
        positive_fraction: float in [0, 1]. Largest positive share (0.5).
        allow_low_quality_matches: bool (True for the RPN).
        box_coder_weights: four positive floats (wx, wy, ww, wh).
        seed: None or int, seeds the sampler.
        **kwargs: base `Layer` arguments.

    Call arguments:
        anchors: float tensor [N, 4] of (x1, y1, x2, y2) pixels, shared by
            the images (`ProposalGenerator.anchors`).
        gt_boxes: float tensor [B, M, 4] of (x1, y1, x2, y2), padding rows
            four -1.

    Returns:
        Tuple `(sampled_indices, sampled_labels, box_targets)`: int32
        [B, S] anchor indices, int32 [B, S] labels (1 positive, 0
        negative, -1 an empty slot, positives first) and float32 [B, S, 4]
        encoded targets, S = `batch_size_per_image` (the inputs of
        `keras_segattn.losses.rpn_loss`).

    Raises:
        ValueError: for invalid arguments or input shapes.

    Reference:
        - [Ren et al., "Faster R-CNN", NeurIPS 2015](
          https://arxiv.org/abs/1506.01497), section 3.1.2
        - torchvision's `RegionProposalNetwork` (pytorch/vision:
          torchvision/models/detection/rpn.py, _utils.py)
    """

    def __init__(
        self,
        fg_iou_threshold: float = 0.7,
        bg_iou_threshold: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        allow_low_quality_matches: bool = True,
        box_coder_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(autocast=False, **kwargs)
        self.fg_iou_threshold, self.bg_iou_threshold = check_iou_thresholds(
            fg_iou_threshold, bg_iou_threshold
        )
        self.batch_size_per_image = validation.check_positive_int(
            batch_size_per_image, "batch_size_per_image"
        )
        self.positive_fraction = check_fraction(
            positive_fraction, "positive_fraction"
        )
        self.allow_low_quality_matches = bool(allow_low_quality_matches)
        self.box_coder_weights = check_box_coder_weights(
            box_coder_weights, "box_coder_weights"
        )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(
            seed, name="anchor_sampler_seed_generator"
        )

    def _check_shapes(self, anchors_shape, gt_boxes_shape) -> tuple:
        shape = validation.check_rank(anchors_shape, 2, "anchors")
        if shape[-1] != 4:
            raise ValueError(
                "Invalid shape for argument `anchors`. Expected [N, 4]. "
                f"Received: anchors.shape={shape}."
            )
        return check_gt_boxes_shape(gt_boxes_shape)

    def call(self, anchors, gt_boxes):
        self._check_shapes(tuple(anchors.shape), tuple(gt_boxes.shape))
        anchors = ops.cast(anchors, "float32")
        gt_boxes = ops.cast(gt_boxes, "float32")
        matches = match_boxes(
            anchors,
            gt_boxes,
            self.fg_iou_threshold,
            self.bg_iou_threshold,
            allow_low_quality_matches=self.allow_low_quality_matches,
        )
        labels = ops.where(matches >= 0, 1, ops.where(matches == -1, 0, -1))
        indices, sampled_labels = sample_balanced(
            labels,
            self.batch_size_per_image,
            self.positive_fraction,
            seed=self.seed_generator,
        )
        matched = ops.take_along_axis(ops.maximum(matches, 0), indices, axis=1)
        box_targets = encode_boxes(
            ops.take_along_axis(gt_boxes, matched[..., None], axis=1),
            ops.take(anchors, indices, axis=0),
            self.box_coder_weights,
        )
        return indices, sampled_labels, box_targets

    def compute_output_shape(self, anchors_shape, gt_boxes_shape):
        batch = self._check_shapes(anchors_shape, gt_boxes_shape)[0]
        samples = (batch, self.batch_size_per_image)
        return samples, samples, (*samples, 4)

    def compute_output_spec(self, anchors, gt_boxes):
        indices, labels, targets = self.compute_output_shape(
            tuple(anchors.shape), tuple(gt_boxes.shape)
        )
        return (
            keras.KerasTensor(indices, dtype="int32"),
            keras.KerasTensor(labels, dtype="int32"),
            keras.KerasTensor(targets, dtype="float32"),
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "fg_iou_threshold": self.fg_iou_threshold,
            "bg_iou_threshold": self.bg_iou_threshold,
            "batch_size_per_image": self.batch_size_per_image,
            "positive_fraction": self.positive_fraction,
            "allow_low_quality_matches": self.allow_low_quality_matches,
            "box_coder_weights": self.box_coder_weights,
            "seed": self.seed,
        }
