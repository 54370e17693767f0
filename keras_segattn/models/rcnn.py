"""`RCNN`: R-CNN (Girshick et al., 2014), a CNN on every warped proposal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers import _roi_common
from keras_segattn.layers.roi_align import RoIAlign
from keras_segattn.models._config import ConstructorConfigMixin
from keras_segattn.models._proposal_detector import ProposalDetectorBase
from keras_segattn.models._proposal_detector import check_proposals
from keras_segattn.models.backbones import VGG_SMALL
from keras_segattn.models.detection_backbones import build_feature_backbone
from keras_segattn.models.fast_rcnn import check_proposal_detector_arguments
from keras_segattn.models.fast_rcnn import constructor_config
from keras_segattn.models.faster_rcnn import build_box_stage_components


@keras.saving.register_keras_serializable(package="keras_segattn")
class RCNN(ConstructorConfigMixin, ProposalDetectorBase):
    """R-CNN: every proposal warped out of the image and run through a CNN.

    The detector of Girshick et al. (2014) from the components of
    `FasterRCNN`: each proposal (or, in training, each RoI the
    `RoISampler` draws from the proposals plus the ground truth) is cut
    out of the image and warped to `warp_size` x `warp_size` pixels by
    `RoIAlign` on the image itself (`spatial_scale` 1, `aligned=True`,
    bilinear, `sampling_ratio` samples per output pixel and axis: the
    paper's anisotropic warp, without its 16-pixel context padding);
    the backbone (by default the small VGG cut at stride 8,
    `build_feature_backbone` at the crop size) runs on every crop, one CNN
    pass per proposal, which is the method's cost; `BoxHead` gives class
    scores and per-class box regression from the crop's features.

    Differences from the paper, stated: the per-class linear SVMs are a
    softmax over K + 1 classes trained jointly with the box regression
    (Fast R-CNN's multi-task loss, `loss_classifier` + `loss_box_reg`),
    and the network is trained end to end on the detection task instead
    of fine-tuned from ImageNet and then frozen for SVMs and regressors.
    The regression targets are the paper's (centre offsets scaled by the
    proposal size, log size ratios) with `bbox_reg_weights`.

    Inputs, outputs, training, XLA and serving: as `FastRCNN` (the
    proposals are an input, computed outside the graph).

    Args:
        num_classes: int >= 1, object classes (background excluded).
        backbone: `"vgg_small"`, a `keras.applications` name or a
            `keras.Model`; built at the crop size (`warp_size`).
        image_shape: static (H, W, C) of the input images.
        num_proposals: int >= 1, rows N of the proposals input.
        warp_size: int or pair, the size every proposal is warped to
            (the paper: 227).
        feature_layer_name, backbone_kwargs: as `FastRCNN`, for the crop
            backbone.
        bounding_box_format, sampling_ratio, box_head_units,
        box_fg_iou_threshold, box_bg_iou_threshold,
        box_batch_size_per_image, box_positive_fraction, bbox_reg_weights,
        box_score_threshold, box_nms_threshold, max_detections, seed,
        dtype: as `FasterRCNN`.

    Raises:
        ValueError: as `FastRCNN`, and for a bad `warp_size`.
        TypeError: for a `backbone` of the wrong type.

    Reference:
        - [Girshick et al., "Rich feature hierarchies for accurate object
          detection and semantic segmentation", CVPR 2014](
          https://arxiv.org/abs/1311.2524)
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str | keras.Model = VGG_SMALL,
        image_shape: Sequence[int] = (128, 128, 3),
        num_proposals: int = 300,
        warp_size: int | Sequence[int] = 32,
        feature_layer_name: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        bounding_box_format: str = "yxyx",
        sampling_ratio: int = 2,
        box_head_units: int = 256,
        box_fg_iou_threshold: float = 0.5,
        box_bg_iou_threshold: float = 0.5,
        box_batch_size_per_image: int = 64,
        box_positive_fraction: float = 0.25,
        bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
        box_score_threshold: float = 0.05,
        box_nms_threshold: float = 0.5,
        max_detections: int = 100,
        seed: int | None = None,
        dtype=None,
        **kwargs,
    ):
        warp_size = validation.standardize_size(warp_size, "warp_size")
        config = check_proposal_detector_arguments(
            {**locals(), "roi_op": "align", "roi_output_size": warp_size}
        )
        channels = config["image_shape"][-1]
        backbone_model = build_feature_backbone(
            config["backbone"],
            (*warp_size, channels),
            feature_layer_name=config["feature_layer_name"],
            backbone_kwargs=config["backbone_kwargs"],
            dtype=dtype,
        )
        components = build_box_stage_components(config, 1.0)
        components.update(
            backbone=backbone_model,
            roi_pooler=RoIAlign(
                warp_size,
                spatial_scale=1.0,
                sampling_ratio=config["sampling_ratio"],
                aligned=True,
                dtype=dtype,
                name="warp",
            ),
        )
        self._init_detector(
            components, config["image_shape"], config["num_proposals"], **kwargs
        )
        for key in ("roi_op", "roi_output_size"):
            config.pop(key)
        self._arguments = config
        self.num_classes = config["num_classes"]

    @staticmethod
    def _region_pool(parts, images, training=None):
        def pool(rois):
            crops = parts.roi_pooler(images, rois)
            num_rois = crops.shape[1]
            flat = ops.reshape(crops, (-1, *crops.shape[2:]))
            features = parts.backbone(flat, training=training)
            return ops.reshape(features, (-1, num_rois, *features.shape[1:]))

        return pool

    def crop_proposals(self, images, proposals):
        """The warped crops the CNN sees: float images [B, H, W, C] and
        proposals [B, N, 4] in `bounding_box_format` to [B, N, warp_h,
        warp_w, C] (RoIAlign of the image; padding rows give zeros)."""
        check_proposals(proposals)
        boxes = _roi_common.to_xyxy(proposals, self.bounding_box_format)
        return self.roi_pooler(ops.cast(images, "float32"), boxes)

    def _constructor_config(self) -> dict:
        return constructor_config(self, self._arguments)
