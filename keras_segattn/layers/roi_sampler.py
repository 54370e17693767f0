"""`RoISampler`: proposals to the box and mask heads' training RoIs."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers.anchor_labeler import check_gt_boxes_shape
from keras_segattn.layers.anchor_labeler import check_iou_thresholds
from keras_segattn.ops.box_coding import check_box_coder_weights
from keras_segattn.ops.box_coding import encode_boxes
from keras_segattn.ops.match_boxes import match_boxes
from keras_segattn.ops.roi_align import roi_align
from keras_segattn.ops.sample_balanced import sample_balanced
from keras_segattn.validation import check_fraction


@keras.saving.register_keras_serializable(package="keras_segattn")
class RoISampler(keras.layers.Layer):
    """Samples training RoIs from proposals, with class, box and mask targets.

    torchvision's `RoIHeads.select_training_samples` (Ren et al., 2015; He
    et al., 2017 for the masks), batched with static shapes:

    1. the ground-truth boxes are appended to the proposals
       (`append_gt_boxes`), so every object has a perfect RoI early on;
    2. `match_boxes` at `fg_iou_threshold` / `bg_iou_threshold` (0.5 /
       0.5: IoU >= 0.5 foreground, below background);
    3. `sample_balanced`: `batch_size_per_image` RoIs per image, at most
       `positive_fraction` positives, positives first;
    4. targets: the class + 1 of each positive (0 background, -1 an empty
       slot) and its matched box encoded with `bbox_reg_weights`.

    With `gt_masks` (and `mask_target_size`), the mask targets of Mask
    R-CNN: the first P = max(int(batch_size_per_image *
    positive_fraction), 1) slots, the only ones that can be positive, are
    the mask RoIs (non-positives replaced by padding boxes, four -1), and
    each positive's matched ground-truth mask is cropped to its RoI by
    RoIAlign at `mask_target_size` with `aligned=True` (Detectron2's
    `BitMasks.crop_and_resize`, with `sampling_ratio` fixed instead of
    adaptive): the pixel convention of `ops.paste_masks`, which pastes the
    predictions back as Detectron2 does, so that a perfect mask head
    pastes back the ground truth. torchvision's `project_masks_on_boxes`
    crops with `aligned=False`, paired with its integer-box paste; with
    Detectron2's paste it shifts every target by half a pixel (a perfect
    head would reach a mean mask IoU of 0.73 on the digit scenes'
    thin strokes instead of 0.999). torchvision runs the mask branch on
    the positives only, a data-dependent count; P static slots keep the
    shapes fixed for XLA.

    Weightless; float32 (`autocast=False`); sampling draws from a
    `keras.random.SeedGenerator` (`seed`).

    Args:
        fg_iou_threshold: float in [0, 1] (0.5).
        bg_iou_threshold: float in [0, fg_iou_threshold] (0.5).
        batch_size_per_image: int > 0. RoIs per image (torchvision: 512).
        positive_fraction: float in [0, 1] (0.25).
        bbox_reg_weights: four positive floats, (10, 10, 5, 5).
        append_gt_boxes: bool. Sample from the proposals and ground truth.
        mask_target_size: None, int or (height, width): size of the mask
            targets (the mask head's output size); needed with `gt_masks`.
        sampling_ratio: int > 0. RoIAlign samples per bin for the masks.
        seed: None or int, seeds the sampler.
        **kwargs: base `Layer` arguments.

    Call arguments:
        proposals: float tensor [B, P0, 4] of (x1, y1, x2, y2), padding
            rows four -1.
        gt_boxes: float tensor [B, M, 4] like `proposals`.
        gt_classes: int tensor [B, M] of 0-based classes, -1 padding.
        gt_masks: optional float tensor [B, M, H, W], one image-sized
            binary mask per ground-truth row.

    Returns:
        A dict: `"rois"` float32 [B, S, 4] (empty slots four -1),
        `"labels"` int32 [B, S], `"box_targets"` float32 [B, S, 4], and
        with `gt_masks` also `"mask_rois"` float32 [B, P, 4], `"mask_labels"`
        int32 [B, P] and `"mask_targets"` float32 [B, P, h, w];
        S = `batch_size_per_image`.

    Raises:
        ValueError: for invalid arguments or input shapes, or `gt_masks`
            without `mask_target_size`.

    Reference:
        - [Girshick, "Fast R-CNN", ICCV 2015](
          https://arxiv.org/abs/1504.08083), section 2.3
        - torchvision's `RoIHeads` (pytorch/vision:
          torchvision/models/detection/roi_heads.py)
        - Detectron2's mask targets (facebookresearch/detectron2:
          detectron2/structures/masks.py, `BitMasks.crop_and_resize`)
    """

    def __init__(
        self,
        fg_iou_threshold: float = 0.5,
        bg_iou_threshold: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
        append_gt_boxes: bool = True,
        mask_target_size: int | Sequence[int] | None = None,
        sampling_ratio: int = 2,
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
        self.bbox_reg_weights = check_box_coder_weights(
            bbox_reg_weights, "bbox_reg_weights"
        )
        self.append_gt_boxes = bool(append_gt_boxes)
        self.mask_target_size = (
            None
            if mask_target_size is None
            else validation.standardize_size(
                mask_target_size, "mask_target_size"
            )
        )
        self.sampling_ratio = validation.check_sampling_ratio(sampling_ratio)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(
            seed, name="roi_sampler_seed_generator"
        )

    @property
    def num_mask_rois(self) -> int:
        """P: the slots that can hold positives, the mask RoIs."""
        return max(int(self.batch_size_per_image * self.positive_fraction), 1)

    def _check_shapes(
        self, proposals_shape, gt_boxes_shape, gt_classes_shape, gt_masks_shape
    ) -> tuple:
        proposals_shape = validation.check_rank(proposals_shape, 3, "proposals")
        if proposals_shape[-1] != 4:
            raise ValueError(
                "Invalid shape for argument `proposals`. Expected [B, P, 4]. "
                f"Received: proposals.shape={proposals_shape}."
            )
        shape = check_gt_boxes_shape(gt_boxes_shape)
        class_shape = validation.check_rank(gt_classes_shape, 2, "gt_classes")
        if class_shape[1] != shape[1]:
            raise ValueError(
                "Invalid shape for argument `gt_classes`. Expected [B, M] "
                "with the M of `gt_boxes`. Received: "
                f"gt_classes.shape={class_shape} and gt_boxes.shape={shape}."
            )
        if gt_masks_shape is not None:
            mask_shape = validation.check_rank(gt_masks_shape, 4, "gt_masks")
            if mask_shape[1] != shape[1] or None in mask_shape[2:]:
                raise ValueError(
                    "Invalid shape for argument `gt_masks`. Expected [B, M, "
                    "H, W] with the M of `gt_boxes` and a static H, W. "
                    f"Received: gt_masks.shape={mask_shape} and "
                    f"gt_boxes.shape={shape}."
                )
            if self.mask_target_size is None:
                raise ValueError(
                    "Invalid value for argument `mask_target_size`. Expected "
                    "the mask head's output size when `gt_masks` is given. "
                    "Received: mask_target_size=None."
                )
        return proposals_shape

    def call(self, proposals, gt_boxes, gt_classes, gt_masks=None):
        self._check_shapes(
            tuple(proposals.shape),
            tuple(gt_boxes.shape),
            tuple(gt_classes.shape),
            None if gt_masks is None else tuple(gt_masks.shape),
        )
        gt_boxes = ops.cast(gt_boxes, "float32")
        gt_classes = ops.cast(gt_classes, "int32")
        candidates = ops.cast(proposals, "float32")
        if self.append_gt_boxes:
            candidates = ops.concatenate([candidates, gt_boxes], axis=1)
        matches = match_boxes(
            candidates, gt_boxes, self.fg_iou_threshold, self.bg_iou_threshold
        )
        labels = ops.where(matches >= 0, 1, ops.where(matches == -1, 0, -1))
        indices, sampled = sample_balanced(
            labels,
            self.batch_size_per_image,
            self.positive_fraction,
            seed=self.seed_generator,
        )
        rois = ops.take_along_axis(candidates, indices[..., None], axis=1)
        rois = ops.where((sampled >= 0)[..., None], rois, -1.0)
        matched = ops.take_along_axis(ops.maximum(matches, 0), indices, axis=1)
        classes = ops.take_along_axis(gt_classes, matched, axis=1) + 1
        roi_labels = ops.where(
            sampled == 1, classes, ops.where(sampled == 0, 0, -1)
        )
        box_targets = encode_boxes(
            ops.take_along_axis(gt_boxes, matched[..., None], axis=1),
            rois,
            self.bbox_reg_weights,
        )
        samples = {
            "rois": rois,
            "labels": roi_labels,
            "box_targets": box_targets,
        }
        if gt_masks is not None:
            samples.update(
                self._mask_targets(rois, roi_labels, matched, gt_masks)
            )
        return samples

    def _mask_targets(self, rois, roi_labels, matched, gt_masks) -> dict:
        count = self.num_mask_rois
        labels = roi_labels[:, :count]
        rois = ops.where((labels > 0)[..., None], rois[:, :count], -1.0)
        # Each RoI crops its matched mask: flat boxes [K, 5] whose first
        # column indexes the [B * M] masks.
        num_gt, height, width = gt_masks.shape[1:]
        image = ops.arange(ops.shape(labels)[0], dtype="int32")[:, None]
        mask_index = image * num_gt + matched[:, :count]
        flat_rois = ops.concatenate(
            [ops.cast(mask_index, "float32")[..., None], rois], axis=-1
        )
        targets = roi_align(
            ops.reshape(ops.cast(gt_masks, "float32"), (-1, height, width, 1)),
            ops.reshape(flat_rois, (-1, 5)),
            self.mask_target_size,
            spatial_scale=1.0,
            sampling_ratio=self.sampling_ratio,
            aligned=True,
        )
        targets = ops.reshape(targets, (-1, count, *self.mask_target_size))
        return {
            "mask_rois": rois,
            "mask_labels": labels,
            "mask_targets": targets,
        }

    def compute_output_shape(
        self,
        proposals_shape,
        gt_boxes_shape,
        gt_classes_shape,
        gt_masks_shape=None,
    ):
        batch = self._check_shapes(
            proposals_shape, gt_boxes_shape, gt_classes_shape, gt_masks_shape
        )[0]
        samples = (batch, self.batch_size_per_image)
        shapes = {"rois": (*samples, 4), "labels": samples}
        shapes["box_targets"] = (*samples, 4)
        if gt_masks_shape is not None:
            masks = (batch, self.num_mask_rois)
            shapes["mask_rois"] = (*masks, 4)
            shapes["mask_labels"] = masks
            shapes["mask_targets"] = (*masks, *self.mask_target_size)
        return shapes

    def compute_output_spec(
        self, proposals, gt_boxes, gt_classes, gt_masks=None
    ):
        shapes = self.compute_output_shape(
            tuple(proposals.shape),
            tuple(gt_boxes.shape),
            tuple(gt_classes.shape),
            None if gt_masks is None else tuple(gt_masks.shape),
        )
        return {
            key: keras.KerasTensor(
                shape, dtype="int32" if "labels" in key else "float32"
            )
            for key, shape in shapes.items()
        }

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "fg_iou_threshold": self.fg_iou_threshold,
            "bg_iou_threshold": self.bg_iou_threshold,
            "batch_size_per_image": self.batch_size_per_image,
            "positive_fraction": self.positive_fraction,
            "bbox_reg_weights": self.bbox_reg_weights,
            "append_gt_boxes": self.append_gt_boxes,
            "mask_target_size": self.mask_target_size,
            "sampling_ratio": self.sampling_ratio,
            "seed": self.seed,
        }
