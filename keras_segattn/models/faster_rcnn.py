"""`FasterRCNN`: Faster R-CNN / Mask R-CNN (Ren et al., 2015; He et al.,
2017) built from plain arguments.

The constructor validates the arguments users know from torchvision,
builds the detection components (`build_faster_rcnn_components`) and
hands them to `TwoStageDetector`, which wires them and computes the
losses. Box convention: see `keras_segattn.models.two_stage_detector`;
the default `bounding_box_format` "yxyx" is the TF Object Detection API's
(ymin, xmin, ymax, xmax), in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras

from keras_segattn import validation
from keras_segattn.layers import _roi_common
from keras_segattn.layers.anchor_labeler import AnchorLabeler
from keras_segattn.layers.anchor_labeler import check_iou_thresholds
from keras_segattn.layers.box_head import BoxHead
from keras_segattn.layers.detection_postprocessor import DetectionPostprocessor
from keras_segattn.layers.feature_pyramid import FeaturePyramid
from keras_segattn.layers.mask_head import MaskHead
from keras_segattn.layers.mask_postprocessor import MaskPostprocessor
from keras_segattn.layers.multi_scale_roi_align import MultiScaleRoIAlign
from keras_segattn.layers.proposal_generator import ProposalGenerator
from keras_segattn.layers.roi_align import RoIAlign
from keras_segattn.layers.roi_pool import RoIPool
from keras_segattn.layers.roi_sampler import RoISampler
from keras_segattn.layers.rpn_head import RPNHead
from keras_segattn.models._config import ConstructorConfigMixin
from keras_segattn.models._detection_common import check_backbone_argument
from keras_segattn.models.backbones import VGG_SMALL
from keras_segattn.models.backbones import check_image_shape
from keras_segattn.models.detection_backbones import build_feature_backbone
from keras_segattn.models.detection_backbones import build_pyramid_backbone
from keras_segattn.models.detection_backbones import fpn_anchor_sizes
from keras_segattn.models.two_stage_detector import LOSS_NAMES  # noqa: F401
from keras_segattn.models.two_stage_detector import MASK_LOSS_NAME  # noqa: F401
from keras_segattn.models.two_stage_detector import TwoStageDetector
from keras_segattn.ops.anchors import num_anchors_per_location
from keras_segattn.ops.box_coding import check_box_coder_weights
from keras_segattn.validation import check_fraction

ROI_OPS = ("align", "pool")


@keras.saving.register_keras_serializable(package="keras_segattn")
class FasterRCNN(ConstructorConfigMixin, TwoStageDetector):
    """Faster R-CNN: backbone, RPN, RoI pooling and a two-layer box head.

    The detector of Ren et al. (2015) in the layout of torchvision's
    `FasterRCNN`, by default with a single feature map (its C4 variant;
    `fpn=True` adds a Feature Pyramid Network, see below):

    - a backbone (see `build_feature_backbone`; by default the small VGG of
      this package cut at stride 8, CPU-friendly);
    - `RPNHead` (3x3 conv + ReLU, then 1x1 convs giving A objectness
      logits and 4 A deltas per location) over `generate_anchors` anchors
      (`anchor_sizes` x `aspect_ratios`, torchvision `AnchorGenerator`);
    - `ProposalGenerator`: top-k, decoding, clipping, NMS to a fixed count;
    - `RoIAlign` (`roi_op="align"`, torchvision's `aligned=False` with
      sampling ratio 2) or `RoIPool` (`"pool"`, Fast R-CNN) at
      `roi_output_size`, then `BoxHead`: two fully connected layers
      (`box_head_units`, torchvision's `TwoMLPHead`), class logits
      (K + 1, background 0) and class-specific deltas;
    - `DetectionPostprocessor`: softmax, decoding with weights
      (10, 10, 5, 5), per-class NMS, `max_detections` per image.

    This class builds those components from plain arguments and hands them
    to `TwoStageDetector`, which wires them (see its docstring for the data
    flow, `call(training=True)` and `compute_loss`; there is no
    `train_step` override). The functional graph (`call`, `predict`,
    export) is the inference path and returns TF OD API outputs.
    `fit(x=images, y={"boxes": [B, M, 4], "classes": [B, M]})`, with
    ground-truth rows padded with -1 (class -1 or four -1 coordinates),
    sums torchvision's four losses:

    - `loss_objectness`: binary cross-entropy of the RPN logits over
      `rpn_batch_size_per_image` anchors per image sampled with
      `rpn_positive_fraction` positives (`AnchorLabeler`: `match_boxes`
      at IoU >= 0.7 foreground, < 0.3 background, low-quality matches
      allowed; `sample_balanced`), averaged over the sampled anchors;
    - `loss_rpn_box_reg`: smooth L1 (beta 1/9) of the RPN deltas
      (weights 1, 1, 1, 1) on the sampled positives, divided by the number
      of sampled anchors;
    - `loss_classifier`: cross-entropy over `box_batch_size_per_image`
      RoIs per image, sampled (`RoISampler`) from the training proposals
      plus the ground truth boxes (IoU >= 0.5 foreground) with
      `box_positive_fraction` positives;
    - `loss_box_reg`: smooth L1 (beta 1/9) of the deltas of the ground
      truth class (weights `bbox_reg_weights`) on the positive RoIs,
      divided by the number of sampled RoIs.

    With `mask_head=True` the model is Mask R-CNN (He et al., 2017): a
    second RoIAlign (`mask_roi_output_size`, 14) feeds `MaskHead`:
    `mask_head_convs` 3x3 convs, a stride-2 transposed conv and a 1x1 conv
    giving per-class mask logits (28 x 28 by default); `fit` then also
    needs `y["masks"]` [B, M, H, W] (one image-sized binary mask per
    ground-truth row) and adds `loss_mask`, torchvision's per-pixel
    binary cross-entropy of the ground-truth class's logits on the
    positive RoIs against the gt mask
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
        config = _check_arguments(locals())
        components, resolved = build_faster_rcnn_components(config)
        super().__init__(**components, **kwargs)

        # === Config ===
        self._arguments = {**config, **resolved}
        self.num_classes = config["num_classes"]
        self.anchor_sizes = resolved["anchor_sizes"]
        self.spatial_scale = resolved["spatial_scale"]

    def _constructor_config(self) -> dict:
        config = dict(self._arguments)
        for key in ("spatial_scale", "dtype"):  # dtype: see get_config
            config.pop(key)
        if not isinstance(config["backbone"], str):
            config["backbone"] = keras.saving.serialize_keras_object(
                self.backbone
            )
            config["feature_layer_name"] = None
            config["feature_layer_names"] = None
        config["backbone_kwargs"] = config["backbone_kwargs"] or None
        return config


def check_box_stage_arguments(config: dict) -> dict:
    """The arguments every detector of this family shares (backbone, RoI
    pooling, box head training and post-processing; `FasterRCNN`,
    `FastRCNN`, `RCNN`) checked and normalised in `config`, which is
    returned. Errors name the argument."""
    config["num_classes"] = validation.check_num_classes(config["num_classes"])
    image_shape = check_image_shape(config["image_shape"])
    if None in image_shape:
        raise ValueError(
            "Invalid value for argument `image_shape`. Expected a static "
            "(height, width, channels): anchors and box clipping are "
            "constants. "
            f"Received: image_shape={image_shape!r}."
        )
    config["image_shape"] = tuple(image_shape)
    config["roi_op"] = validation.check_one_of(
        config["roi_op"], ROI_OPS, "roi_op"
    )
    config["bounding_box_format"] = _roi_common.check_bounding_box_format(
        config["bounding_box_format"]
    )
    config["backbone"] = check_backbone_argument(config["backbone"])
    config["backbone_kwargs"] = dict(config["backbone_kwargs"] or {})
    config["roi_output_size"] = validation.standardize_size(
        config["roi_output_size"], "roi_output_size"
    )
    config["sampling_ratio"] = validation.check_sampling_ratio(
        config["sampling_ratio"]
    )
    for name in ("box_head_units", "box_batch_size_per_image"):
        config[name] = validation.check_positive_int(config[name], name)
    config["box_positive_fraction"] = check_fraction(
        config["box_positive_fraction"], "box_positive_fraction"
    )
    high, low = check_iou_thresholds(
        config["box_fg_iou_threshold"],
        config["box_bg_iou_threshold"],
        prefix="box_",
    )
    config["box_fg_iou_threshold"] = high
    config["box_bg_iou_threshold"] = low
    config["bbox_reg_weights"] = check_box_coder_weights(
        config["bbox_reg_weights"], "bbox_reg_weights"
    )
    return config


def _check_arguments(arguments: dict) -> dict:
    """The constructor's arguments checked and normalised (errors name
    the argument), without `self`, `kwargs` and `dtype`."""
    config = {
        key: value
        for key, value in arguments.items()
        if key not in ("self", "kwargs", "__class__", "dtype")
    }
    config["dtype"] = arguments["dtype"]
    config = check_box_stage_arguments(config)
    roi_op = config["roi_op"]
    fpn = config["fpn"] = bool(config["fpn"])
    config["fpn_filters"] = validation.check_positive_int(
        config["fpn_filters"], "fpn_filters"
    )
    if fpn and roi_op != "align":
        raise ValueError(
            "Invalid value for argument `roi_op`. Expected 'align' with "
            "fpn=True (the FPN pools with MultiScaleRoIAlign, as "
            f"torchvision). Received: roi_op={roi_op!r}."
        )
    if fpn and config["feature_layer_name"] is not None:
        raise ValueError(
            "Invalid value for argument `feature_layer_name`. Expected "
            "None with fpn=True (name the pyramid inputs with "
            "`feature_layer_names`). Received: "
            f"feature_layer_name={config['feature_layer_name']!r}."
        )
    names = config["feature_layer_names"]
    if not fpn and names is not None:
        raise ValueError(
            "Invalid value for argument `feature_layer_names`. Expected "
            "None with fpn=False (use `feature_layer_name`). Received: "
            f"feature_layer_names={names!r}."
        )
    if names is not None and not isinstance(names, str):
        config["feature_layer_names"] = tuple(names)
    config["rpn_batch_size_per_image"] = validation.check_positive_int(
        config["rpn_batch_size_per_image"], "rpn_batch_size_per_image"
    )
    if config["rpn_filters"] is not None:
        config["rpn_filters"] = validation.check_positive_int(
            config["rpn_filters"], "rpn_filters"
        )
    config["rpn_positive_fraction"] = check_fraction(
        config["rpn_positive_fraction"], "rpn_positive_fraction"
    )
    high, low = check_iou_thresholds(
        config["rpn_fg_iou_threshold"],
        config["rpn_bg_iou_threshold"],
        prefix="rpn_",
    )
    config["rpn_fg_iou_threshold"] = high
    config["rpn_bg_iou_threshold"] = low
    config["mask_head"] = bool(config["mask_head"])
    if config["mask_head"]:
        config["mask_roi_output_size"] = validation.check_positive_int(
            config["mask_roi_output_size"], "mask_roi_output_size"
        )
        config["mask_head_filters"] = validation.check_positive_int(
            config["mask_head_filters"], "mask_head_filters"
        )
        config["mask_head_convs"] = validation.check_int(
            config["mask_head_convs"], "mask_head_convs", minimum=0
        )
    return config


def _build_backbone(config: dict) -> tuple:
    """(backbone, feature_pyramid or None, per-level anchor sizes, the
    RoI levels' spatial scale(s), their channels, the user-facing
    anchor sizes)."""
    dtype, image_shape = config["dtype"], config["image_shape"]
    anchor_sizes = config["anchor_sizes"]
    if config["fpn"]:
        backbone, levels = build_pyramid_backbone(
            config["backbone"],
            image_shape,
            feature_layer_names=config["feature_layer_names"],
            backbone_kwargs=config["backbone_kwargs"],
            dtype=dtype,
        )
        anchor_sizes = fpn_anchor_sizes(anchor_sizes, (*levels, levels[-1] + 1))
        pyramid = FeaturePyramid(
            config["fpn_filters"],
            extra_max_pool=True,
            dtype=dtype,
            name="feature_pyramid",
        )
        scale = [2.0**-k for k in levels]
        return backbone, pyramid, anchor_sizes, scale, config["fpn_filters"]
    if anchor_sizes is None:
        anchor_sizes = (16.0, 32.0, 64.0)
    elif any(isinstance(a, (list, tuple)) for a in anchor_sizes):
        raise ValueError(
            "Invalid value for argument `anchor_sizes`. Expected "
            "numbers (one feature map) with fpn=False. Received: "
            f"anchor_sizes={anchor_sizes!r}."
        )
    backbone = build_feature_backbone(
        config["backbone"],
        image_shape,
        feature_layer_name=config["feature_layer_name"],
        backbone_kwargs=config["backbone_kwargs"],
        dtype=dtype,
    )
    scale, channels = feature_scale_and_channels(backbone, image_shape)
    return backbone, None, tuple(anchor_sizes), scale, channels


def feature_scale_and_channels(backbone, image_shape) -> tuple[float, int]:
    """(spatial scale, channels) of a single-map backbone's features: as
    torchvision's MultiScaleRoIAlign infers it, the scale is the power of
    two nearest to feature size / image size."""
    _, height, _, channels = backbone.outputs[0].shape
    return 2.0 ** round(math.log2(height / image_shape[0])), channels


def _roi_poolers(config: dict, scale) -> dict:
    """The box head's RoI pooler and, with a mask head, the mask branch's
    two (the sampled RoIs in "xyxy"; the detections in the output
    format)."""
    dtype, ratio = config["dtype"], config["sampling_ratio"]
    if isinstance(scale, list):
        pooler_cls, scale_kwargs = MultiScaleRoIAlign, {"spatial_scales": scale}
    else:
        pooler_cls, scale_kwargs = RoIAlign, {"spatial_scale": scale}
    if config["roi_op"] == "pool":
        roi_pooler = RoIPool(
            config["roi_output_size"],
            **scale_kwargs,
            dtype=dtype,
            name="roi_pool",
        )
    else:
        roi_pooler = pooler_cls(
            config["roi_output_size"],
            **scale_kwargs,
            sampling_ratio=ratio,
            aligned=False,
            dtype=dtype,
            name="roi_align",
        )
    poolers = {"roi_pooler": roi_pooler}
    if config.get("mask_head"):
        for key, name, box_format in (
            ("mask_roi_pooler", "mask_roi_align", "xyxy"),
            (
                "mask_detection_pooler",
                "mask_detection_roi_align",
                config["bounding_box_format"],
            ),
        ):
            poolers[key] = pooler_cls(
                config["mask_roi_output_size"],
                **scale_kwargs,
                sampling_ratio=ratio,
                aligned=False,
                bounding_box_format=box_format,
                dtype=dtype,
                name=name,
            )
    return poolers


def build_box_stage_components(config: dict, scale) -> dict:
    """The second stage shared by `FasterRCNN`, `FastRCNN` and `RCNN` from
    checked arguments: `roi_sampler`, `roi_pooler` (plus the mask branch's
    poolers with `config["mask_head"]`), `box_head` and
    `detection_postprocessor`; `scale` is the RoI levels' spatial scale."""
    dtype = config["dtype"]
    return {
        "roi_sampler": RoISampler(
            config["box_fg_iou_threshold"],
            config["box_bg_iou_threshold"],
            batch_size_per_image=config["box_batch_size_per_image"],
            positive_fraction=config["box_positive_fraction"],
            bbox_reg_weights=config["bbox_reg_weights"],
            mask_target_size=(
                2 * config["mask_roi_output_size"]
                if config.get("mask_head")
                else None
            ),
            sampling_ratio=config["sampling_ratio"],
            seed=None if config["seed"] is None else config["seed"] + 1,
            name="roi_sampler",
        ),
        **_roi_poolers(config, scale),
        "box_head": BoxHead(
            config["num_classes"],
            units=config["box_head_units"],
            dtype=dtype,
            name="box_head",
        ),
        "detection_postprocessor": DetectionPostprocessor(
            config["image_shape"][:2],
            bbox_reg_weights=config["bbox_reg_weights"],
            score_threshold=config["box_score_threshold"],
            nms_threshold=config["box_nms_threshold"],
            max_detections=config["max_detections"],
            bounding_box_format=config["bounding_box_format"],
            dtype=dtype,
            name="detections",
        ),
    }


def build_faster_rcnn_components(config: dict) -> tuple[dict, dict]:
    """The components of `FasterRCNN` from its checked arguments.

    Returns:
        Tuple `(components, resolved)`: the `TwoStageDetector` arguments,
        and the resolved `anchor_sizes` and `spatial_scale`.
    """
    dtype, image_size = config["dtype"], config["image_shape"][:2]
    backbone, pyramid, anchor_sizes, scale, channels = _build_backbone(config)
    # A single-level detector's generator gets its sizes as one level.
    level_sizes = anchor_sizes if pyramid else (anchor_sizes,)
    seed = config["seed"]
    components = {
        "backbone": backbone,
        "feature_pyramid": pyramid,
        "rpn_head": RPNHead(
            num_anchors_per_location(level_sizes[0], config["aspect_ratios"]),
            filters=config["rpn_filters"] or channels,
            dtype=dtype,
            name="rpn_head",
        ),
        "proposal_generator": ProposalGenerator(
            image_size,
            level_sizes,
            config["aspect_ratios"],
            pre_nms_top_n_train=config["rpn_pre_nms_top_n_train"],
            pre_nms_top_n_test=config["rpn_pre_nms_top_n_test"],
            post_nms_top_n_train=config["rpn_post_nms_top_n_train"],
            post_nms_top_n_test=config["rpn_post_nms_top_n_test"],
            nms_threshold=config["rpn_nms_threshold"],
            min_size=config["rpn_min_size"],
            dtype=dtype,
            name="proposal_generator",
        ),
        "anchor_labeler": AnchorLabeler(
            config["rpn_fg_iou_threshold"],
            config["rpn_bg_iou_threshold"],
            batch_size_per_image=config["rpn_batch_size_per_image"],
            positive_fraction=config["rpn_positive_fraction"],
            seed=seed,
            name="anchor_labeler",
        ),
        **build_box_stage_components(config, scale),
    }
    if config["mask_head"]:
        components["mask_head"] = MaskHead(
            config["num_classes"],
            filters=config["mask_head_filters"],
            num_convs=config["mask_head_convs"],
            dtype=dtype,
            name="mask_head",
        )
        components["mask_postprocessor"] = MaskPostprocessor(
            image_size,
            bounding_box_format=config["bounding_box_format"],
            dtype=dtype,
            name="detection_masks",
        )
    generator = components["proposal_generator"]
    postprocessor = components["detection_postprocessor"]
    resolved = {  # the arguments as the components normalised them
        "anchor_sizes": generator.anchor_sizes
        if pyramid
        else tuple(float(s) for s in anchor_sizes),
        "aspect_ratios": generator.aspect_ratios,
        "spatial_scale": scale,
        "box_score_threshold": postprocessor.score_threshold,
        "box_nms_threshold": postprocessor.nms_threshold,
        "max_detections": postprocessor.max_detections,
    }
    for name in (
        "pre_nms_top_n_train",
        "pre_nms_top_n_test",
        "post_nms_top_n_train",
        "post_nms_top_n_test",
        "nms_threshold",
        "min_size",
    ):
        resolved[f"rpn_{name}"] = getattr(generator, name)
    return components, resolved
