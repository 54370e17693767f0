"""`TwoStageDetector`: Faster R-CNN / Mask R-CNN wired from components.

The layout of TF Model Garden's `MaskRCNNModel` (tensorflow/models:
official/vision/modeling/maskrcnn_model.py): the model receives built
components and only wires them. The data flow, inference and training:

    images -> backbone -> levels (-> feature_pyramid -> P2..P6)
    levels -> rpn_head -> objectness, deltas (one pair per level)
    inference: proposal_generator -> proposals -> roi_pooler -> box_head
               -> detection_postprocessor -> detections
               (-> mask_detection_pooler -> mask_head -> mask_postprocessor)
    training:  anchor_labeler(anchors, gt) -> rpn_loss
               proposal_generator -> roi_sampler(proposals, gt) -> RoIs
               -> roi_pooler -> box_head -> fast_rcnn_loss
               (-> mask_roi_pooler -> mask_head -> mask_rcnn_loss)

Box convention: inside the model every box is (x1, y1, x2, y2) in absolute
input-image pixels and a box of four -1 is padding. The ground truth of
`fit`/`evaluate` is converted from the postprocessor's
`bounding_box_format`, in which the detections are returned.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.losses.detection import fast_rcnn_loss
from keras_segattn.losses.detection import mask_rcnn_loss
from keras_segattn.losses.detection import rpn_loss
from keras_segattn.losses.distribution import scale_loss_for_distribution
from keras_segattn.losses.distribution import unscale_loss_for_distribution
from keras_segattn.models._detection_common import non_finite_target_loss
from keras_segattn.models._detection_common import split_detection_targets

LOSS_NAMES = (
    "loss_objectness",
    "loss_rpn_box_reg",
    "loss_classifier",
    "loss_box_reg",
)
MASK_LOSS_NAME = "loss_mask"
_REQUIRED = (
    "backbone",
    "rpn_head",
    "proposal_generator",
    "anchor_labeler",
    "roi_sampler",
    "roi_pooler",
    "box_head",
    "detection_postprocessor",
)
_MASK_PARTS = (
    "mask_roi_pooler",
    "mask_detection_pooler",
    "mask_head",
    "mask_postprocessor",
)
COMPONENTS = (*_REQUIRED, "feature_pyramid", *_MASK_PARTS)


def _as_levels(features) -> list:
    """A backbone's output as a list of levels (Keras returns a one-output
    model's output unwrapped)."""
    return list(features) if isinstance(features, (list, tuple)) else [features]


def _first_stage(parts, images, training=None) -> tuple:
    """images -> (RoI levels, objectness maps, delta maps); the RPN sees
    every level (P6 included), the RoI poolers the first
    `roi_pooler.num_levels`."""
    levels = _as_levels(parts.backbone(images, training=training))
    if parts.feature_pyramid is not None:
        levels = parts.feature_pyramid(levels)
    objectness, deltas = parts.rpn_head(levels)
    return levels[: parts.roi_pooler.num_levels], objectness, deltas


def _detections(parts, images) -> dict:
    """The inference graph: images -> the TF OD API detection dict."""
    levels, objectness, deltas = _first_stage(parts, images)
    proposals, _ = parts.proposal_generator(objectness, deltas)
    class_logits, box_deltas = parts.box_head(
        parts.roi_pooler(levels, proposals)
    )
    detections = parts.detection_postprocessor(
        class_logits, box_deltas, proposals
    )
    if parts.mask_head is None:
        return detections
    boxes = detections["detection_boxes"]
    mask_logits = parts.mask_head(parts.mask_detection_pooler(levels, boxes))
    masks = parts.mask_postprocessor(
        mask_logits,
        boxes,
        detections["detection_classes"],
        detections["num_detections"],
    )
    return {**detections, "detection_masks": masks}


@keras.saving.register_keras_serializable(package="keras_segattn")
class TwoStageDetector(keras.Model):
    """A two-stage detector (Faster R-CNN, Mask R-CNN) built from components.

    The model wires the components it receives (see the module docstring
    for the flow); `FasterRCNN` builds them from plain arguments. The
    functional graph (`model(images)`, `predict`, export) is the inference
    path and returns the TF OD API dict of the `detection_postprocessor`
    (plus `detection_masks` with a mask head). `model(images,
    training=True)` returns the first stage instead, `{"features": [RoI
    levels], "rpn_objectness": [maps], "rpn_deltas": [maps]}`, and
    `compute_loss` runs the second stage on it: Keras's own `train_step`
    (no override) then applies `optimizer.scale_loss` and sums gradients
    over replicas under `tf.distribute`.

    `fit(x=images, y={"boxes": [B, M, 4], "classes": [B, M]})` with rows
    padded with -1 (class -1 or four -1 coordinates), boxes in the
    postprocessor's `bounding_box_format`, and with a mask head
    `y["masks"]` [B, M, H, W] (one image-sized binary mask per row). The
    losses are torchvision's (`keras_segattn.losses.rpn_loss`,
    `fast_rcnn_loss`, `mask_rcnn_loss`), each reported as a metric, and
    `loss` is their sum. Proposals and sampled RoIs are not
    differentiated (torchvision detaches them). `evaluate` computes the
    same losses with the backbone in inference mode; proposals and
    sampling always use the training settings.

    Args:
        backbone: `keras.Model`, images [B, H, W, C] of a static size to a
            feature map or a list of them, finest first.
        rpn_head: `RPNHead`.
        proposal_generator: `ProposalGenerator` with one entry of anchor
            sizes per RPN level (a nested sequence).
        anchor_labeler: `AnchorLabeler`.
        roi_sampler: `RoISampler` (with `mask_target_size` for a mask head).
        roi_pooler: `RoIAlign`, `RoIPool` or `MultiScaleRoIAlign`; it pools
            the first `roi_pooler.num_levels` levels.
        box_head: `BoxHead`.
        detection_postprocessor: `DetectionPostprocessor`.
        feature_pyramid: optional `FeaturePyramid` on the backbone levels.
        mask_roi_pooler, mask_detection_pooler, mask_head,
        mask_postprocessor: all four or none; the poolers of the sampled
            RoIs ("xyxy") and of the detections (in the postprocessor's
            format), a `MaskHead` and a `MaskPostprocessor`.
        **kwargs: `keras.Model` arguments (`name`, ...).

    Raises:
        TypeError: for a missing component or a backbone that is not a
            `keras.Model`.
        ValueError: for a backbone without a static image size, an
            incomplete mask branch, and in `fit`/`evaluate` for targets
            that are not {"boxes": [B, M, 4], "classes": [B, M]}.
    """

    def __init__(
        self,
        backbone,
        rpn_head,
        proposal_generator,
        anchor_labeler,
        roi_sampler,
        roi_pooler,
        box_head,
        detection_postprocessor,
        feature_pyramid=None,
        mask_roi_pooler=None,
        mask_detection_pooler=None,
        mask_head=None,
        mask_postprocessor=None,
        **kwargs,
    ):
        parts = dict(
            backbone=backbone,
            rpn_head=rpn_head,
            proposal_generator=proposal_generator,
            anchor_labeler=anchor_labeler,
            roi_sampler=roi_sampler,
            roi_pooler=roi_pooler,
            box_head=box_head,
            detection_postprocessor=detection_postprocessor,
            feature_pyramid=feature_pyramid,
            mask_roi_pooler=mask_roi_pooler,
            mask_detection_pooler=mask_detection_pooler,
            mask_head=mask_head,
            mask_postprocessor=mask_postprocessor,
        )
        for name, value in parts.items():
            if isinstance(value, dict):  # from `get_config`
                parts[name] = keras.saving.deserialize_keras_object(value)
        _check_components(parts)
        image_shape = tuple(parts["backbone"].inputs[0].shape[1:])
        components = _Components(**parts)

        # === Functional Model ===
        images = keras.Input(image_shape, name="images")
        detections = _detections(components, images)
        super().__init__(inputs=images, outputs=detections, **kwargs)

        # === Components ===
        for name, value in parts.items():
            setattr(self, name, value)
        self.image_shape = image_shape
        postprocessor = components.detection_postprocessor
        self.bounding_box_format = postprocessor.bounding_box_format
        self.loss_names = LOSS_NAMES + (
            (MASK_LOSS_NAME,) if components.mask_head is not None else ()
        )
        self.loss_trackers = [
            keras.metrics.Mean(name=name) for name in ("loss", *self.loss_names)
        ]

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            **{
                name: keras.saving.serialize_keras_object(getattr(self, name))
                for name in COMPONENTS
                if getattr(self, name) is not None
            },
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # === Training ===

    def call(self, inputs, training=None, mask=None):
        if not training:
            return super().call(inputs, training=training, mask=mask)
        levels, objectness, deltas = _first_stage(
            self, self._images(inputs), training=True
        )
        return {
            "features": levels,
            "rpn_objectness": objectness,
            "rpn_deltas": deltas,
        }

    @property
    def metrics(self):
        return list(self.loss_trackers)

    def _images(self, x):
        if isinstance(x, dict):
            x = x["images"]
        validation.check_rank(x, 4, "x")
        return x

    def compute_detection_losses(
        self, images, y, training: bool = False, first_stage=None
    ) -> dict:
        """The losses of a batch: a dict of float32 scalars, `LOSS_NAMES`
        plus `loss_mask` with a mask head (torchvision's normalisation; in
        a `tf.distribute` replica context by the global batch's counts,
        so each value is this replica's share, `keras_segattn.losses.
        detection`).

        Args:
            images: float tensor [B, H, W, C] in 0..255.
            y: dict `{"boxes": [B, M, 4], "classes": [B, M] int}` padded
                with -1, plus `"masks"` [B, M, H, W] with a mask head.
            training: bool, the backbone's mode (batch norm).
            first_stage: optional `model(images, training=True)` output,
                so that the backbone and RPN head do not run twice.
        """
        gt_boxes, gt_classes, gt_masks = self._split_targets(y)
        if first_stage is None:
            levels, objectness, deltas = _first_stage(
                self, images, training=training
            )
        else:
            levels = first_stage["features"]
            objectness = first_stage["rpn_objectness"]
            deltas = first_stage["rpn_deltas"]
        generator = self.proposal_generator
        anchors = generator.anchors([tuple(o.shape[1:3]) for o in objectness])
        logits, flat_deltas, _ = generator.flatten_head_outputs(
            objectness, deltas
        )
        losses = dict(
            zip(
                LOSS_NAMES[:2],
                rpn_loss(
                    logits, flat_deltas, *self.anchor_labeler(anchors, gt_boxes)
                ),
                strict=True,
            )
        )
        proposals, _ = generator(
            [ops.stop_gradient(o) for o in objectness],
            [ops.stop_gradient(d) for d in deltas],
            training=True,
        )
        box_losses, samples = box_stage_losses(
            self.roi_sampler,
            # `training`: RoIPool then finds its argmax in the forward.
            lambda rois: self.roi_pooler(levels, rois, training=training),
            self.box_head,
            proposals,
            gt_boxes,
            gt_classes,
            gt_masks,
        )
        losses.update(box_losses)
        if self.mask_head is not None:
            mask_rois = ops.stop_gradient(samples["mask_rois"])
            mask_logits = self.mask_head(
                self.mask_roi_pooler(levels, mask_rois, training=training)
            )
            losses[MASK_LOSS_NAME] = mask_rcnn_loss(
                mask_logits, samples["mask_labels"], samples["mask_targets"]
            )
        return losses

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        first_stage = (
            y_pred
            if isinstance(y_pred, dict) and "rpn_deltas" in y_pred
            else None
        )
        losses = self.compute_detection_losses(
            self._images(x), y, training=training, first_stage=first_stage
        )
        return track_detection_losses(self, losses, y)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()

    def _split_targets(self, y) -> tuple:
        """Validates `y`; returns gt boxes (x1, y1, x2, y2, padding four -1)
        float32 [B, M, 4], classes int32 [B, M] (-1 for padding) and, with
        the mask head, masks float32 [B, M, H, W] (else None)."""
        boxes, classes = split_detection_targets(y, self.bounding_box_format)
        shape = validation.static_shape(y["boxes"])
        if self.mask_head is None:
            return boxes, classes, None
        if "masks" not in y:
            raise ValueError(
                'Invalid value for argument `y`. Expected a "masks" key '
                "[B, M, H, W] when mask_head=True. Received: keys "
                f"{sorted(y)}."
            )
        mask_shape = validation.check_rank(y["masks"], 4, 'y["masks"]')
        expected = (shape[1], *self.image_shape[:2])
        if tuple(mask_shape[1:]) != expected:
            raise ValueError(
                'Invalid shape for argument `y["masks"]`. Expected [B, M, H, '
                f"W] = [B, {expected[0]}, {expected[1]}, {expected[2]}] (one "
                "image-sized mask per ground-truth box). Received: "
                f'y["masks"].shape={mask_shape}.'
            )
        return boxes, classes, ops.cast(y["masks"], "float32")


def box_stage_losses(
    roi_sampler, pool, box_head, proposals, gt_boxes, gt_classes, gt_masks
) -> tuple[dict, dict]:
    """The second stage's training losses, shared by `TwoStageDetector`
    and the proposal detectors (`FastRCNN`, `RCNN`).

    `roi_sampler` samples RoIs from `proposals` ([B, P, 4] "xyxy", padding
    -1) plus the ground truth; `pool(rois)` gives their region features
    ([B, R, h, w, C]: RoI pooling of a shared map, or a CNN on warped
    crops); `box_head` scores them. Proposals and RoIs are not
    differentiated (torchvision detaches them).

    Returns:
        Tuple `(losses, samples)`: `{"loss_classifier", "loss_box_reg"}`
        (`fast_rcnn_loss`) and the sampler's output.
    """
    samples = roi_sampler(
        ops.stop_gradient(proposals), gt_boxes, gt_classes, gt_masks
    )
    rois = ops.stop_gradient(samples["rois"])
    class_logits, box_deltas = box_head(pool(rois))
    losses = dict(
        zip(
            LOSS_NAMES[2:],
            fast_rcnn_loss(
                class_logits,
                box_deltas,
                samples["labels"],
                samples["box_targets"],
            ),
            strict=True,
        )
    )
    return losses, samples


def track_detection_losses(model: keras.Model, losses: dict, y=None):
    """Updates `model.loss_trackers` (the total first, then
    `model.loss_names`) and returns the total loss to differentiate, plus
    the model's own `losses` (regularisers). With the targets `y`, every
    loss is NaN when a ground-truth box has a NaN or infinite coordinate
    (`non_finite_target_loss`): such a box is never silently ignored."""
    if y is not None:
        fault = non_finite_target_loss(y)
        losses = {name: loss + fault for name, loss in losses.items()}
    # Under tf.distribute each loss is this replica's share of the
    # global-batch loss (normalised by the global counts): the shares,
    # whose gradients Keras sums, add up to the one-device loss, and
    # `unscale` makes the trackers' mean over replicas that sum.
    total = sum(losses.values())
    model.loss_trackers[0].update_state(unscale_loss_for_distribution(total))
    for tracker, name in zip(
        model.loss_trackers[1:], model.loss_names, strict=True
    ):
        tracker.update_state(unscale_loss_for_distribution(losses[name]))
    if model.losses:  # the same on every replica: keras.losses' scaling
        total = total + scale_loss_for_distribution(ops.sum(model.losses))
    return total


class _Components:
    """The components by name, for the wiring functions before the model
    exists (afterwards they read the same attributes on the model)."""

    def __init__(self, **parts):
        self.__dict__.update(parts)


def _check_components(parts: dict) -> None:
    missing = [name for name in _REQUIRED if parts[name] is None]
    if missing:
        raise TypeError(
            "Invalid value for the components of `TwoStageDetector`. "
            f"Expected every one of {list(_REQUIRED)}. Received None for "
            f"{missing}."
        )
    backbone = parts["backbone"]
    if not isinstance(backbone, keras.Model):
        raise TypeError(
            "Invalid type for argument `backbone`. Expected a keras.Model. "
            f"Received: type(backbone)={type(backbone).__name__}."
        )
    shape = tuple(backbone.inputs[0].shape[1:])
    if len(backbone.inputs) != 1 or None in shape:
        raise ValueError(
            "Invalid value for argument `backbone`. Expected one input of "
            "static (H, W, C) (the anchors are constants). Received: inputs "
            f"of shapes {[tuple(i.shape) for i in backbone.inputs]}."
        )
    given = [name for name in _MASK_PARTS if parts[name] is not None]
    if given and len(given) != len(_MASK_PARTS):
        raise ValueError(
            "Invalid value for the mask branch of `TwoStageDetector`. "
            f"Expected all of {list(_MASK_PARTS)} or none. Received: "
            f"{given}."
        )
