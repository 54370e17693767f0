"""Faster R-CNN (Ren et al., 2015) with a static-shape, XLA-compilable
training step.

Box convention: inside the model every box is (x1, y1, x2, y2) in absolute
input-image pixels (torchvision's and the RoI ops' convention), and a box
whose four coordinates are -1 is padding. Boxes cross that boundary at the
edges only: the ground-truth `y["boxes"]` given to `fit`/`evaluate` are
converted from `bounding_box_format` when the losses are computed, and
the `detection_boxes` output is converted to `bounding_box_format` by
`DetectionPostprocessor` (the mask branch pools those output boxes with
a RoIAlign told their format). The default `"yxyx"` is the TF Object
Detection API's (ymin, xmin, ymax, xmax), in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from keras_segattn import validation
from keras_segattn.layers import _roi_common
from keras_segattn.layers.detection_postprocessor import DetectionPostprocessor
from keras_segattn.layers.feature_pyramid import FeaturePyramid
from keras_segattn.layers.mask_postprocessor import MaskPostprocessor
from keras_segattn.layers.multi_scale_roi_align import MultiScaleRoIAlign
from keras_segattn.layers.proposal_generator import ProposalGenerator
from keras_segattn.layers.roi_align import RoIAlign
from keras_segattn.layers.roi_pool import RoIPool
from keras_segattn.models._config import ConstructorConfigMixin
from keras_segattn.models.backbones import DEFAULT_SKIP_LAYER_NAMES
from keras_segattn.models.backbones import VGG_SMALL
from keras_segattn.models.backbones import check_image_shape
from keras_segattn.models.backbones import get_backbone
from keras_segattn.ops._boxes import check_fraction
from keras_segattn.ops._boxes import is_padding_box
from keras_segattn.ops.anchors import num_anchors_per_location
from keras_segattn.ops.box_coding import check_box_coder_weights
from keras_segattn.ops.box_coding import encode_boxes
from keras_segattn.ops.match_boxes import match_boxes
from keras_segattn.ops.roi_align import roi_align
from keras_segattn.ops.sample_balanced import sample_balanced

ROI_OPS = ("align", "pool")
# The stride-8 pool of "vgg_small": small objects on CPU-sized images.
DEFAULT_FEATURE_LAYER_NAMES = {
    **{name: skips[-1] for name, skips in DEFAULT_SKIP_LAYER_NAMES.items()},
    VGG_SMALL: "block3_pool",
}
# FPN inputs C2-C5 of "vgg_small" (strides 4, 8, 16, 32); a known
# application gives C3-C5: its stride-8 and stride-16 skip layers of
# `DEFAULT_SKIP_LAYER_NAMES` and its stride-32 output.
VGG_SMALL_FPN_LAYER_NAMES = (
    "block2_pool",
    "block3_pool",
    "block4_pool",
    "block5_pool",
)
# Anchor size of FPN level k (stride 2**k): 4 x stride, 16 px at P2 (the
# CPU-sized images here; torchvision uses 8 x stride, 32 px at P2).
_FPN_ANCHOR_SIZE_PER_STRIDE = 4.0
LOSS_NAMES = (
    "loss_objectness",
    "loss_rpn_box_reg",
    "loss_classifier",
    "loss_box_reg",
)
MASK_LOSS_NAME = "loss_mask"
# torchvision's smooth L1 `beta` for both box losses.
_SMOOTH_L1_BETA = 1.0 / 9.0


def _smooth_l1(x, beta: float = _SMOOTH_L1_BETA):
    """torchvision's `F.smooth_l1_loss(..., beta)`, elementwise."""
    magnitude = ops.abs(x)
    return ops.where(
        magnitude < beta, 0.5 * ops.square(x) / beta, magnitude - 0.5 * beta
    )


def build_feature_backbone(
    backbone: str | keras.Model = VGG_SMALL,
    image_shape: Sequence[int] = (128, 128, 3),
    feature_layer_name: str | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    dtype=None,
) -> keras.Model:
    """The backbone of a detector: images [B, H, W, 3] in 0..255 to one
    feature map [B, h, w, C] with a static size.

    `backbone` is resolved by `get_backbone` (`"vgg_small"`, a
    `keras.applications` name or a `keras.Model`) and cut at
    `feature_layer_name`: by default `"block3_pool"` (stride 8) for
    `"vgg_small"`, the stride-16 layer of `DEFAULT_SKIP_LAYER_NAMES` for a
    known application (torchvision's C4 features), the model's output
    otherwise.

    Raises:
        ValueError: if the layer does not exist or the features are not a
            static [B, h, w, C] map.
    """
    model, _ = get_backbone(
        backbone, image_shape, backbone_kwargs=backbone_kwargs, dtype=dtype
    )
    if feature_layer_name is None and isinstance(backbone, str):
        feature_layer_name = DEFAULT_FEATURE_LAYER_NAMES.get(backbone)
    if feature_layer_name is not None:
        names = [layer.name for layer in model.layers]
        if feature_layer_name not in names:
            raise ValueError(
                "Invalid value for argument `feature_layer_name`. Expected "
                f"the name of a layer of the backbone {model.name!r}, e.g. "
                f"{names[-4:]}. Received: "
                f"feature_layer_name={feature_layer_name!r}."
            )
        inputs = model.inputs
        model = keras.Model(
            inputs[0] if len(inputs) == 1 else inputs,
            model.get_layer(feature_layer_name).output,
            name="backbone",
        )
    outputs = model.outputs
    shape = tuple(outputs[0].shape) if len(outputs) == 1 else None
    if shape is None or len(shape) != 4 or None in shape[1:]:
        raise ValueError(
            "Invalid value for argument `backbone`. Expected a model with "
            "one output, a feature map [B, h, w, C] of static size. "
            f"Received: outputs of shapes {[tuple(o.shape) for o in outputs]}."
        )
    return model


def build_pyramid_backbone(
    backbone: str | keras.Model = VGG_SMALL,
    image_shape: Sequence[int] = (128, 128, 3),
    feature_layer_names: Sequence[str] | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    dtype=None,
) -> tuple[keras.Model, list[int]]:
    """The backbone of an FPN detector: images [B, H, W, 3] in 0..255 to
    the maps C_k, finest first, with static sizes at consecutive strides.

    `backbone` is resolved by `get_backbone` and cut at
    `feature_layer_names`: by default `VGG_SMALL_FPN_LAYER_NAMES` (C2-C5,
    strides 4 to 32) for `"vgg_small"`, and for a known application its
    stride-8 and stride-16 layers of `DEFAULT_SKIP_LAYER_NAMES` plus its
    stride-32 output (C3-C5). A `keras.Model` with several outputs and no
    `feature_layer_names` is used as it is.

    Returns:
        Tuple `(model, levels)`: the multi-output model and the FPN level
        k = log2(stride) of each output (e.g. [2, 3, 4, 5]).

    Raises:
        ValueError: if a layer does not exist, no default applies, or the
            maps are not static [B, h, w, C] at consecutive powers of two.
    """
    model, skips = get_backbone(
        backbone, image_shape, backbone_kwargs=backbone_kwargs, dtype=dtype
    )
    if feature_layer_names is None and isinstance(backbone, str):
        if backbone == VGG_SMALL:
            feature_layer_names = VGG_SMALL_FPN_LAYER_NAMES
        elif skips:
            feature_layer_names = (*skips, None)  # None: the output
    if feature_layer_names is None:
        if len(model.outputs) < 2:
            raise ValueError(
                "Invalid value for argument `feature_layer_names`. Expected "
                "the names of the backbone layers giving the FPN inputs "
                "(finest first) for a backbone with one output and no "
                f"default ({model.name!r}). Received: "
                "feature_layer_names=None."
            )
    else:
        names = [layer.name for layer in model.layers]
        if isinstance(feature_layer_names, str) or any(
            n is not None and n not in names for n in feature_layer_names
        ):
            raise ValueError(
                "Invalid value for argument `feature_layer_names`. Expected "
                "names of layers of the backbone "
                f"{model.name!r}, finest first, e.g. {names[-4:]}. "
                f"Received: feature_layer_names={feature_layer_names!r}."
            )
        inputs = model.inputs
        model = keras.Model(
            inputs[0] if len(inputs) == 1 else inputs,
            [
                model.outputs[0] if n is None else model.get_layer(n).output
                for n in feature_layer_names
            ],
            name="backbone",
        )
    shapes = [tuple(o.shape) for o in model.outputs]
    levels = []
    for shape in shapes:
        if len(shape) != 4 or None in shape[1:]:
            levels = None
            break
        levels.append(round(math.log2(image_shape[0] / shape[1])))
    if levels is None or any(
        b != a + 1 for a, b in zip(levels, levels[1:], strict=False)
    ):
        raise ValueError(
            "Invalid value for argument `feature_layer_names`. Expected "
            "feature maps [B, h, w, C] of static size at consecutive "
            "strides 2**k, finest first (C2, C3, ...). Received: outputs "
            f"of shapes {shapes} for image_shape={tuple(image_shape)}."
        )
    return model, levels


def _fpn_anchor_sizes(anchor_sizes, rpn_levels: Sequence[int]) -> tuple:
    """One tuple of anchor sizes per RPN level: None gives
    `_FPN_ANCHOR_SIZE_PER_STRIDE * 2**k`, flat numbers one per level."""
    if anchor_sizes is None:
        return tuple(
            (_FPN_ANCHOR_SIZE_PER_STRIDE * 2.0**k,) for k in rpn_levels
        )
    if not isinstance(anchor_sizes, (list, tuple)) or len(anchor_sizes) != len(
        rpn_levels
    ):
        raise ValueError(
            "Invalid value for argument `anchor_sizes`. Expected with "
            f"fpn=True one size (or sequence of sizes) per RPN level "
            f"({len(rpn_levels)}: P{rpn_levels[0]}-P{rpn_levels[-1]}). "
            f"Received: anchor_sizes={anchor_sizes!r}."
        )
    return tuple(
        tuple(s) if isinstance(s, (list, tuple)) else (s,) for s in anchor_sizes
    )


def _apply_backbone_and_rpn(
    images, backbone, feature_pyramid, rpn_layers, training=None
):
    """images -> (RoI features: a map or the list P2.., objectness maps,
    delta maps), one per RPN level; the RPN head's layers are shared by
    the levels (torchvision's `RPNHead`)."""
    features = backbone(images, training=training)
    if feature_pyramid is None:
        roi_features, rpn_levels = features, [features]
    else:
        rpn_levels = feature_pyramid(features)
        roi_features = rpn_levels[:-1]  # P6 serves the RPN only
    rpn_conv, rpn_objectness, rpn_box_deltas = rpn_layers
    objectness, deltas = [], []
    for level in rpn_levels:
        x = rpn_conv(level)
        objectness.append(rpn_objectness(x))
        deltas.append(rpn_box_deltas(x))
    return roi_features, objectness, deltas


def _apply_box_head(
    features, rois, roi_pooler, fc_layers, classifier, regressor
):
    """RoI features -> (class logits [B, R, K + 1], deltas [B, R, 4(K+1)])."""
    x = roi_pooler(features, rois)
    for layer in fc_layers:
        x = layer(x)
    return classifier(x), regressor(x)


def _apply_mask_head(features, rois, roi_pooler, mask_layers):
    """RoI features -> mask logits [B, R, 2 m, 2 m, K + 1]."""
    x = roi_pooler(features, rois)
    for layer in mask_layers:
        x = layer(x)
    return x


@keras.saving.register_keras_serializable(package="keras_segattn")
class FasterRCNN(ConstructorConfigMixin, keras.Model):
    """Faster R-CNN: backbone, RPN, RoI pooling and a two-layer box head.

    The detector of Ren et al. (2015) in the layout of torchvision's
    `FasterRCNN`, by default with a single feature map (its C4 variant;
    `fpn=True` adds a Feature Pyramid Network, see below):

    - a backbone (see `build_feature_backbone`; by default the small VGG of
      this package cut at stride 8, CPU-friendly);
    - an RPN head (3x3 conv + ReLU, then 1x1 convs giving A objectness
      logits and 4 A deltas per location) over `generate_anchors` anchors
      (`anchor_sizes` x `aspect_ratios`, torchvision `AnchorGenerator`);
    - `ProposalGenerator`: top-k, decoding, clipping, NMS to a fixed count;
    - `RoIAlign` (`roi_op="align"`, torchvision's `aligned=False` with
      sampling ratio 2) or `RoIPool` (`"pool"`, Fast R-CNN) at
      `roi_output_size`, then two fully connected layers
      (`box_head_units`, torchvision's `TwoMLPHead`), class logits
      (K + 1, background 0) and class-specific deltas;
    - `DetectionPostprocessor`: softmax, decoding with weights
      (10, 10, 5, 5), per-class NMS, `max_detections` per image.

    The functional graph (`call`, `predict`, export) is the inference
    path and returns TF OD API outputs. Training uses a custom
    `train_step` (TensorFlow backend): `fit(x=images, y={"boxes": [B, M,
    4], "classes": [B, M]})`, ground-truth rows padded with -1 (class -1 or
    four -1 coordinates), sums torchvision's four losses:

    - `loss_objectness`: binary cross-entropy of the RPN logits over
      `rpn_batch_size_per_image` anchors per image sampled with
      `rpn_positive_fraction` positives (`match_boxes` at IoU >= 0.7
      foreground, < 0.3 background, low-quality matches allowed;
      `sample_balanced`), averaged over the sampled anchors;
    - `loss_rpn_box_reg`: smooth L1 (beta 1/9) of the RPN deltas
      (weights 1, 1, 1, 1) on the sampled positives, divided by the number
      of sampled anchors;
    - `loss_classifier`: cross-entropy over `box_batch_size_per_image`
      RoIs per image, sampled from the training proposals plus the ground
      truth boxes (IoU >= 0.5 foreground) with `box_positive_fraction`
      positives;
    - `loss_box_reg`: smooth L1 (beta 1/9) of the deltas of the ground
      truth class (weights `bbox_reg_weights`) on the positive RoIs,
      divided by the number of sampled RoIs.

    With `mask_head=True` the model is Mask R-CNN (He et al., 2017): a
    second RoIAlign (`mask_roi_output_size`, 14) feeds `mask_head_convs`
    3x3 convs, a stride-2 transposed conv and a 1x1 conv giving per-class
    mask logits (28 x 28 by default); `fit` then also needs `y["masks"]`
    [B, M, H, W] (one image-sized binary mask per ground-truth row) and
    adds `loss_mask`, torchvision's per-pixel binary cross-entropy of the
    ground-truth class's logits on the positive RoIs against the gt mask
    cropped by RoIAlign (sampling ratio `sampling_ratio`, not adaptive).
    Inference adds `detection_masks`, the detected class's mask
    probabilities pasted into the image (`MaskPostprocessor`).

    With `fpn=True` the model is torchvision's FPN detector
    (`fasterrcnn_resnet50_fpn` layout, Lin et al., 2017): the backbone
    gives several maps (`feature_layer_names`; by default C2-C5, strides
    4-32, of `"vgg_small"`, or the stride-8/16 skips and the stride-32
    output of a known application), `FeaturePyramid` (`fpn_filters`
    channels) turns them into P2-P5 plus a max-pooled P6 used by the RPN
    only; one RPN head (the same three conv layers) runs on every level,
    with one anchor size per level (`anchor_sizes` None: 4 x stride, 16
    px at P2; torchvision: 8 x stride); proposals follow torchvision's
    `filter_proposals` over the levels (`rpn_pre_nms_top_n_*` per level,
    NMS within each level, `rpn_post_nms_top_n_*` over all levels); the
    RPN losses run over the anchors of all levels concatenated; the box
    head, the mask head and the detection masks pool P2-P5 with
    `MultiScaleRoIAlign` (aligned=False, `sampling_ratio`, canonical
    size 224 at level 4). `roi_op` must be `"align"`.

    Every step has static shapes and no Python loop over images, anchors
    or RoIs, so `compile(jit_compile=True)` compiles the whole step with
    XLA. Proposals are not differentiated (torchvision detaches them).
    Sampling draws from a `keras.random.SeedGenerator` (`seed`).

    Args:
        num_classes: int >= 1, object classes (background excluded);
            targets and `detection_classes` use ids 0..num_classes - 1.
        backbone: `"vgg_small"`, a `keras.applications` name or a
            `keras.Model` mapping 0..255 images to features.
        image_shape: static (H, W, C) of the input images.
        feature_layer_name: backbone layer giving the features (None: see
            `build_feature_backbone`); must be None with `fpn=True`.
        backbone_kwargs: extra arguments of the backbone constructor, e.g.
            `{"filters": (16, 32, 64, 64, 64)}` for `"vgg_small"`.
        roi_op: `"align"` or `"pool"` (`"align"` only with `fpn=True`).
        bounding_box_format: absolute format of `y["boxes"]` and of
            `detection_boxes` ("yxyx": the OD API's ymin, xmin, ymax, xmax).
        anchor_sizes, aspect_ratios: the anchors at every location.
            `anchor_sizes` None means (16, 32, 64) without FPN; with
            `fpn=True` it is one size (or one sequence of sizes, all of
            the same length) per RPN level P2..P6, None meaning 4 x the
            level's stride.
        rpn_filters: width of the RPN's 3x3 conv (None: the features').
        rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train, rpn_post_nms_top_n_test,
        rpn_nms_threshold, rpn_min_size: proposal generation.
        rpn_fg_iou_threshold, rpn_bg_iou_threshold,
        rpn_batch_size_per_image, rpn_positive_fraction: RPN training.
        roi_output_size: int or pair, RoI pooling grid (7).
        sampling_ratio: int > 0, RoIAlign samples per bin and axis.
        box_head_units: width of the two fully connected layers.
        box_fg_iou_threshold, box_bg_iou_threshold,
        box_batch_size_per_image, box_positive_fraction: box head training.
        bbox_reg_weights: box head coder weights, (10, 10, 5, 5).
        box_score_threshold, box_nms_threshold, max_detections:
            inference post-processing.
        mask_head: bool. Add the Mask R-CNN branch.
        mask_roi_output_size: int, mask RoIAlign grid (masks are twice it).
        mask_head_filters: width of the mask convs (torchvision: 256).
        mask_head_convs: int >= 0, 3x3 convs before the upsampling (4).
        fpn: bool. Add a Feature Pyramid Network (see above).
        fpn_filters: int > 0, channels of the pyramid levels
            (torchvision: 256).
        feature_layer_names: with `fpn=True`, the backbone layers giving
            the pyramid inputs, finest first, at consecutive strides
            (None: see `build_pyramid_backbone`); must be None without
            FPN (use `feature_layer_name`).
        seed: None or int, seeds the samplers' `SeedGenerator`.
        dtype: dtype policy of the layers; box math and outputs float32.

    Outputs (`call`/`predict`): dict of float32 tensors
    `detection_boxes` [B, D, 4] (pixels, `bounding_box_format`),
    `detection_scores` [B, D], `detection_classes` [B, D] and
    `num_detections` [B], with D = `max_detections`; with `mask_head`,
    also `detection_masks` [B, D, H, W]. Slots past `num_detections` are
    zeros.

    Raises:
        ValueError: for invalid arguments (named in the message), and in
            `fit`/`evaluate` for targets that are not {"boxes": [B, M, 4],
            "classes": [B, M]}.
        TypeError: for a `backbone` of the wrong type or targets that are
            not a dict.

    Example:

    >>> model = FasterRCNN(num_classes=10, image_shape=(64, 64, 3),
    ...                    backbone_kwargs={"filters": (8, 8, 16, 16, 16)})
    >>> model.compile(optimizer="adam", jit_compile=True)
    >>> images = np.zeros((2, 64, 64, 3), "float32")
    >>> targets = {"boxes": np.array([[[8, 8, 40, 40]]] * 2, "float32"),
    ...            "classes": np.array([[3]] * 2, "int32")}
    >>> model.fit(images, targets, epochs=1, verbose=0)  # doctest: +SKIP
    >>> model.predict(images)["detection_boxes"].shape  # doctest: +SKIP
    (2, 100, 4)

    Reference:
        - [Ren et al., "Faster R-CNN: Towards Real-Time Object Detection
          with Region Proposal Networks", NeurIPS 2015](
          https://arxiv.org/abs/1506.01497)
        - [Lin et al., "Feature Pyramid Networks for Object Detection",
          CVPR 2017](https://arxiv.org/abs/1612.03144)
        - torchvision's `FasterRCNN` (pytorch/vision:
          torchvision/models/detection/faster_rcnn.py, rpn.py,
          roi_heads.py, backbone_utils.py)
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str | keras.Model = VGG_SMALL,
        image_shape: Sequence[int] = (128, 128, 3),
        feature_layer_name: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        roi_op: str = "align",
        bounding_box_format: str = "yxyx",
        anchor_sizes: Sequence[float] | Sequence[Sequence[float]] | None = None,
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        rpn_filters: int | None = None,
        rpn_pre_nms_top_n_train: int = 1000,
        rpn_pre_nms_top_n_test: int = 500,
        rpn_post_nms_top_n_train: int = 500,
        rpn_post_nms_top_n_test: int = 200,
        rpn_nms_threshold: float = 0.7,
        rpn_min_size: float = 1e-3,
        rpn_fg_iou_threshold: float = 0.7,
        rpn_bg_iou_threshold: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        roi_output_size: int | Sequence[int] = 7,
        sampling_ratio: int = 2,
        box_head_units: int = 256,
        box_fg_iou_threshold: float = 0.5,
        box_bg_iou_threshold: float = 0.5,
        box_batch_size_per_image: int = 128,
        box_positive_fraction: float = 0.25,
        bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
        box_score_threshold: float = 0.05,
        box_nms_threshold: float = 0.5,
        max_detections: int = 100,
        mask_head: bool = False,
        mask_roi_output_size: int = 14,
        mask_head_filters: int = 64,
        mask_head_convs: int = 4,
        fpn: bool = False,
        fpn_filters: int = 64,
        feature_layer_names: Sequence[str] | None = None,
        seed: int | None = None,
        dtype=None,
        **kwargs,
    ):
        num_classes = validation.check_num_classes(num_classes)
        image_shape = check_image_shape(image_shape)
        if None in image_shape:
            raise ValueError(
                "Invalid value for argument `image_shape`. Expected a static "
                "(height, width, channels): the anchors are constants. "
                f"Received: image_shape={image_shape!r}."
            )
        validation.check_one_of(roi_op, ROI_OPS, "roi_op")
        fpn = bool(fpn)
        fpn_filters = validation.check_positive_int(fpn_filters, "fpn_filters")
        if fpn and roi_op != "align":
            raise ValueError(
                "Invalid value for argument `roi_op`. Expected 'align' with "
                "fpn=True (the FPN pools with MultiScaleRoIAlign, as "
                f"torchvision). Received: roi_op={roi_op!r}."
            )
        if fpn and feature_layer_name is not None:
            raise ValueError(
                "Invalid value for argument `feature_layer_name`. Expected "
                "None with fpn=True (name the pyramid inputs with "
                "`feature_layer_names`). Received: "
                f"feature_layer_name={feature_layer_name!r}."
            )
        if not fpn and feature_layer_names is not None:
            raise ValueError(
                "Invalid value for argument `feature_layer_names`. Expected "
                "None with fpn=False (use `feature_layer_name`). Received: "
                f"feature_layer_names={feature_layer_names!r}."
            )
        if feature_layer_names is not None and not isinstance(
            feature_layer_names, str
        ):
            feature_layer_names = tuple(feature_layer_names)
        bounding_box_format = _roi_common.check_bounding_box_format(
            bounding_box_format
        )
        if isinstance(backbone, dict):  # from `get_config`
            backbone = keras.saving.deserialize_keras_object(backbone)
        if not isinstance(backbone, (str, keras.Model)):
            raise TypeError(
                "Invalid type for argument `backbone`. Expected a string or "
                "a keras.Model. Received: "
                f"type(backbone)={type(backbone).__name__}."
            )
        roi_output_size = validation.standardize_size(
            roi_output_size, "roi_output_size"
        )
        sampling_ratio = validation.check_sampling_ratio(sampling_ratio)
        box_head_units = validation.check_positive_int(
            box_head_units, "box_head_units"
        )
        if rpn_filters is not None:
            rpn_filters = validation.check_positive_int(
                rpn_filters, "rpn_filters"
            )
        rpn_batch_size_per_image = validation.check_positive_int(
            rpn_batch_size_per_image, "rpn_batch_size_per_image"
        )
        box_batch_size_per_image = validation.check_positive_int(
            box_batch_size_per_image, "box_batch_size_per_image"
        )
        rpn_positive_fraction = check_fraction(
            rpn_positive_fraction, "rpn_positive_fraction"
        )
        box_positive_fraction = check_fraction(
            box_positive_fraction, "box_positive_fraction"
        )
        thresholds = {}
        for stage in ("rpn", "box"):
            high, low = (
                (rpn_fg_iou_threshold, rpn_bg_iou_threshold)
                if stage == "rpn"
                else (box_fg_iou_threshold, box_bg_iou_threshold)
            )
            high = check_fraction(high, f"{stage}_fg_iou_threshold")
            low = check_fraction(low, f"{stage}_bg_iou_threshold")
            if low > high:
                raise ValueError(
                    f"Invalid value for argument `{stage}_bg_iou_threshold`. "
                    f"Expected {stage}_bg_iou_threshold <= "
                    f"{stage}_fg_iou_threshold. Received: "
                    f"{stage}_bg_iou_threshold={low} and "
                    f"{stage}_fg_iou_threshold={high}."
                )
            thresholds[stage] = (high, low)
        bbox_reg_weights = check_box_coder_weights(
            bbox_reg_weights, "bbox_reg_weights"
        )
        if fpn:
            feature_backbone, levels = build_pyramid_backbone(
                backbone,
                image_shape,
                feature_layer_names=feature_layer_names,
                backbone_kwargs=backbone_kwargs,
                dtype=dtype,
            )
            anchor_sizes = _fpn_anchor_sizes(
                anchor_sizes, (*levels, levels[-1] + 1)
            )
            channels = fpn_filters
            spatial_scale = [2.0**-k for k in levels]
        else:
            if anchor_sizes is None:
                anchor_sizes = (16.0, 32.0, 64.0)
            elif any(isinstance(a, (list, tuple)) for a in anchor_sizes):
                raise ValueError(
                    "Invalid value for argument `anchor_sizes`. Expected "
                    "numbers (one feature map) with fpn=False. Received: "
                    f"anchor_sizes={anchor_sizes!r}."
                )
        num_anchors = num_anchors_per_location(
            anchor_sizes[0] if fpn else anchor_sizes, aspect_ratios
        )

        # === Layers ===
        feature_pyramid = None
        if fpn:
            feature_pyramid = FeaturePyramid(
                fpn_filters,
                extra_max_pool=True,
                dtype=dtype,
                name="feature_pyramid",
            )
        else:
            feature_backbone = build_feature_backbone(
                backbone,
                image_shape,
                feature_layer_name=feature_layer_name,
                backbone_kwargs=backbone_kwargs,
                dtype=dtype,
            )
            _, feature_h, feature_w, channels = feature_backbone.output.shape
            # torchvision's MultiScaleRoIAlign infers the scale as the power
            # of two nearest to feature size / image size.
            spatial_scale = 2.0 ** round(math.log2(feature_h / image_shape[0]))
        rpn_width = rpn_filters or channels
        rpn_init = keras.initializers.RandomNormal(stddev=0.01)
        rpn_conv = keras.layers.Conv2D(
            rpn_width,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=rpn_init,
            dtype=dtype,
            name="rpn_conv",
        )
        rpn_objectness = keras.layers.Conv2D(
            num_anchors,
            1,
            kernel_initializer=rpn_init,
            dtype=dtype,
            name="rpn_objectness",
        )
        rpn_box_deltas = keras.layers.Conv2D(
            4 * num_anchors,
            1,
            kernel_initializer=rpn_init,
            dtype=dtype,
            name="rpn_box_deltas",
        )
        proposal_generator = ProposalGenerator(
            image_shape[:2],
            anchor_sizes,
            aspect_ratios,
            pre_nms_top_n_train=rpn_pre_nms_top_n_train,
            pre_nms_top_n_test=rpn_pre_nms_top_n_test,
            post_nms_top_n_train=rpn_post_nms_top_n_train,
            post_nms_top_n_test=rpn_post_nms_top_n_test,
            nms_threshold=rpn_nms_threshold,
            min_size=rpn_min_size,
            dtype=dtype,
            name="proposal_generator",
        )
        if fpn:
            roi_pooler = MultiScaleRoIAlign(
                roi_output_size,
                spatial_scales=spatial_scale,
                sampling_ratio=sampling_ratio,
                aligned=False,
                dtype=dtype,
                name="roi_align",
            )
        elif roi_op == "align":
            roi_pooler = RoIAlign(
                roi_output_size,
                spatial_scale=spatial_scale,
                sampling_ratio=sampling_ratio,
                aligned=False,
                dtype=dtype,
                name="roi_align",
            )
        else:
            roi_pooler = RoIPool(
                roi_output_size,
                spatial_scale=spatial_scale,
                dtype=dtype,
                name="roi_pool",
            )
        fc_layers = [
            keras.layers.Reshape(
                (-1, roi_output_size[0] * roi_output_size[1] * channels),
                dtype=dtype,
                name="box_head_flatten",
            ),
            keras.layers.Dense(
                box_head_units, activation="relu", dtype=dtype, name="box_fc6"
            ),
            keras.layers.Dense(
                box_head_units, activation="relu", dtype=dtype, name="box_fc7"
            ),
        ]
        box_classifier = keras.layers.Dense(
            num_classes + 1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            dtype=dtype,
            name="box_class_logits",
        )
        box_regressor = keras.layers.Dense(
            4 * (num_classes + 1),
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
            dtype=dtype,
            name="box_deltas",
        )
        postprocessor = DetectionPostprocessor(
            image_shape[:2],
            bbox_reg_weights=bbox_reg_weights,
            score_threshold=box_score_threshold,
            nms_threshold=box_nms_threshold,
            max_detections=max_detections,
            bounding_box_format=bounding_box_format,
            dtype=dtype,
            name="detections",
        )

        mask_layers = []
        if mask_head:
            mask_roi_output_size = validation.check_positive_int(
                mask_roi_output_size, "mask_roi_output_size"
            )
            mask_head_filters = validation.check_positive_int(
                mask_head_filters, "mask_head_filters"
            )
            mask_head_convs = validation.check_int(
                mask_head_convs, "mask_head_convs", minimum=0
            )
            pooler_cls, scale_kwargs = (
                (MultiScaleRoIAlign, {"spatial_scales": spatial_scale})
                if fpn
                else (RoIAlign, {"spatial_scale": spatial_scale})
            )
            mask_roi_pooler = pooler_cls(
                mask_roi_output_size,
                **scale_kwargs,
                sampling_ratio=sampling_ratio,
                aligned=False,
                dtype=dtype,
                name="mask_roi_align",
            )
            # The same op on the detections, whose boxes are already in
            # `bounding_box_format`.
            mask_detection_pooler = pooler_cls(
                mask_roi_output_size,
                **scale_kwargs,
                sampling_ratio=sampling_ratio,
                aligned=False,
                bounding_box_format=bounding_box_format,
                dtype=dtype,
                name="mask_detection_roi_align",
            )
            for i in range(mask_head_convs):
                mask_layers.append(
                    keras.layers.TimeDistributed(
                        keras.layers.Conv2D(
                            mask_head_filters,
                            3,
                            padding="same",
                            activation="relu",
                            kernel_initializer="he_normal",
                            dtype=dtype,
                        ),
                        dtype=dtype,
                        name=f"mask_conv{i + 1}",
                    )
                )
            mask_layers.append(
                keras.layers.TimeDistributed(
                    keras.layers.Conv2DTranspose(
                        mask_head_filters,
                        2,
                        strides=2,
                        activation="relu",
                        kernel_initializer="he_normal",
                        dtype=dtype,
                    ),
                    dtype=dtype,
                    name="mask_deconv",
                )
            )
            mask_layers.append(
                keras.layers.TimeDistributed(
                    keras.layers.Conv2D(
                        num_classes + 1,
                        1,
                        kernel_initializer="he_normal",
                        dtype=dtype,
                    ),
                    dtype=dtype,
                    name="mask_logits",
                )
            )
            mask_postprocessor = MaskPostprocessor(
                image_shape[:2],
                bounding_box_format=bounding_box_format,
                dtype=dtype,
                name="detection_masks",
            )

        # === Functional Model ===
        images = keras.Input(image_shape, name="images")
        features, objectness, deltas = _apply_backbone_and_rpn(
            images,
            feature_backbone,
            feature_pyramid,
            (rpn_conv, rpn_objectness, rpn_box_deltas),
        )
        if not fpn:
            objectness, deltas = objectness[0], deltas[0]
        proposals, _ = proposal_generator(objectness, deltas)
        class_logits, box_deltas = _apply_box_head(
            features,
            proposals,
            roi_pooler,
            fc_layers,
            box_classifier,
            box_regressor,
        )
        detections = postprocessor(class_logits, box_deltas, proposals)
        if mask_head:
            mask_logits = _apply_mask_head(
                features,
                detections["detection_boxes"],
                mask_detection_pooler,
                mask_layers,
            )
            detections = {
                **detections,
                "detection_masks": mask_postprocessor(
                    mask_logits,
                    detections["detection_boxes"],
                    detections["detection_classes"],
                    detections["num_detections"],
                ),
            }
        super().__init__(inputs=images, outputs=detections, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.backbone_arg = backbone if isinstance(backbone, str) else None
        self.feature_layer_name = feature_layer_name
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.image_shape = tuple(image_shape)
        self.roi_op = roi_op
        self.bounding_box_format = bounding_box_format
        self.anchor_sizes = proposal_generator.anchor_sizes
        self.aspect_ratios = proposal_generator.aspect_ratios
        self.rpn_filters = rpn_filters
        self.rpn_pre_nms_top_n_train = proposal_generator.pre_nms_top_n_train
        self.rpn_pre_nms_top_n_test = proposal_generator.pre_nms_top_n_test
        self.rpn_post_nms_top_n_train = proposal_generator.post_nms_top_n_train
        self.rpn_post_nms_top_n_test = proposal_generator.post_nms_top_n_test
        self.rpn_nms_threshold = proposal_generator.nms_threshold
        self.rpn_min_size = proposal_generator.min_size
        self.rpn_fg_iou_threshold, self.rpn_bg_iou_threshold = thresholds["rpn"]
        self.rpn_batch_size_per_image = rpn_batch_size_per_image
        self.rpn_positive_fraction = rpn_positive_fraction
        self.roi_output_size = roi_output_size
        self.sampling_ratio = sampling_ratio
        self.box_head_units = box_head_units
        self.box_fg_iou_threshold, self.box_bg_iou_threshold = thresholds["box"]
        self.box_batch_size_per_image = box_batch_size_per_image
        self.box_positive_fraction = box_positive_fraction
        self.bbox_reg_weights = bbox_reg_weights
        self.box_score_threshold = postprocessor.score_threshold
        self.box_nms_threshold = postprocessor.nms_threshold
        self.max_detections = postprocessor.max_detections
        self.seed = seed
        self.mask_head = bool(mask_head)
        self.mask_roi_output_size = mask_roi_output_size
        self.mask_head_filters = mask_head_filters
        self.mask_head_convs = mask_head_convs
        self.fpn = fpn
        self.fpn_filters = fpn_filters
        self.feature_layer_names = feature_layer_names
        self.spatial_scale = spatial_scale

        self.backbone = feature_backbone
        self.feature_pyramid = feature_pyramid
        self.rpn_conv = rpn_conv
        self.rpn_objectness = rpn_objectness
        self.rpn_box_deltas = rpn_box_deltas
        self.proposal_generator = proposal_generator
        self.roi_pooler = roi_pooler
        self.box_fc_layers = fc_layers
        self.box_classifier = box_classifier
        self.box_regressor = box_regressor
        self.postprocessor = postprocessor
        self.seed_generator = keras.random.SeedGenerator(
            seed, name="sampler_seed_generator"
        )
        self.mask_layers = mask_layers
        if mask_head:
            self.mask_roi_pooler = mask_roi_pooler
            self.mask_detection_pooler = mask_detection_pooler
            self.mask_postprocessor = mask_postprocessor
        self.loss_names = LOSS_NAMES + ((MASK_LOSS_NAME,) if mask_head else ())
        self.loss_trackers = [
            keras.metrics.Mean(name=name) for name in ("loss", *self.loss_names)
        ]

    def _constructor_config(self) -> dict:
        backbone = self.backbone_arg
        if backbone is None:
            backbone = keras.saving.serialize_keras_object(self.backbone)
        return {
            "num_classes": self.num_classes,
            "backbone": backbone,
            "image_shape": self.image_shape,
            "feature_layer_name": (
                self.feature_layer_name if self.backbone_arg else None
            ),
            "backbone_kwargs": self.backbone_kwargs or None,
            "roi_op": self.roi_op,
            "bounding_box_format": self.bounding_box_format,
            "anchor_sizes": self.anchor_sizes,
            "aspect_ratios": self.aspect_ratios,
            "rpn_filters": self.rpn_filters,
            "rpn_pre_nms_top_n_train": self.rpn_pre_nms_top_n_train,
            "rpn_pre_nms_top_n_test": self.rpn_pre_nms_top_n_test,
            "rpn_post_nms_top_n_train": self.rpn_post_nms_top_n_train,
            "rpn_post_nms_top_n_test": self.rpn_post_nms_top_n_test,
            "rpn_nms_threshold": self.rpn_nms_threshold,
            "rpn_min_size": self.rpn_min_size,
            "rpn_fg_iou_threshold": self.rpn_fg_iou_threshold,
            "rpn_bg_iou_threshold": self.rpn_bg_iou_threshold,
            "rpn_batch_size_per_image": self.rpn_batch_size_per_image,
            "rpn_positive_fraction": self.rpn_positive_fraction,
            "roi_output_size": self.roi_output_size,
            "sampling_ratio": self.sampling_ratio,
            "box_head_units": self.box_head_units,
            "box_fg_iou_threshold": self.box_fg_iou_threshold,
            "box_bg_iou_threshold": self.box_bg_iou_threshold,
            "box_batch_size_per_image": self.box_batch_size_per_image,
            "box_positive_fraction": self.box_positive_fraction,
            "bbox_reg_weights": self.bbox_reg_weights,
            "box_score_threshold": self.box_score_threshold,
            "box_nms_threshold": self.box_nms_threshold,
            "max_detections": self.max_detections,
            "mask_head": self.mask_head,
            "mask_roi_output_size": self.mask_roi_output_size,
            "mask_head_filters": self.mask_head_filters,
            "mask_head_convs": self.mask_head_convs,
            "fpn": self.fpn,
            "fpn_filters": self.fpn_filters,
            "feature_layer_names": (
                self.feature_layer_names if self.backbone_arg else None
            ),
            "seed": self.seed,
        }

    # === Training (custom train_step, TensorFlow backend) ===

    @property
    def metrics(self):
        return list(self.loss_trackers)

    def _split_targets(self, y) -> tuple:
        """Validates `y`; returns gt boxes (x1, y1, x2, y2, padding four -1)
        float32 [B, M, 4], classes int32 [B, M] (-1 for padding) and, with
        the mask head, masks float32 [B, M, H, W] (else None)."""
        if not isinstance(y, dict):
            raise TypeError(
                "Invalid type for argument `y`. Expected a dict with "
                '"boxes" [B, M, 4] and "classes" [B, M], padded with -1. '
                f"Received: type(y)={type(y).__name__}."
            )
        missing = [key for key in ("boxes", "classes") if key not in y]
        if missing:
            raise ValueError(
                "Invalid value for argument `y`. Expected the keys "
                f'"boxes" and "classes". Received: keys {sorted(y)}.'
            )
        boxes, classes = y["boxes"], y["classes"]
        shape = validation.check_rank(boxes, 3, 'y["boxes"]')
        if shape[-1] != 4 or shape[1] is None:
            raise ValueError(
                'Invalid shape for argument `y["boxes"]`. Expected [B, M, 4] '
                f'with a static M. Received: y["boxes"].shape={shape}.'
            )
        class_shape = validation.check_rank(classes, 2, 'y["classes"]')
        if class_shape[1] != shape[1]:
            raise ValueError(
                'Invalid shape for argument `y["classes"]`. Expected [B, M] '
                'with the M of y["boxes"]. Received: '
                f'y["classes"].shape={class_shape} and '
                f'y["boxes"].shape={shape}.'
            )
        boxes = _roi_common.to_xyxy(boxes, self.bounding_box_format)
        classes = ops.cast(classes, "int32")
        padding = ops.logical_or(is_padding_box(boxes), classes < 0)
        boxes = ops.where(padding[..., None], -1.0, boxes)
        classes = ops.where(padding, -1, classes)
        if not self.mask_head:
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

    def _rpn_losses(self, objectness, deltas, gt_boxes) -> tuple:
        """The RPN losses over the anchors of every level (lists of maps,
        one per level), concatenated as torchvision does."""
        sizes = [tuple(o.shape[1:3]) for o in objectness]
        anchors = self.proposal_generator.anchors(
            sizes if self.fpn else sizes[0]
        )
        logits, deltas, _ = self.proposal_generator.flatten_head_outputs(
            objectness if self.fpn else objectness[0],
            deltas if self.fpn else deltas[0],
        )
        matches = match_boxes(
            anchors,
            gt_boxes,
            self.rpn_fg_iou_threshold,
            self.rpn_bg_iou_threshold,
            allow_low_quality_matches=True,
        )
        labels = ops.where(matches >= 0, 1, ops.where(matches == -1, 0, -1))
        index, sampled = sample_balanced(
            labels,
            self.rpn_batch_size_per_image,
            self.rpn_positive_fraction,
            seed=self.seed_generator,
        )
        is_sampled = ops.cast(sampled >= 0, "float32")
        is_positive = ops.cast(sampled == 1, "float32")
        num_sampled = ops.maximum(ops.sum(is_sampled), 1.0)
        objectness_loss = ops.binary_crossentropy(
            ops.cast(sampled == 1, "float32"),
            ops.take_along_axis(logits, index, axis=1),
            from_logits=True,
        )
        objectness_loss = ops.sum(objectness_loss * is_sampled) / num_sampled
        matched = ops.take_along_axis(
            ops.maximum(matches, 0), index, axis=1
        )  # [B, S] gt index
        targets = encode_boxes(
            ops.take_along_axis(gt_boxes, matched[..., None], axis=1),
            ops.take(anchors, index, axis=0),
        )
        predicted = ops.take_along_axis(deltas, index[..., None], axis=1)
        box_loss = ops.sum(_smooth_l1(predicted - targets), axis=-1)
        box_loss = ops.sum(box_loss * is_positive) / num_sampled
        return objectness_loss, box_loss

    def _sample_rois(self, proposals, gt_boxes, gt_classes) -> tuple:
        """torchvision's `select_training_samples`: ground truth appended
        to the proposals, matched, sampled; returns RoIs [B, S, 4] (padding
        -1), their labels [B, S] (0 background, -1 empty slot) and
        regression targets [B, S, 4]."""
        proposals = ops.concatenate([proposals, gt_boxes], axis=1)
        matches = match_boxes(
            proposals,
            gt_boxes,
            self.box_fg_iou_threshold,
            self.box_bg_iou_threshold,
        )
        labels = ops.where(matches >= 0, 1, ops.where(matches == -1, 0, -1))
        index, sampled = sample_balanced(
            labels,
            self.box_batch_size_per_image,
            self.box_positive_fraction,
            seed=self.seed_generator,
        )
        rois = ops.take_along_axis(proposals, index[..., None], axis=1)
        rois = ops.where((sampled >= 0)[..., None], rois, -1.0)
        matched = ops.take_along_axis(ops.maximum(matches, 0), index, axis=1)
        classes = ops.take_along_axis(gt_classes, matched, axis=1) + 1
        roi_labels = ops.where(
            sampled == 1, classes, ops.where(sampled == 0, 0, -1)
        )
        targets = encode_boxes(
            ops.take_along_axis(gt_boxes, matched[..., None], axis=1),
            rois,
            self.bbox_reg_weights,
        )
        return rois, roi_labels, targets, matched

    def compute_detection_losses(self, images, y, training: bool = False):
        """The losses of a batch (`LOSS_NAMES`, plus `loss_mask` with the
        mask head), a dict of float32 scalars; `train_step` sums them.

        Args:
            images: float tensor [B, H, W, C] in 0..255.
            y: dict `{"boxes": [B, M, 4] in bounding_box_format, "classes":
                [B, M] int}`, padding rows -1, and `"masks"` [B, M, H, W]
                with the mask head.
            training: bool, the backbone's mode (batch norm); proposals and
                sampling always use the training settings.
        """
        gt_boxes, gt_classes, gt_masks = self._split_targets(y)
        features, objectness, deltas = _apply_backbone_and_rpn(
            images,
            self.backbone,
            self.feature_pyramid,
            (self.rpn_conv, self.rpn_objectness, self.rpn_box_deltas),
            training=training,
        )
        objectness_loss, rpn_box_loss = self._rpn_losses(
            objectness, deltas, gt_boxes
        )
        objectness = [ops.stop_gradient(o) for o in objectness]
        deltas = [ops.stop_gradient(d) for d in deltas]
        proposals, _ = self.proposal_generator(
            objectness if self.fpn else objectness[0],
            deltas if self.fpn else deltas[0],
            training=True,
        )
        rois, roi_labels, targets, matched = self._sample_rois(
            ops.stop_gradient(proposals), gt_boxes, gt_classes
        )
        class_logits, box_deltas = _apply_box_head(
            features,
            ops.stop_gradient(rois),
            self.roi_pooler,
            self.box_fc_layers,
            self.box_classifier,
            self.box_regressor,
        )
        class_logits = ops.cast(class_logits, "float32")
        is_sampled = ops.cast(roi_labels >= 0, "float32")
        is_positive = ops.cast(roi_labels > 0, "float32")
        num_sampled = ops.maximum(ops.sum(is_sampled), 1.0)
        classifier_loss = ops.sparse_categorical_crossentropy(
            ops.maximum(roi_labels, 0), class_logits, from_logits=True
        )
        classifier_loss = ops.sum(classifier_loss * is_sampled) / num_sampled
        box_deltas = ops.reshape(
            ops.cast(box_deltas, "float32"),
            (-1, rois.shape[1], self.num_classes + 1, 4),
        )
        predicted = ops.take_along_axis(
            box_deltas, ops.maximum(roi_labels, 0)[:, :, None, None], axis=2
        )[:, :, 0]
        box_loss = ops.sum(_smooth_l1(predicted - targets), axis=-1)
        box_loss = ops.sum(box_loss * is_positive) / num_sampled
        losses = dict(
            zip(
                LOSS_NAMES,
                (objectness_loss, rpn_box_loss, classifier_loss, box_loss),
                strict=True,
            )
        )
        if self.mask_head:
            losses[MASK_LOSS_NAME] = self._mask_loss(
                features, rois, roi_labels, matched, gt_masks
            )
        return losses

    def _mask_loss(self, features, rois, roi_labels, matched, gt_masks):
        """torchvision's `maskrcnn_loss`: per-pixel binary cross-entropy of
        the ground-truth class's mask logits on the positive RoIs, against
        the ground-truth mask cropped to each RoI by RoIAlign.

        `sample_balanced` puts the positives first, so only the first
        `int(box_batch_size_per_image * box_positive_fraction)` RoIs can be
        positive: the mask branch runs on those (torchvision runs it on
        the positives only, a data-dependent count).
        """
        num_rois = max(
            int(self.box_batch_size_per_image * self.box_positive_fraction), 1
        )
        labels = roi_labels[:, :num_rois]
        positive = labels > 0
        rois = ops.where(positive[..., None], rois[:, :num_rois], -1.0)
        rois = ops.stop_gradient(rois)
        logits = _apply_mask_head(
            features, rois, self.mask_roi_pooler, self.mask_layers
        )
        logits = ops.take_along_axis(
            ops.cast(logits, "float32"),
            ops.maximum(labels, 0)[:, :, None, None, None],
            axis=-1,
        )[..., 0]  # [B, P, m, m]
        # Targets: RoIAlign of the matched gt mask, torchvision's
        # `project_masks_on_boxes` (with sampling ratio 2, not adaptive).
        num_gt = gt_masks.shape[1]
        batch = ops.shape(labels)[0]
        image = ops.arange(batch, dtype="int32")[:, None] * num_gt
        flat_rois = ops.concatenate(
            [
                ops.cast(image + matched[:, :num_rois], "float32")[..., None],
                rois,
            ],
            axis=-1,
        )
        targets = roi_align(
            ops.reshape(gt_masks, (-1, *self.image_shape[:2], 1)),
            ops.reshape(flat_rois, (-1, 5)),
            tuple(logits.shape[2:4]),
            spatial_scale=1.0,
            sampling_ratio=self.sampling_ratio,
            aligned=False,
        )
        targets = ops.reshape(targets, ops.shape(logits))
        loss = ops.binary_crossentropy(targets, logits, from_logits=True)
        weight = ops.cast(positive, "float32")[:, :, None, None]
        pixels = logits.shape[2] * logits.shape[3]
        count = ops.maximum(ops.sum(weight) * pixels, 1.0)
        return ops.sum(loss * weight) / count

    def _images(self, x):
        if isinstance(x, dict):
            x = x["images"]
        validation.check_rank(x, 4, "x")
        return x

    def _record(self, losses) -> dict:
        total = sum(losses.values())
        self.loss_trackers[0].update_state(total)
        for tracker, name in zip(
            self.loss_trackers[1:], self.loss_names, strict=True
        ):
            tracker.update_state(losses[name])
        return {
            tracker.name: tracker.result() for tracker in self.loss_trackers
        }

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        images = self._images(x)
        with tf.GradientTape() as tape:
            losses = self.compute_detection_losses(images, y, training=True)
            total = sum(losses.values())
            scaled = self.optimizer.scale_loss(total)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply(gradients, variables)
        return self._record(losses)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        losses = self.compute_detection_losses(
            self._images(x), y, training=False
        )
        return self._record(losses)
