"""Detector backbones: images to a list of feature levels with static sizes.

A detector (`FasterRCNN`, `TwoStageDetector`) always receives a backbone
that returns a list of maps, finest first: one map for a single-level
detector (torchvision's C4 layout) and C2-C5 (or C3-C5) for a Feature
Pyramid Network, which `FeaturePyramid` turns into P2-P6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras

from keras_segattn.models.backbones import DEFAULT_SKIP_LAYER_NAMES
from keras_segattn.models.backbones import VGG_SMALL
from keras_segattn.models.backbones import get_backbone
from keras_segattn.models.backbones import is_hub_backbone

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


def build_feature_backbone(
    backbone: str | keras.Model = VGG_SMALL,
    image_shape: Sequence[int] = (128, 128, 3),
    feature_layer_name: str | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    dtype=None,
) -> keras.Model:
    """The backbone of a single-level detector: images [B, H, W, 3] in
    0..255 to one feature map [B, h, w, C] with a static size (a list of
    one level for `TwoStageDetector`; Keras returns a one-output model's
    output unwrapped).

    `backbone` is resolved by `get_backbone` (`"vgg_small"`, a
    `keras.applications` name or a `keras.Model`) and cut at
    `feature_layer_name`: by default `"block3_pool"` (stride 8) for
    `"vgg_small"`, the stride-16 layer of `DEFAULT_SKIP_LAYER_NAMES` for a
    known application (torchvision's C4 features), `"P4"` (stride 16) of
    a keras-hub backbone's `pyramid_outputs`, the model's output
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
    elif feature_layer_name is None and is_hub_backbone(backbone):
        feature_layer_name = "P4"  # stride 16, torchvision's C4
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
    `feature_layer_names` is used as it is; so is a keras-hub backbone,
    whose `pyramid_outputs` P2-P5 `get_backbone` makes the outputs.

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


def fpn_anchor_sizes(anchor_sizes, rpn_levels: Sequence[int]) -> tuple:
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
