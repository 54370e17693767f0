"""`FastRCNN`: Fast R-CNN (Girshick, 2015) on given region proposals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from keras_segattn import validation
from keras_segattn.models._config import ConstructorConfigMixin
from keras_segattn.models._proposal_detector import ProposalDetectorBase
from keras_segattn.models.backbones import VGG_SMALL
from keras_segattn.models.detection_backbones import build_feature_backbone
from keras_segattn.models.faster_rcnn import build_box_stage_components
from keras_segattn.models.faster_rcnn import check_box_stage_arguments
from keras_segattn.models.faster_rcnn import feature_scale_and_channels


def check_proposal_detector_arguments(arguments: dict) -> dict:
    """The constructor arguments of `FastRCNN` / `RCNN` checked and
    normalised (without `self`, `kwargs`)."""
    config = {
        key: value
        for key, value in arguments.items()
        if key not in ("self", "kwargs", "__class__")
    }
    config = check_box_stage_arguments(config)
    config["num_proposals"] = validation.check_positive_int(
        config["num_proposals"], "num_proposals"
    )
    return config


def constructor_config(model, config: dict) -> dict:
    """`get_config`'s constructor arguments of a proposal detector (a user
    backbone serialized, dtype from the policy)."""
    config = {k: v for k, v in config.items() if k != "dtype"}
    if not isinstance(config["backbone"], str):
        config["backbone"] = keras.saving.serialize_keras_object(model.backbone)
        config["feature_layer_name"] = None
    config["backbone_kwargs"] = config["backbone_kwargs"] or None
    return config


@keras.saving.register_keras_serializable(package="keras_segattn")
class FastRCNN(ConstructorConfigMixin, ProposalDetectorBase):
    """Fast R-CNN: one shared feature map, RoI pooling of given proposals.

    The detector of Girshick (2015) built from the components of
    `FasterRCNN` without its region proposal network: the backbone (by
    default the small VGG cut at stride 8, `build_feature_backbone`) runs
    once per image; `RoIPool` (`roi_op="pool"`, the paper's; or
    `RoIAlign`) pools every proposal to `roi_output_size`; `BoxHead` (two
    fully connected layers, softmax over K + 1 classes, class-specific
    deltas) scores it; `DetectionPostprocessor` decodes, applies per-class
    NMS and keeps `max_detections`.

    The proposals are an input (e.g. selective search,
    `keras_segattn.data.selective_search_proposals`): the model takes
    `{"images": [B, H, W, C] 0..255, "proposals": [B, num_proposals, 4]}`
    with proposals in `bounding_box_format`, padding rows four -1. There
    is no RPN and no RPN loss. `fit(x=that dict, y={"boxes": [B, M, 4],
    "classes": [B, M]})` sums torchvision's two second-stage losses,
    `loss_classifier` and `loss_box_reg` (`RoISampler`: the proposals plus
    the ground-truth boxes, IoU >= `box_fg_iou_threshold` foreground,
    `box_batch_size_per_image` RoIs with `box_positive_fraction`
    positives). The paper's multi-task loss is the same (its background
    range [0.1, 0.5) aside: here every RoI under `box_bg_iou_threshold`
    can be background). Every step has static shapes, so
    `compile(jit_compile=True)` compiles it with XLA.

    Serving: `keras_segattn.export.export_proposal_detector_for_serving`
    exports a graph that takes the images and their proposals; selective
    search is OpenCV C++ on the CPU with a data-dependent box count and
    has no TF kernel, so it runs outside the graph (as in the paper,
    where proposals are precomputed).

    Args:
        num_classes: int >= 1, object classes (background excluded).
        backbone: `"vgg_small"`, a `keras.applications` name or a
            `keras.Model` mapping 0..255 images to features.
        image_shape: static (H, W, C) of the input images.
        num_proposals: int >= 1, rows N of the proposals input.
        feature_layer_name: backbone layer giving the features (None: see
            `build_feature_backbone`).
        backbone_kwargs: extra arguments of the backbone constructor.
        roi_op: `"pool"` (RoIPool, the paper's) or `"align"`.
        bounding_box_format: absolute format of the proposals, of
            `y["boxes"]` and of `detection_boxes` ("yxyx").
        roi_output_size, sampling_ratio, box_head_units,
        box_fg_iou_threshold, box_bg_iou_threshold,
        box_batch_size_per_image, box_positive_fraction, bbox_reg_weights,
        box_score_threshold, box_nms_threshold, max_detections, seed,
        dtype: as `FasterRCNN`.

    Outputs (`call`/`predict`): the dict of `FasterRCNN` without masks,
    `detection_boxes` [B, D, 4], `detection_scores` [B, D],
    `detection_classes` [B, D], `num_detections` [B].

    Raises:
        ValueError: for invalid arguments (named in the message), inputs
            that are not {"images", "proposals" [B, num_proposals, 4]},
            and targets that are not {"boxes", "classes"}.
        TypeError: for a `backbone` of the wrong type.

    Reference:
        - [Girshick, "Fast R-CNN", ICCV 2015](
          https://arxiv.org/abs/1504.08083)
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str | keras.Model = VGG_SMALL,
        image_shape: Sequence[int] = (128, 128, 3),
        num_proposals: int = 300,
        feature_layer_name: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        roi_op: str = "pool",
        bounding_box_format: str = "yxyx",
        roi_output_size: int | Sequence[int] = 7,
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
        config = check_proposal_detector_arguments(locals())
        backbone_model = build_feature_backbone(
            config["backbone"],
            config["image_shape"],
            feature_layer_name=config["feature_layer_name"],
            backbone_kwargs=config["backbone_kwargs"],
            dtype=dtype,
        )
        scale, _ = feature_scale_and_channels(
            backbone_model, config["image_shape"]
        )
        components = {
            "backbone": backbone_model,
            **build_box_stage_components(config, scale),
        }
        self._init_detector(
            components, config["image_shape"], config["num_proposals"], **kwargs
        )
        self._arguments = config
        self.num_classes = config["num_classes"]
        self.spatial_scale = scale

    @staticmethod
    def _region_pool(parts, images, training=None):
        features = parts.backbone(images, training=training)
        return lambda rois: parts.roi_pooler(features, rois, training=training)

    def _constructor_config(self) -> dict:
        return constructor_config(self, self._arguments)
