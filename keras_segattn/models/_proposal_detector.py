"""The detectors that take their region proposals as an input (`FastRCNN`,
`RCNN`): the second stage of `TwoStageDetector` without an RPN.

    inputs {"images" [B, H, W, C], "proposals" [B, N, 4]}
    inference: region_pool(images)(proposals) -> box_head
               -> detection_postprocessor -> detections
    training:  roi_sampler(proposals, gt) -> RoIs -> region_pool(images)(RoIs)
               -> box_head -> fast_rcnn_loss

The subclasses differ only in `_region_pool`, the function giving the
region features of boxes: Fast R-CNN pools them from one shared feature
map (RoI pooling), R-CNN warps each box out of the image and runs the CNN
on every crop. Sampler, box head, losses (`box_stage_losses`, the same
function `TwoStageDetector` calls) and post-processor are the ones of
`FasterRCNN` (`build_box_stage_components`).
"""

from __future__ import annotations

import keras

from keras_segattn import validation
from keras_segattn.layers import _roi_common
from keras_segattn.models._detection_common import split_detection_targets
from keras_segattn.models.two_stage_detector import LOSS_NAMES
from keras_segattn.models.two_stage_detector import box_stage_losses
from keras_segattn.models.two_stage_detector import track_detection_losses

BOX_LOSS_NAMES = LOSS_NAMES[2:]
INPUT_KEYS = ("images", "proposals")


class _ProposalsToXYXY(keras.layers.Layer):
    """Proposals in `bounding_box_format` -> float32 (x1, y1, x2, y2),
    padding rows kept four -1 (a layer: Keras's box conversion does not
    take symbolic tensors)."""

    def __init__(self, bounding_box_format: str, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.bounding_box_format = _roi_common.check_bounding_box_format(
            bounding_box_format
        )

    def call(self, proposals):
        return _roi_common.to_xyxy(proposals, self.bounding_box_format)

    def compute_output_shape(self, proposals_shape):
        return tuple(proposals_shape)

    def compute_output_spec(self, proposals):
        return keras.KerasTensor(proposals.shape, "float32")

    def get_config(self):
        return {
            **super().get_config(),
            "bounding_box_format": self.bounding_box_format,
        }


class _Parts:
    """The components by name, before the model exists."""

    def __init__(self, **parts):
        self.__dict__.update(parts)


class ProposalDetectorBase(keras.Model):
    """Base of `FastRCNN` and `RCNN`: wires the components of the second
    stage around given proposals (see the module docstring).

    Subclasses implement `_region_pool(parts, images, training)` returning
    `pool(rois [B, R, 4] xyxy) -> features [B, R, h, w, C]`.
    """

    def _init_detector(
        self, components: dict, image_shape, num_proposals: int, **kwargs
    ):
        parts = _Parts(**components)
        images = keras.Input(image_shape, name="images")
        proposals = keras.Input((num_proposals, 4), name="proposals")
        detections = self._detections(parts, images, proposals)
        super().__init__(
            inputs={"images": images, "proposals": proposals},
            outputs=detections,
            **kwargs,
        )
        for name, value in components.items():
            setattr(self, name, value)
        self.image_shape = tuple(image_shape)
        self.num_proposals = num_proposals
        self.bounding_box_format = (
            parts.detection_postprocessor.bounding_box_format
        )
        self.loss_names = BOX_LOSS_NAMES
        self.loss_trackers = [
            keras.metrics.Mean(name=name) for name in ("loss", *BOX_LOSS_NAMES)
        ]

    @staticmethod
    def _region_pool(parts, images, training=None):
        raise NotImplementedError

    @classmethod
    def _detections(cls, parts, images, proposals) -> dict:
        boxes = _ProposalsToXYXY(
            parts.detection_postprocessor.bounding_box_format,
            name="proposals_xyxy",
        )(proposals)
        pool = cls._region_pool(parts, images)
        class_logits, box_deltas = parts.box_head(pool(boxes))
        return parts.detection_postprocessor(class_logits, box_deltas, boxes)

    def _split_inputs(self, x) -> tuple:
        """Checks `x` = {"images": [B, H, W, C], "proposals": [B, N, 4]}
        (proposals in `bounding_box_format`, padding rows -1)."""
        if not isinstance(x, dict) or sorted(x) != sorted(INPUT_KEYS):
            received = sorted(x) if isinstance(x, dict) else type(x).__name__
            raise ValueError(
                "Invalid value for argument `x`. Expected a dict with "
                '"images" [B, H, W, C] and "proposals" [B, N, 4]. '
                f"Received: {received}."
            )
        shape = validation.check_rank(x["images"], 4, 'x["images"]')
        if tuple(shape[1:]) != self.image_shape:
            raise ValueError(
                'Invalid shape for argument `x["images"]`. Expected [B, '
                f"{', '.join(map(str, self.image_shape))}]. Received: "
                f'x["images"].shape={shape}.'
            )
        check_proposals(x["proposals"], self.num_proposals)
        return x["images"], x["proposals"]

    def call(self, inputs, training=None, mask=None):
        images, proposals = self._split_inputs(inputs)
        if not training:
            return super().call(
                {"images": images, "proposals": proposals},
                training=training,
                mask=mask,
            )
        return {"images": images, "proposals": proposals}

    @property
    def metrics(self):
        return list(self.loss_trackers)

    def compute_detection_losses(
        self, x, y, training: bool = False
    ) -> dict[str, object]:
        """`{"loss_classifier", "loss_box_reg"}` of a batch: the RoI
        sampler draws from the proposals plus the ground truth, the box
        head scores the RoIs' region features (`fast_rcnn_loss`).

        Args:
            x: dict {"images" [B, H, W, C] 0..255, "proposals" [B, N, 4]}.
            y: dict {"boxes" [B, M, 4], "classes" [B, M]} padded with -1.
            training: bool, the backbone's mode (batch norm).
        """
        images, proposals = self._split_inputs(x)
        gt_boxes, gt_classes = split_detection_targets(
            y, self.bounding_box_format
        )
        proposals = _roi_common.to_xyxy(proposals, self.bounding_box_format)
        losses, _ = box_stage_losses(
            self.roi_sampler,
            self._region_pool(self, images, training=training),
            self.box_head,
            proposals,
            gt_boxes,
            gt_classes,
            None,
        )
        return losses

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        losses = self.compute_detection_losses(x, y, training=training)
        return track_detection_losses(self, losses, y)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()


def check_proposals(proposals, num_proposals: int | None = None) -> tuple:
    """Static checks of a proposals tensor [B, N, 4] (N = `num_proposals`
    when given); returns its shape or raises ValueError naming
    `proposals`."""
    shape = validation.check_rank(proposals, 3, "proposals")
    if shape[-1] != 4 or (
        num_proposals is not None and shape[1] != num_proposals
    ):
        expected = "N" if num_proposals is None else str(num_proposals)
        raise ValueError(
            "Invalid shape for argument `proposals`. Expected [B, "
            f"{expected}, 4] boxes in the model's bounding_box_format "
            f"(padding rows four -1). Received: proposals.shape={shape}."
        )
    return shape
