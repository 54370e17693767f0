"""`YOLO`: the single-stage grid detector of YOLO v1 (Redmon et al., 2016).

    images -> backbone -> features -> YOLOHead -> grid [B, S, S, B*5 + C]
    inference: grid -> YOLOPostprocessor -> TF OD API detections
    training:  grid, ground truth -> yolo_v1_loss

Boxes: `fit` targets and `detection_boxes` are in `bounding_box_format`
("yxyx", the TF OD API's ymin, xmin, ymax, xmax, pixels); inside, the loss
and the decoder use (x1, y1, x2, y2) pixels with four -1 as padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers import _roi_common
from keras_segattn.layers.yolo_head import YOLOHead
from keras_segattn.layers.yolo_postprocessor import YOLOPostprocessor
from keras_segattn.losses.distribution import scale_loss_for_distribution
from keras_segattn.losses.distribution import unscale_loss_for_distribution
from keras_segattn.losses.yolo import YOLO_LOSS_NAMES
from keras_segattn.losses.yolo import yolo_v1_loss
from keras_segattn.models._config import ConstructorConfigMixin
from keras_segattn.models._detection_common import check_backbone_argument
from keras_segattn.models._detection_common import split_detection_targets
from keras_segattn.models.backbones import VGG_SMALL
from keras_segattn.models.backbones import check_image_shape
from keras_segattn.models.detection_backbones import build_feature_backbone
from keras_segattn.validation import check_fraction
from keras_segattn.validation import check_non_negative_float


def _vgg_small_feature_layer(image_shape, grid_size) -> str | None:
    """The deepest `vgg_small` pool whose map is a multiple of the grid."""
    for level in range(5, 0, -1):
        stride = 2**level
        sizes = [size / stride for size in image_shape[:2]]
        if all(
            s == int(s) and int(s) % cells == 0
            for s, cells in zip(sizes, grid_size, strict=True)
        ):
            return f"block{level}_pool"
    return None


@keras.saving.register_keras_serializable(package="keras_segattn")
class YOLO(ConstructorConfigMixin, keras.Model):
    """YOLO v1: one network predicting an S x S grid of boxes and classes.

    The detector of Redmon et al. (2016): the image is divided into an
    S x S grid; each cell predicts `boxes_per_cell` boxes with
    confidences and one set of C conditional class probabilities
    (`YOLOHead` on the backbone's features: by default this package's
    small VGG cut at the deepest pool whose map is a multiple of the
    grid, e.g. stride 16 for 128 x 128 images and S = 8). Inference
    multiplies confidences and class probabilities into class-specific
    scores and runs class-aware NMS with static shapes
    (`YOLOPostprocessor`).

    The functional graph (`model(images)`, `predict`, export) returns the
    TF OD API dict; `model(images, training=True)` returns the grid and
    `compute_loss` applies `yolo_v1_loss` to it (Keras's own `train_step`,
    so `fit(jit_compile=True)` compiles the whole step with XLA and
    `tf.distribute` scales the loss as `keras.losses` do). `fit(x=images,
    y={"boxes": [B, M, 4], "classes": [B, M]})`, rows padded with -1 (the
    targets of `FasterRCNN`; extra keys such as "masks" are ignored). The
    loss terms (`loss_xy`, `loss_wh`, `loss_object`, `loss_noobject`,
    `loss_class`) are reported as metrics and `loss` is their sum.

    Args:
        num_classes: int >= 1; class ids 0..num_classes - 1.
        image_shape: static (H, W, C) of the input images (0..255).
        grid_size: int or (S, S'), dividing H and W (None: H / 16 and
            W / 16).
        boxes_per_cell: int >= 1 (B; 2 in the paper).
        backbone: `"vgg_small"`, a `keras.applications` name or a
            `keras.Model` mapping 0..255 images to features whose size is
            a multiple of the grid.
        feature_layer_name: backbone layer giving the features (None: see
            above for `"vgg_small"`, `build_feature_backbone` otherwise).
        backbone_kwargs: extra arguments of the backbone constructor.
        head_filters: int > 0, width of the head's 3x3 convolutions.
        head_convs: int >= 0, the head's 3x3 Conv-BN-LeakyReLU units.
        lambda_coord: float >= 0, weight of the coordinate terms (5).
        lambda_noobj: float >= 0, weight of the no-object confidences (0.5).
        score_threshold, nms_threshold, max_detections, pre_nms_top_n:
            inference post-processing (`YOLOPostprocessor`).
        bounding_box_format: absolute format of `y["boxes"]` and
            `detection_boxes`.
        dtype: dtype policy of the layers; the grid, box math and outputs
            are float32.

    Raises:
        ValueError: for invalid arguments (named in the message), e.g. a
            grid size that does not divide the image, `boxes_per_cell < 1`
            or a negative lambda; in `fit` for targets that are not
            {"boxes": [B, M, 4], "classes": [B, M]}.
        TypeError: for a `backbone` of the wrong type or targets that are
            not a dict.

    Reference:
        - [Redmon et al., "You Only Look Once: Unified, Real-Time Object
          Detection", CVPR 2016](https://arxiv.org/abs/1506.02640)
    """

    def __init__(
        self,
        num_classes: int,
        image_shape: Sequence[int] = (128, 128, 3),
        grid_size: int | Sequence[int] | None = None,
        boxes_per_cell: int = 2,
        backbone: str | keras.Model = VGG_SMALL,
        feature_layer_name: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        head_filters: int = 128,
        head_convs: int = 1,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
        pre_nms_top_n: int | None = None,
        bounding_box_format: str = "yxyx",
        dtype=None,
        **kwargs,
    ):
        config = _check_arguments(locals())
        image_shape = config["image_shape"]
        grid_size = config["grid_size"]
        backbone = config["backbone"]
        layer_name = config["feature_layer_name"]
        if layer_name is None and backbone == VGG_SMALL:
            layer_name = _vgg_small_feature_layer(image_shape, grid_size)

        # === Layers ===
        backbone_model = build_feature_backbone(
            backbone,
            image_shape,
            feature_layer_name=layer_name,
            backbone_kwargs=config["backbone_kwargs"] or None,
            dtype=dtype,
        )
        head = YOLOHead(
            grid_size,
            config["boxes_per_cell"],
            config["num_classes"],
            filters=config["head_filters"],
            num_convs=config["head_convs"],
            dtype=dtype,
            name="yolo_head",
        )
        postprocessor = YOLOPostprocessor(
            image_shape[:2],
            config["boxes_per_cell"],
            score_threshold=config["score_threshold"],
            nms_threshold=config["nms_threshold"],
            max_detections=config["max_detections"],
            pre_nms_top_n=config["pre_nms_top_n"],
            bounding_box_format=config["bounding_box_format"],
            name="yolo_postprocessor",
        )

        # === Functional Model ===
        images = keras.Input(image_shape, name="images")
        features = backbone_model(images)
        head._pool_size(features.shape)  # the grid must divide the features
        detections = postprocessor(head(features))
        super().__init__(inputs=images, outputs=detections, **kwargs)

        # === Config ===
        self._arguments = config
        self.backbone = backbone_model
        self.yolo_head = head
        self.postprocessor = postprocessor
        self.num_classes = config["num_classes"]
        self.image_shape = image_shape
        self.grid_size = grid_size
        self.boxes_per_cell = config["boxes_per_cell"]
        self.lambda_coord = config["lambda_coord"]
        self.lambda_noobj = config["lambda_noobj"]
        self.bounding_box_format = config["bounding_box_format"]
        self.loss_names = YOLO_LOSS_NAMES
        self.loss_trackers = [
            keras.metrics.Mean(name=name) for name in ("loss", *self.loss_names)
        ]

    def _constructor_config(self) -> dict:
        config = dict(self._arguments)
        config.pop("dtype")
        if not isinstance(config["backbone"], str):
            config["backbone"] = keras.saving.serialize_keras_object(
                self.backbone
            )
            config["feature_layer_name"] = None
        config["backbone_kwargs"] = config["backbone_kwargs"] or None
        return config

    # === Training ===

    def grid(self, images, training=None):
        """images [B, H, W, C] (0..255) -> the grid
        [B, S, S', boxes_per_cell * 5 + C] (float32)."""
        features = self.backbone(images, training=training)
        return self.yolo_head(features, training=training)

    def call(self, inputs, training=None, mask=None):
        if not training:
            return super().call(inputs, training=training, mask=mask)
        return self.grid(self._images(inputs), training=True)

    @property
    def metrics(self):
        return list(self.loss_trackers)

    def _images(self, x):
        if isinstance(x, dict):
            x = x["images"]
        validation.check_rank(x, 4, "x")
        return x

    def compute_yolo_losses(self, images, y, training: bool = False, grid=None):
        """The loss terms of a batch: a dict of float32 scalars named
        `YOLO_LOSS_NAMES` (this replica's share of the global batch mean
        under `tf.distribute`, see `yolo_v1_loss`)."""
        gt_boxes, gt_classes = self._split_targets(y)
        if grid is None:
            grid = self.grid(images, training=training)
        return yolo_v1_loss(
            grid,
            gt_boxes,
            gt_classes,
            self.image_shape[:2],
            self.boxes_per_cell,
            lambda_coord=self.lambda_coord,
            lambda_noobj=self.lambda_noobj,
        )

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        grid = None if isinstance(y_pred, dict) or y_pred is None else y_pred
        losses = self.compute_yolo_losses(
            self._images(x), y, training=training, grid=grid
        )
        total = sum(losses.values())
        self.loss_trackers[0].update_state(unscale_loss_for_distribution(total))
        for tracker, name in zip(
            self.loss_trackers[1:], self.loss_names, strict=True
        ):
            tracker.update_state(unscale_loss_for_distribution(losses[name]))
        if self.losses:
            total = total + scale_loss_for_distribution(ops.sum(self.losses))
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()

    def _split_targets(self, y) -> tuple:
        """Validates `y`; returns gt boxes (x1, y1, x2, y2, padding four
        -1) float32 [B, M, 4] and classes int32 [B, M] (-1 padding)."""
        return split_detection_targets(y, self.bounding_box_format)


def _check_arguments(arguments: dict) -> dict:
    """The constructor's arguments checked and normalised (errors name
    the argument), without `self`, `kwargs` and `__class__`."""
    config = {
        key: value
        for key, value in arguments.items()
        if key not in ("self", "kwargs", "__class__")
    }
    config["num_classes"] = validation.check_num_classes(config["num_classes"])
    image_shape = check_image_shape(config["image_shape"])
    if None in image_shape:
        raise ValueError(
            "Invalid value for argument `image_shape`. Expected a static "
            "(height, width, channels): the grid is fixed. "
            f"Received: image_shape={image_shape!r}."
        )
    config["image_shape"] = tuple(image_shape)
    grid_size = config["grid_size"]
    if grid_size is None:
        grid_size = tuple(max(1, math.ceil(s / 16)) for s in image_shape[:2])
    grid_size = validation.standardize_size(grid_size, "grid_size")
    for size, cells, axis in zip(
        image_shape[:2], grid_size, ("height", "width"), strict=True
    ):
        if size % cells:
            raise ValueError(
                "Invalid value for argument `grid_size`. Expected it to "
                f"divide the image {axis} {size} (image_shape="
                f"{image_shape}), so that every cell covers the same "
                f"pixels. Received: grid_size={config['grid_size']!r}."
            )
    config["grid_size"] = grid_size
    config["boxes_per_cell"] = validation.check_positive_int(
        config["boxes_per_cell"], "boxes_per_cell"
    )
    config["head_filters"] = validation.check_positive_int(
        config["head_filters"], "head_filters"
    )
    config["head_convs"] = validation.check_non_negative_int(
        config["head_convs"], "head_convs"
    )
    for name in ("lambda_coord", "lambda_noobj"):
        config[name] = check_non_negative_float(config[name], name)
    for name in ("score_threshold", "nms_threshold"):
        config[name] = check_fraction(config[name], name)
    config["max_detections"] = validation.check_positive_int(
        config["max_detections"], "max_detections"
    )
    if config["pre_nms_top_n"] is not None:
        config["pre_nms_top_n"] = validation.check_positive_int(
            config["pre_nms_top_n"], "pre_nms_top_n"
        )
    config["bounding_box_format"] = _roi_common.check_bounding_box_format(
        config["bounding_box_format"]
    )
    config["backbone"] = check_backbone_argument(config["backbone"])
    config["backbone_kwargs"] = dict(config["backbone_kwargs"] or {})
    return config
