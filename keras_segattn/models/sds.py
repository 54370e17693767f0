"""SDS-style instance refinement (Hariharan et al., 2014 and 2015), with
an optional MNC-style class cascade (Dai et al., 2016)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers.hypercolumn import Hypercolumn
from keras_segattn.layers.hypercolumn_mask_head import HypercolumnMaskHead
from keras_segattn.layers.mask_pooling import MaskPooling
from keras_segattn.losses.detection import binary_mask_loss
from keras_segattn.losses.distribution import sum_over_replicas
from keras_segattn.models._detection_common import check_backbone_argument
from keras_segattn.models.backbones import VGG_SMALL
from keras_segattn.models.backbones import check_image_shape
from keras_segattn.models.backbones import get_backbone
from keras_segattn.models.hypercolumn import check_layer_names
from keras_segattn.models.two_stage_detector import track_detection_losses
from keras_segattn.ops._boxes import check_boxes
from keras_segattn.ops._boxes import is_padding_box
from keras_segattn.ops.paste_masks import paste_masks
from keras_segattn.ops.roi_align import roi_align

# The image itself (stride 1: the strokes' exact edges) and the pools of
# `vgg_small` at strides 2 to 16.
DEFAULT_SDS_LAYER_NAMES = (
    "preprocess_rescaling",
    "block1_pool",
    "block2_pool",
    "block3_pool",
    "block4_pool",
)
MASK_LOSS_NAME = "loss_mask"
CLASS_LOSS_NAME = "loss_classifier"


@keras.saving.register_keras_serializable(package="keras_segattn")
class SDSRefiner(keras.Model):
    """Predicts a foreground mask for every given box from hypercolumns.

    The region refinement of SDS (Hariharan et al., 2014) in the form of
    the hypercolumn paper (Hariharan et al., 2015): for each box (from a
    detector or the ground truth), the features of several backbone
    layers (`layer_names`, any resolution) are pooled inside the box with
    RoIAlign onto a `pool_size` grid and concatenated (`Hypercolumn`,
    layer `hypercolumn`); `HypercolumnMaskHead` (layer `mask_head`) turns
    them into figure-ground logits, optionally through a coarse grid of
    location-specific classifiers (`grid_size`), upsampled to
    `mask_size`. The masks are class-agnostic and box-relative, as Mask
    R-CNN's: paste `sigmoid(mask_logits)` into the image with
    `keras_segattn.ops.paste_masks` (or `SDSRefiner.paste_masks`).

    With `num_classes`, the MNC cascade (Dai et al., 2016) is added: the
    box's hypercolumns are averaged under its predicted mask
    (`MaskPooling`, layer `mask_pooling`) and over the whole box (layer
    `box_pooling`), and two dense layers (`cascade_hidden`,
    `class_logits`) re-score the box's class from both, so the class is
    read from the instance's figure. The classifier's gradient also flows
    into the masks.

    Inputs are `{"images": [B, H, W, C] float 0..255, "boxes": [B, N, 4]
    (x1, y1, x2, y2) in image pixels}`, N static; a box of four -1 is
    padding (its mask logits are -1e4, its probabilities 0). Outputs are
    `{"mask_logits": [B, N, m, m']}` plus `"class_logits"` [B, N,
    num_classes] with the cascade, float32.

    Training: `fit(x={"images", "boxes"}, y={"masks": [B, N, H, W]})`
    with one image-sized binary mask per box (the instance's mask,
    whatever the box; ground-truth boxes or jittered copies of them),
    plus `y["classes"]` [B, N] int (0-based, -1 padding) with the
    cascade. `compute_loss` returns the sum of `loss_mask`, the per-pixel
    binary cross-entropy against each instance mask cropped to its box
    with RoIAlign (`losses.binary_mask_loss`: averaged over the pixels of
    the valid boxes of the global batch, as `mask_rcnn_loss`), and with
    the cascade `loss_classifier`, the cross-entropy averaged over the
    valid boxes of the global batch (as `fast_rcnn_loss`). Padding boxes
    are ignored; a box with a NaN or infinite coordinate makes the losses
    NaN. Each loss is reported as a metric.

    Args:
        image_shape: (H, W, C), static.
        backbone: `"vgg_small"`, a `keras.applications` name or a
            functional `keras.Model` (see `get_backbone`).
        layer_names: names of backbone layers whose outputs form the
            hypercolumns (`keras.Input` layers allowed: the image itself).
        backbone_kwargs: extra backbone constructor arguments.
        pool_size: int or (h, w): the RoIAlign grid per box.
        mask_size: None, int or (m, m'): size of the mask logits (None:
            `pool_size`).
        grid_size: int > 0: side of the grid of classifiers (1: one).
        head_filters: int > 0: width of the head's 3x3 convolutions.
        head_convs: int >= 0: number of them.
        sampling_ratio: int > 0: RoIAlign samples per bin and axis (also
            for the mask targets).
        num_classes: None (masks only) or int >= 1: add the MNC cascade.
        cascade_units: int > 0: width of `cascade_hidden`.
        dtype: dtype or dtype policy of every layer built here.
        **kwargs: `keras.Model` arguments (`name`, ...).

    Raises:
        ValueError: for a bad or dynamic `image_shape`, names in
            `layer_names` missing from the backbone, and other invalid
            arguments; in `fit`/`evaluate` for inputs or targets of the
            wrong structure or shape.
        TypeError: for a `backbone` that is neither a name nor a model,
            or `x`/`y` that are not dicts.

    Reference:
        - [Hariharan, Arbeláez, Girshick and Malik, "Simultaneous Detection
          and Segmentation", ECCV 2014](https://arxiv.org/abs/1407.1808)
        - [Hariharan, Arbeláez, Girshick and Malik, "Hypercolumns for
          Object Segmentation and Fine-grained Localization", CVPR 2015](
          https://arxiv.org/abs/1411.5752)
        - [Dai, He and Sun, "Instance-aware Semantic Segmentation via
          Multi-task Network Cascades", CVPR 2016](
          https://arxiv.org/abs/1512.04412)
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (128, 128, 3),
        backbone: str | keras.Model = VGG_SMALL,
        layer_names: Sequence[str] = DEFAULT_SDS_LAYER_NAMES,
        backbone_kwargs: dict[str, Any] | None = None,
        pool_size: int | Sequence[int] = 32,
        mask_size: int | Sequence[int] | None = None,
        grid_size: int = 1,
        head_filters: int = 32,
        head_convs: int = 2,
        sampling_ratio: int = 2,
        num_classes: int | None = None,
        cascade_units: int = 128,
        dtype=None,
        **kwargs,
    ):
        image_shape = check_image_shape(image_shape)
        if None in image_shape:
            raise ValueError(
                "Invalid value for argument `image_shape`. Expected a static "
                "(height, width, channels): box coordinates are scaled to "
                f"static levels. Received: image_shape={image_shape!r}."
            )
        backbone = check_backbone_argument(backbone)
        if num_classes is not None:
            num_classes = validation.check_num_classes(num_classes)
        cascade_units = validation.check_positive_int(
            cascade_units, "cascade_units"
        )
        pool_size = validation.standardize_size(pool_size, "pool_size")
        sampling_ratio = validation.check_sampling_ratio(sampling_ratio)
        backbone_model, _ = get_backbone(
            backbone,
            image_shape,
            skip_layer_names=(),
            backbone_kwargs=backbone_kwargs,
            dtype=dtype,
        )
        layer_names = check_layer_names(backbone_model, layer_names)
        features_model = keras.Model(
            backbone_model.inputs[0],
            [backbone_model.get_layer(n).output for n in layer_names],
            name="backbone_features",
        )
        hypercolumn = Hypercolumn(
            output_size=image_shape[:2],
            pool_size=pool_size,
            sampling_ratio=sampling_ratio,
            aligned=True,
            name="hypercolumn",
            dtype=dtype,
        )
        mask_head = HypercolumnMaskHead(
            filters=head_filters,
            num_convs=head_convs,
            grid_size=grid_size,
            mask_size=mask_size,
            name="mask_head",
            dtype=dtype,
        )

        # === Functional Model ===
        images = keras.Input(image_shape, name="images")
        boxes = keras.Input((None, 4), name="boxes")
        features = features_model(images)
        features = features if isinstance(features, list) else [features]
        columns = hypercolumn(list(features), boxes=boxes)
        mask_logits = mask_head(columns, boxes=boxes)
        outputs = {
            "mask_logits": keras.layers.Activation(
                "linear", dtype="float32", name="mask_logits"
            )(mask_logits)
        }
        if num_classes is not None:
            probs = keras.layers.Activation(
                "sigmoid", name="mask_sigmoid", dtype=dtype
            )(mask_logits)
            pooled = keras.layers.Concatenate(name="cascade_features")(
                [
                    MaskPooling(name="mask_pooling", dtype=dtype)(
                        columns, probs
                    ),
                    MaskPooling(name="box_pooling", dtype=dtype)(columns),
                ]
            )
            hidden = keras.layers.Dense(
                cascade_units,
                activation="relu",
                name="cascade_hidden",
                dtype=dtype,
            )(pooled)
            logits = keras.layers.Dense(
                num_classes, name="cascade_logits", dtype=dtype
            )(hidden)
            outputs["class_logits"] = keras.layers.Activation(
                "linear", dtype="float32", name="class_logits"
            )(logits)
        super().__init__(
            inputs={"images": images, "boxes": boxes},
            outputs=outputs,
            **kwargs,
        )

        # === Config ===
        self.image_shape = image_shape
        self.backbone = backbone
        self.layer_names = layer_names
        self.backbone_kwargs = backbone_kwargs
        self.pool_size = pool_size
        self.mask_size = mask_head.mask_size
        self.grid_size = mask_head.grid_size
        self.head_filters = mask_head.filters
        self.head_convs = mask_head.num_convs
        self.sampling_ratio = sampling_ratio
        self.num_classes = num_classes
        self.cascade_units = cascade_units
        self.loss_names = (MASK_LOSS_NAME,) + (
            (CLASS_LOSS_NAME,) if num_classes is not None else ()
        )
        self.loss_trackers = [
            keras.metrics.Mean(name=name) for name in ("loss", *self.loss_names)
        ]

    def get_config(self) -> dict:
        backbone = self.backbone
        if isinstance(backbone, keras.Model):
            backbone = keras.saving.serialize_keras_object(backbone)
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "image_shape": self.image_shape,
            "backbone": backbone,
            "layer_names": self.layer_names,
            "backbone_kwargs": self.backbone_kwargs,
            "pool_size": self.pool_size,
            "mask_size": self.mask_size,
            "grid_size": self.grid_size,
            "head_filters": self.head_filters,
            "head_convs": self.head_convs,
            "sampling_ratio": self.sampling_ratio,
            "num_classes": self.num_classes,
            "cascade_units": self.cascade_units,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # === Training ===

    @property
    def metrics(self):
        return list(self.loss_trackers)

    def _split_inputs(self, x) -> tuple:
        if not isinstance(x, dict) or not {"images", "boxes"} <= set(x):
            raise TypeError(
                "Invalid value for argument `x`. Expected a dict with "
                '"images" [B, H, W, C] and "boxes" [B, N, 4]. Received: '
                f"{type(x).__name__}"
                + (f" with keys {sorted(x)}" if isinstance(x, dict) else "")
                + "."
            )
        validation.check_rank(x["images"], 4, 'x["images"]')
        check_boxes(x["boxes"], 'x["boxes"]')
        return x["images"], x["boxes"]

    def mask_targets(self, boxes, masks):
        """Each instance mask cropped to its box on the mask grid: float32
        [B, N, m, m'] (RoIAlign, `aligned=True`, the grid of the mask
        logits; the geometry `paste_masks` inverts), zeros for padding.

        Args:
            boxes: float tensor [B, N, 4] (x1, y1, x2, y2), -1 padding.
            masks: tensor [B, N, H, W], one image-sized mask per box.
        """
        num_boxes = check_boxes(boxes, "boxes")[1]
        shape = validation.check_rank(masks, 4, 'y["masks"]')
        expected = (num_boxes, *self.image_shape[:2])
        if tuple(shape[1:]) != expected:
            raise ValueError(
                'Invalid shape for argument `y["masks"]`. Expected [B, N, H, '
                f"W] = [B, {expected[0]}, {expected[1]}, {expected[2]}] (one "
                "image-sized mask per box). Received: "
                f'y["masks"].shape={shape}.'
            )
        size = self.mask_size or self.pool_size
        flat = ops.reshape(ops.cast(masks, "float32"), (-1, *expected[1:], 1))
        flat_boxes = ops.reshape(ops.cast(boxes, "float32"), (-1, 1, 4))
        targets = roi_align(
            flat,
            flat_boxes,
            size,
            spatial_scale=1.0,
            sampling_ratio=self.sampling_ratio,
            aligned=True,
        )
        return ops.reshape(targets, (-1, num_boxes, *size))

    def compute_sds_losses(self, x, y, y_pred) -> dict:
        """The losses of a batch (float32 scalars by name, see the class
        docstring) from the model's outputs `y_pred`."""
        _, boxes = self._split_inputs(x)
        if not isinstance(y, dict) or "masks" not in y:
            raise TypeError(
                "Invalid value for argument `y`. Expected a dict with "
                '"masks" [B, N, H, W]'
                + (' and "classes" [B, N]' if self.num_classes else "")
                + f". Received: {type(y).__name__}"
                + (f" with keys {sorted(y)}" if isinstance(y, dict) else "")
                + "."
            )
        valid = ops.logical_not(is_padding_box(boxes))
        losses = {
            MASK_LOSS_NAME: binary_mask_loss(
                y_pred["mask_logits"],
                valid,
                self.mask_targets(boxes, y["masks"]),
            )
        }
        if self.num_classes is not None:
            if "classes" not in y:
                raise ValueError(
                    'Invalid value for argument `y`. Expected a "classes" '
                    "key [B, N] with num_classes="
                    f"{self.num_classes}. Received: keys {sorted(y)}."
                )
            classes = ops.cast(y["classes"], "int32")
            validation.check_rank(classes, 2, 'y["classes"]')
            weight = ops.cast(ops.logical_and(valid, classes >= 0), "float32")
            loss = ops.sparse_categorical_crossentropy(
                ops.maximum(classes, 0),
                ops.cast(y_pred["class_logits"], "float32"),
                from_logits=True,
            )
            count = ops.maximum(sum_over_replicas(ops.sum(weight)), 1.0)
            losses[CLASS_LOSS_NAME] = ops.sum(loss * weight) / count
        return losses

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        losses = self.compute_sds_losses(x, y, y_pred)
        # Every non-padding box is in the mask loss: one with a NaN or
        # infinite coordinate makes every loss NaN instead of pooling
        # zeros (`non_finite_target_loss`), so TerminateOnNaN stops.
        boxes = x["boxes"]
        every_box = {"boxes": boxes, "classes": ops.zeros_like(boxes[..., 0])}
        return track_detection_losses(self, losses, every_box)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()

    def paste_masks(self, mask_logits, boxes):
        """Mask probabilities pasted into the image: float32 [B, N, H, W]
        (`sigmoid` then `keras_segattn.ops.paste_masks`; padding boxes
        paste zeros)."""
        return paste_masks(
            ops.sigmoid(ops.cast(mask_logits, "float32")),
            boxes,
            self.image_shape[:2],
        )
