"""Hypercolumn segmentation (Hariharan et al., 2015)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from keras_segattn import validation
from keras_segattn.layers.dropout import Dropout
from keras_segattn.layers.hypercolumn import Hypercolumn
from keras_segattn.models.backbones import VGG_SMALL
from keras_segattn.models.backbones import check_image_shape
from keras_segattn.models.backbones import get_backbone
from keras_segattn.validation import check_num_classes

DEFAULT_HYPERCOLUMN_LAYER_NAMES = ("block2_pool", "block3_pool", "block4_pool")


def check_layer_names(model: keras.Model, layer_names) -> tuple[str, ...]:
    """Returns `layer_names` as a tuple, or raises `ValueError` naming
    `layer_names` (and some available layers) unless each is a layer of
    `model`."""
    if (
        isinstance(layer_names, str)
        or not isinstance(layer_names, (tuple, list))
        or not layer_names
        or not all(isinstance(n, str) for n in layer_names)
    ):
        raise ValueError(
            "Invalid value for argument `layer_names`. Expected a non-empty "
            "sequence of layer names of the backbone. Received: "
            f"layer_names={layer_names!r}."
        )
    available = [layer.name for layer in model.layers]
    missing = [n for n in layer_names if n not in available]
    if missing:
        hint = [n for n in available if "pool" in n or "relu" in n]
        hint = (hint or available)[-10:]
        raise ValueError(
            "Invalid value for argument `layer_names`. Expected names of "
            f"layers of the backbone {model.name!r}; missing: {missing}. "
            f"Available layers include {hint}. Received: "
            f"layer_names={tuple(layer_names)!r}."
        )
    return tuple(layer_names)


def build_hypercolumn_segmenter(
    num_classes: int,
    backbone: str | keras.Model = VGG_SMALL,
    layer_names: Sequence[str] = DEFAULT_HYPERCOLUMN_LAYER_NAMES,
    image_shape: Sequence[int] = (64, 64, 3),
    head_filters: int | None = 64,
    dropout: float = 0.0,
    backbone_kwargs: dict[str, Any] | None = None,
    weights: str | None = None,
    dtype=None,
    name: str = "hypercolumn_segmenter",
) -> keras.Model:
    """Builds a hypercolumn segmentation network.

    Hariharan et al. (2015): the features of `layer_names` (any layers of
    the backbone, e.g. pool2, pool3, pool4 of a VGG) are resized to the
    resolution of the first of them and concatenated per pixel
    (`Hypercolumn`, layer `hypercolumn`); a per-pixel classifier
    (`head_hidden`, a 1x1 conv + ReLU `head_filters` wide, optional
    `head_dropout`, then `head_logits`) scores the classes on that grid,
    `upsample_logits` resizes the scores bilinearly to the image (the
    paper's coarse grid upsampled to the image), and `mask_probs` is the
    float32 softmax. The backbone is wrapped as one sub-model
    `backbone_features` returning the chosen layers' outputs.

    Args:
        num_classes: int >= 1.
        backbone: `"vgg_small"`, a `keras.applications` name or a
            functional `keras.Model` (see `get_backbone`).
        layer_names: non-empty names of backbone layers, finest first by
            convention (the first sets the hypercolumn grid).
        image_shape: (H, W, C), static.
        head_filters: int > 0 or None (a linear classifier).
        dropout: float in [0, 1) after `head_hidden`.
        backbone_kwargs: extra arguments of the backbone constructor, e.g.
            `{"filters": (8, 16, 32, 32, 64)}` for `"vgg_small"`.
        weights: `keras.applications` weights (None here: no network).
        dtype: dtype or dtype policy of every layer built here.
        name: model name.

    Returns:
        A functional `keras.Model` taking `"images"` float [B, H, W, C] in
        0..255 and returning `"mask_probs"` float32 [B, H, W, num_classes].

    Raises:
        ValueError: on `num_classes < 1`, a bad or dynamic `image_shape`,
            an unknown backbone, names in `layer_names` missing from the
            backbone (the message lists some available names), or a bad
            `head_filters` or `dropout`.

    Reference:
        - [Hariharan, Arbeláez, Girshick and Malik, "Hypercolumns for Object
          Segmentation and Fine-grained Localization", CVPR 2015](
          https://arxiv.org/abs/1411.5752)
    """
    num_classes = check_num_classes(num_classes)
    image_shape = check_image_shape(image_shape)
    if None in image_shape:
        raise ValueError(
            "Invalid value for argument `image_shape`. Expected a static "
            "(height, width, channels): the hypercolumn grid is static. "
            f"Received: image_shape={image_shape!r}."
        )
    validation.check_rate(dropout, "dropout")
    backbone_model, _ = get_backbone(
        backbone,
        image_shape,
        skip_layer_names=(),
        weights=weights,
        backbone_kwargs=backbone_kwargs,
        dtype=dtype,
    )
    layer_names = check_layer_names(backbone_model, layer_names)
    features_model = keras.Model(
        backbone_model.inputs[0],
        [backbone_model.get_layer(n).output for n in layer_names],
        name="backbone_features",
    )

    images = keras.Input(image_shape, name="images")
    features = features_model(images)
    features = features if isinstance(features, (list, tuple)) else [features]
    x = Hypercolumn(reference_index=0, name="hypercolumn", dtype=dtype)(
        list(features)
    )
    if head_filters is not None:
        head_filters = validation.check_positive_int(
            head_filters, "head_filters"
        )
        x = keras.layers.Conv2D(
            head_filters, 1, activation="relu", name="head_hidden", dtype=dtype
        )(x)
        if dropout:
            x = Dropout(dropout, name="head_dropout", dtype=dtype)(x)
    x = keras.layers.Conv2D(num_classes, 1, name="head_logits", dtype=dtype)(x)
    if tuple(x.shape[1:3]) != image_shape[:2]:
        x = keras.layers.Resizing(
            *image_shape[:2],
            interpolation="bilinear",
            name="upsample_logits",
            dtype=dtype,
        )(x)
    probs = keras.layers.Softmax(dtype="float32", name="mask_probs")(x)
    return keras.Model(images, probs, name=name)
