"""Encoders for the segmentation models: a small VGG and keras.applications.

Every backbone returned here takes float images in 0..255 [B, H, W, 3] and
returns its stride-32 features; the layers at stride 8 and 16 that FCN
fuses ("pool3" and "pool4" in Long et al., 2015) are found by name.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import keras

from keras_segattn import validation
from keras_segattn.models.blocks import apply_conv_block
from keras_segattn.models.blocks import apply_residual_block

VGG_SMALL = "vgg_small"
VGG_SMALL_SKIP_LAYER_NAMES = ("block3_pool", "block4_pool")
RESNET_SMALL = "resnet_small"
RESNET_SMALL_SKIP_LAYER_NAMES = ("stage3_out", "stage4_out")
# Backbones whose stride-s maps have ceil(H / s) rows ("same" pools and
# strided convolutions): any input size works without padding.
CEIL_MODE_BACKBONES = (VGG_SMALL, RESNET_SMALL)

# Per `keras.applications` model: the `preprocess_input` mode of its module
# ("caffe": RGB -> BGR and ImageNet mean subtraction, "tf": to [-1, 1],
# "torch": to [0, 1] then ImageNet mean/std, None: the model normalises
# inside) and its default skip layers at stride 8 and 16 (checked by
# building each one).
_APPLICATIONS = {
    "VGG16": ("caffe", ("block3_pool", "block4_pool")),
    "VGG19": ("caffe", ("block3_pool", "block4_pool")),
    "ResNet50": ("caffe", ("conv3_block4_out", "conv4_block6_out")),
    "ResNet101": ("caffe", ("conv3_block4_out", "conv4_block23_out")),
    "ResNet152": ("caffe", ("conv3_block8_out", "conv4_block36_out")),
    "ResNet50V2": (
        "tf",
        ("conv3_block4_preact_relu", "conv4_block6_preact_relu"),
    ),
    "MobileNet": ("tf", ("conv_pw_5_relu", "conv_pw_11_relu")),
    "MobileNetV2": ("tf", ("block_5_add", "block_12_add")),
    # The lectures' backbone: the last Inception-ResNet-A and -B blocks are
    # the stride-8 and 16 features (rebuilt with "same" padding, see
    # `_ALIGNED_APPLICATIONS`).
    "InceptionResNetV2": ("tf", ("block35_10_ac", "block17_20_ac")),
    "DenseNet121": ("torch", ("pool3_relu", "pool4_relu")),
    "DenseNet169": ("torch", ("pool3_relu", "pool4_relu")),
    "DenseNet201": ("torch", ("pool3_relu", "pool4_relu")),
    **{
        f"EfficientNetB{i}": (
            None,
            ("block4a_expand_activation", "block6a_expand_activation"),
        )
        for i in range(8)
    },
}
# Applications whose stem and reduction blocks use "valid" convolutions
# and pools: their maps are smaller than H / stride and offset (at 128 px,
# 13, 6 and 2 rows at strides 8, 16 and 32, the first one centred on input
# row 13), which FCN's top-left-aligned crops and the detectors' anchor
# grids cannot use. They are rebuilt with "same" padding everywhere, TF-Slim's
# `align_feature_maps=True` (tensorflow/models: research/slim/nets/
# inception_resnet_v2.py, used by the TF Object Detection API's Faster R-CNN
# Inception-ResNet-v2), which keeps every weight shape, so any weights load.
_ALIGNED_APPLICATIONS = ("InceptionResNetV2",)
DEFAULT_SKIP_LAYER_NAMES = {
    VGG_SMALL: VGG_SMALL_SKIP_LAYER_NAMES,
    RESNET_SMALL: RESNET_SMALL_SKIP_LAYER_NAMES,
    **{name: skips for name, (_, skips) in _APPLICATIONS.items()},
}

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def check_image_shape(image_shape) -> tuple:
    """Returns `image_shape` as a tuple (H, W, C) or raises `ValueError`."""
    if (
        not isinstance(image_shape, (tuple, list))
        or len(image_shape) != 3
        or not all(
            d is None
            or (isinstance(d, int) and not isinstance(d, bool) and d > 0)
            for d in image_shape
        )
        or image_shape[-1] is None
    ):
        raise ValueError(
            "Invalid value for argument `image_shape`. Expected a tuple "
            "(height, width, channels) of positive ints, height and width "
            f"may be None. Received: image_shape={image_shape!r}."
        )
    return tuple(image_shape)


def pad_to_stride(images, image_shape: tuple, stride: int, name: str, dtype):
    """Zero-pads `images` at the bottom and right so that the static sizes
    of `image_shape` are multiples of `stride` (backbones that round sizes
    down then keep every pixel; the decoder crops back).

    Returns `(padded images, padded (H, W, C))`; unknown sizes stay None
    and are not padded.
    """
    padding = tuple(
        0 if size is None else -size % stride for size in image_shape[:2]
    )
    padded_shape = tuple(
        None if size is None else size + pad
        for size, pad in zip(image_shape[:2], padding, strict=True)
    ) + (image_shape[2],)
    if any(padding):
        images = keras.layers.ZeroPadding2D(
            ((0, padding[0]), (0, padding[1])), name=name, dtype=dtype
        )(images)
    return images, padded_shape


def _standardize_per_stage(value, num_stages: int, name: str) -> tuple:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * num_stages
    if not isinstance(value, (tuple, list)) or len(value) != num_stages:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected an int or "
            f"{num_stages} ints (one per stage). Received: {name}={value!r}."
        )
    return tuple(validation.check_positive_int(v, name) for v in value)


def _five_stage_inputs(image_shape, filters, per_stage, per_stage_name, dtype):
    """Checks a five-stage encoder's arguments; returns `(images input, the
    images rescaled to 0..1, filters, per_stage)`."""
    image_shape = check_image_shape(image_shape)
    if not isinstance(filters, (tuple, list)) or len(filters) != 5:
        raise ValueError(
            "Invalid value for argument `filters`. Expected 5 ints > 0 "
            f"(one per stage). Received: filters={filters!r}."
        )
    filters = _standardize_per_stage(tuple(filters), 5, "filters")
    per_stage = _standardize_per_stage(per_stage, 5, per_stage_name)
    images = keras.Input(image_shape, name="images")
    x = keras.layers.Rescaling(
        1.0 / 255.0, name="preprocess_rescaling", dtype=dtype
    )(images)
    return images, x, filters, per_stage


def build_vgg_small_backbone(
    image_shape: Sequence[int | None] = (None, None, 3),
    filters: Sequence[int] = (32, 64, 128, 192, 256),
    convs_per_stage: int | Sequence[int] = (2, 2, 3, 3, 3),
    dtype=None,
    name: str = VGG_SMALL,
) -> keras.Model:
    """Builds a small VGG-style encoder with batch normalisation.

    VGG16's layout (Simonyan and Zisserman, 2015) at a fraction of its width
    (about 2.9M parameters by default instead of 14.7M), with BatchNorm
    after every convolution so that it trains from scratch on a CPU. Five
    stages of `convs_per_stage` Conv3x3-BN-ReLU units (`block{i}_conv{j}`,
    `block{i}_bn{j}`, `block{i}_relu{j}`), each followed by a 2x2 max pool
    `block{i}_pool`, named as in `keras.applications.VGG16`. The pools use
    `padding="same"`, so every stride-s map has `ceil(H / s)` rows and any
    input size works with FCN's crops.

    Args:
        image_shape: (H, W, C); H and W may be None.
        filters: 5 ints > 0, the width of each stage.
        convs_per_stage: int or 5 ints > 0.
        dtype: dtype or dtype policy of every layer.
        name: model name.

    Returns:
        A functional `keras.Model` with input `"images"` (float, 0..255,
        rescaled to 0..1 by its first layer `preprocess_rescaling`) and
        output `block5_pool` [B, ceil(H / 32), ceil(W / 32), filters[4]].

    Raises:
        ValueError: on a bad `image_shape`, `filters` or `convs_per_stage`.

    Reference:
        - [Simonyan and Zisserman, "Very Deep Convolutional Networks for
          Large-Scale Image Recognition", ICLR 2015](
          https://arxiv.org/abs/1409.1556)
    """
    images, x, filters, convs_per_stage = _five_stage_inputs(
        image_shape, filters, convs_per_stage, "convs_per_stage", dtype
    )
    for stage, (width, num_convs) in enumerate(
        zip(filters, convs_per_stage, strict=True), start=1
    ):
        x = apply_conv_block(
            x, width, num_convs, name=f"block{stage}", dtype=dtype
        )
        x = keras.layers.MaxPooling2D(
            2, padding="same", name=f"block{stage}_pool", dtype=dtype
        )(x)
    return keras.Model(images, x, name=name)


def build_resnet_small_backbone(
    image_shape: Sequence[int | None] = (None, None, 3),
    filters: Sequence[int] = (32, 64, 128, 192, 256),
    blocks_per_stage: int | Sequence[int] = 2,
    dtype=None,
    name: str = RESNET_SMALL,
) -> keras.Model:
    """Builds a small residual encoder (ResNet basic blocks, BatchNorm).

    A stride-32 ResNet (He et al., 2016) sized for training from scratch on
    a CPU, the "stronger encoder with batch norm and residual blocks" for
    FCN, Hypercolumn and the detectors: a 3x3 Conv-BN-ReLU stem at full
    resolution (`stem_conv1`, `stem_bn1`, `stem_relu1`), then five stages
    of `blocks_per_stage` `apply_residual_block`s, the first of each with
    stride 2 (`stage{i}_block{j}_*`), each stage ending in an `Identity`
    layer `stage{i}_out` at stride 2**i. Strided
    convolutions use "same" padding, so every stride-s map has
    `ceil(H / s)` rows and any input size works with FCN's crops, as with
    `build_vgg_small_backbone`. With the defaults it has about 4.3M
    parameters.

    Args:
        image_shape: (H, W, C); H and W may be None.
        filters: 5 ints > 0, the width of each stage.
        blocks_per_stage: int or 5 ints > 0.
        dtype: dtype or dtype policy of every layer.
        name: model name.

    Returns:
        A functional `keras.Model` with input `"images"` (float, 0..255,
        rescaled to 0..1 by `preprocess_rescaling`) and output
        `stage5_out` [B, ceil(H / 32), ceil(W / 32), filters[4]]; FCN's
        skips are `RESNET_SMALL_SKIP_LAYER_NAMES` ("stage3_out",
        "stage4_out", strides 8 and 16).

    Raises:
        ValueError: on a bad `image_shape`, `filters` or
            `blocks_per_stage`.

    Reference:
        - [He, Zhang, Ren and Sun, "Deep Residual Learning for Image
          Recognition", CVPR 2016](https://arxiv.org/abs/1512.03385)
    """
    images, x, filters, blocks_per_stage = _five_stage_inputs(
        image_shape, filters, blocks_per_stage, "blocks_per_stage", dtype
    )
    x = apply_conv_block(x, filters[0], 1, name="stem", dtype=dtype)
    for stage, (width, num_blocks) in enumerate(
        zip(filters, blocks_per_stage, strict=True), start=1
    ):
        for block in range(1, num_blocks + 1):
            x = apply_residual_block(
                x,
                width,
                strides=2 if block == 1 else 1,
                name=f"stage{stage}_block{block}",
                dtype=dtype,
            )
        x = keras.layers.Identity(name=f"stage{stage}_out", dtype=dtype)(x)
    return keras.Model(images, x, name=name)


def _apply_preprocessing(images, mode, dtype):
    """`keras.applications.<family>.preprocess_input` as plain layers."""
    if mode is None:
        return images
    if mode == "tf":
        return keras.layers.Rescaling(
            1.0 / 127.5, offset=-1.0, name="preprocess_rescaling", dtype=dtype
        )(images)
    if mode == "torch":
        x = keras.layers.Rescaling(
            1.0 / 255.0, name="preprocess_rescaling", dtype=dtype
        )(images)
        return keras.layers.Normalization(
            mean=list(_TORCH_MEAN),
            variance=[s * s for s in _TORCH_STD],
            name="preprocess_normalization",
            dtype=dtype,
        )(x)
    # "caffe": a fixed 1x1 convolution swaps RGB -> BGR and subtracts the
    # BGR ImageNet mean (no `Lambda`, which safe-mode loading rejects).
    permutation = [
        [[[1.0 if i == 2 - o else 0.0 for o in range(3)] for i in range(3)]]
    ]
    return keras.layers.Conv2D(
        3,
        1,
        kernel_initializer=keras.initializers.Constant(permutation),
        bias_initializer=keras.initializers.Constant(
            [-m for m in _CAFFE_MEAN_BGR]
        ),
        trainable=False,
        name="preprocess_caffe_bgr",
        dtype=dtype,
    )(images)


def _same_padding_layer(layer):
    config = layer.get_config()
    if config.get("padding") == "valid":
        config["padding"] = "same"
    return layer.__class__.from_config(config)


def _with_same_padding(model: keras.Model) -> keras.Model:
    """`model` rebuilt with every "valid" convolution and pool "same" (its
    weights copied), so a stride-s map has ceil(H / s) rows aligned at the
    top left, as in `"vgg_small"`."""
    aligned = keras.models.clone_model(
        model, clone_function=_same_padding_layer
    )
    aligned.set_weights(model.get_weights())
    return aligned


def _known_backbone_names() -> list:
    return [VGG_SMALL, RESNET_SMALL, *_APPLICATIONS]


def _is_application_name(name: str) -> bool:
    return name[:1].isupper() and callable(
        getattr(keras.applications, name, None)
    )


HUB_PYRAMID_LEVELS = ("P2", "P3", "P4", "P5")
"""The `pyramid_outputs` of a keras-hub backbone used here, finest first."""
HUB_SKIP_LAYER_NAMES = ("P3", "P4")
"""FCN's stride-8 and stride-16 skips on a keras-hub backbone."""


def is_hub_backbone(backbone) -> bool:
    """True for a `keras_hub.models.Backbone` (keras-hub is optional and
    only looked up when the caller has imported it)."""
    keras_hub = sys.modules.get("keras_hub")
    return keras_hub is not None and isinstance(
        backbone, keras_hub.models.Backbone
    )


def _hub_pyramid_model(backbone, image_shape, preprocessing, dtype):
    """images 0..255 -> P2-P5 of a keras-hub backbone's `pyramid_outputs`,
    as outputs of `Identity` layers named "P2".."P5"."""
    pyramid = getattr(backbone, "pyramid_outputs", None)
    if not isinstance(pyramid, dict) or not all(
        level in pyramid for level in HUB_PYRAMID_LEVELS
    ):
        raise ValueError(
            "Invalid value for argument `backbone`. Expected a keras-hub "
            "backbone with `pyramid_outputs` P2-P5 (strides 4 to 32), such "
            "as `keras_hub.models.ResNetBackbone`. Received: "
            f"{type(backbone).__name__} {backbone.name!r} with "
            f"pyramid_outputs={None if pyramid is None else sorted(pyramid)}."
        )
    if preprocessing not in (None, "caffe", "tf", "torch"):
        raise ValueError(
            "Invalid value for argument `backbone_kwargs['preprocessing']`. "
            "Expected None, 'caffe', 'tf' or 'torch'. Received: "
            f"preprocessing={preprocessing!r}."
        )
    levels = keras.Model(
        backbone.inputs,
        [pyramid[level] for level in HUB_PYRAMID_LEVELS],
        name=f"{backbone.name}_pyramid",
    )
    images = keras.Input(image_shape, name="images")
    outputs = levels(_apply_preprocessing(images, preprocessing, dtype))
    outputs = [
        keras.layers.Identity(name=level, dtype=dtype)(output)
        for level, output in zip(HUB_PYRAMID_LEVELS, outputs, strict=True)
    ]
    return keras.Model(images, outputs, name=backbone.name)


def get_backbone(
    backbone: str | keras.Model = VGG_SMALL,
    image_shape: Sequence[int | None] = (None, None, 3),
    skip_layer_names: Sequence[str] | None = None,
    weights: str | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    dtype=None,
) -> tuple[keras.Model, tuple[str, ...]]:
    """Resolves a backbone argument to a model and its FCN skip layers.

    Args:
        backbone: one of
            - `"vgg_small"`: `build_vgg_small_backbone` (no pretrained
              weights);
            - `"resnet_small"`: `build_resnet_small_backbone` (no
              pretrained weights);
            - a `keras.applications` model name (`"VGG16"`, `"ResNet50"`,
              `"MobileNetV2"`, `"EfficientNetB0"`, ...), built with
              `include_top=False`. Default skip layers exist for
              `DEFAULT_SKIP_LAYER_NAMES`; any other application needs
              `skip_layer_names`. The model is preceded by layers doing its
              `preprocess_input` (`preprocess_rescaling`,
              `preprocess_normalization` or `preprocess_caffe_bgr`), so it
              takes 0..255 images like every backbone here; applications
              outside the table (and EfficientNets, which normalise
              inside) get the images unchanged;
            - a `keras_hub.models.Backbone` with `pyramid_outputs` (e.g.
              `keras_hub.models.ResNetBackbone.from_preset(...)`): the
              returned model has one output per level P2-P5 (`Identity`
              layers named "P2".."P5", strides 4 to 32, the stride-32 one
              last) and the skips "P3" and "P4". The images are
              preprocessed by `backbone_kwargs["preprocessing"]`:
              `"torch"` (default: scale to [0, 1], then ImageNet mean and
              std), `"tf"` ([-1, 1]), `"caffe"` or None (unchanged); match
              it to the `image_converter` of the preset;
            - a `keras.Model` (used as is: it must take the images it will
              be given and output its stride-32 features).
        image_shape: (H, W, C) of the images; H and W may be None.
        skip_layer_names: names of the layers at stride 8 and 16 (FCN's
            pool3 and pool4), ordered by stride; None for the default.
        weights: `keras.applications` weights (`None` or a file path; this
            machine has no network for `"imagenet"`). Must be None for
            `"vgg_small"` and for a `keras.Model`.
        backbone_kwargs: extra keyword arguments for
            `build_vgg_small_backbone` (e.g. `filters`) or the
            `keras.applications` constructor (e.g. `alpha`).
        dtype: dtype or dtype policy of the layers this function creates
            (`"vgg_small"` and the preprocessing). `keras.applications`
            models take no `dtype`: set a global policy for them.

    Returns:
        Tuple `(model, skip_layer_names)`: a functional model mapping the
        images [B, H, W, C] to the stride-32 features, and the tuple of
        skip layer names (empty when a `keras.Model` or an application
        without defaults is given no `skip_layer_names`).

    Raises:
        ValueError: on an unknown backbone name, a bad `image_shape`,
            `weights` given where none apply, or a skip layer name missing
            from the model.
        TypeError: if `backbone` is neither a string nor a `keras.Model`.
    """
    image_shape = check_image_shape(image_shape)
    backbone_kwargs = dict(backbone_kwargs or {})
    if is_hub_backbone(backbone):
        preprocessing = backbone_kwargs.pop("preprocessing", "torch")
        if weights is not None or backbone_kwargs:
            raise ValueError(
                "Invalid value for argument `weights`/`backbone_kwargs`. "
                "Expected None and at most {'preprocessing': ...} for a "
                "keras-hub backbone (load its weights with from_preset). "
                f"Received: weights={weights!r}, "
                f"backbone_kwargs={backbone_kwargs!r}."
            )
        model = _hub_pyramid_model(backbone, image_shape, preprocessing, dtype)
        default_skips = HUB_SKIP_LAYER_NAMES
    elif isinstance(backbone, keras.Model):
        if weights is not None or backbone_kwargs:
            raise ValueError(
                "Invalid value for argument `weights`/`backbone_kwargs`. "
                "Expected None when `backbone` is a keras.Model (load its "
                f"weights yourself). Received: weights={weights!r}, "
                f"backbone_kwargs={backbone_kwargs!r}."
            )
        model = backbone
        default_skips = ()
    elif isinstance(backbone, str):
        if backbone == VGG_SMALL:
            if weights is not None:
                raise ValueError(
                    "Invalid value for argument `weights`. Expected None "
                    "for backbone='vgg_small' (it has no pretrained "
                    f"weights). Received: weights={weights!r}."
                )
            model = build_vgg_small_backbone(
                image_shape, dtype=dtype, **backbone_kwargs
            )
        elif backbone == RESNET_SMALL:
            if weights is not None:
                raise ValueError(
                    "Invalid value for argument `weights`. Expected None "
                    "for backbone='resnet_small' (it has no pretrained "
                    f"weights). Received: weights={weights!r}."
                )
            model = build_resnet_small_backbone(
                image_shape, dtype=dtype, **backbone_kwargs
            )
        elif _is_application_name(backbone):
            mode = _APPLICATIONS.get(backbone, (None, ()))[0]
            images = keras.Input(image_shape, name="images")
            model = getattr(keras.applications, backbone)(
                include_top=False,
                weights=weights,
                input_tensor=_apply_preprocessing(images, mode, dtype),
                input_shape=image_shape,
                **backbone_kwargs,
            )
            if backbone in _ALIGNED_APPLICATIONS:
                model = _with_same_padding(model)
        else:
            raise ValueError(
                "Invalid value for argument `backbone`. Expected 'vgg_small', "
                "'resnet_small', "
                "a keras.applications model name (with default skip layers: "
                f"{_known_backbone_names()}) or a keras.Model. "
                f"Received: backbone={backbone!r}."
            )
        default_skips = DEFAULT_SKIP_LAYER_NAMES.get(backbone, ())
    else:
        raise TypeError(
            "Invalid type for argument `backbone`. Expected a string or a "
            f"keras.Model. Received: type(backbone)={type(backbone).__name__}."
        )

    if skip_layer_names is None:
        skip_layer_names = default_skips
    if isinstance(skip_layer_names, str) or not all(
        isinstance(n, str) for n in skip_layer_names
    ):
        raise ValueError(
            "Invalid value for argument `skip_layer_names`. Expected a "
            "sequence of layer names ordered by stride (stride 8, stride "
            f"16). Received: skip_layer_names={skip_layer_names!r}."
        )
    skip_layer_names = tuple(skip_layer_names)
    available = [layer.name for layer in model.layers]
    for layer_name in skip_layer_names:
        if layer_name not in available:
            hint = [n for n in available if "pool" in n or "add" in n]
            hint = (hint or available)[-8:]
            raise ValueError(
                "Invalid value for argument `skip_layer_names`. Expected "
                f"names of layers of the backbone {model.name!r}. Layer "
                f"{layer_name!r} does not exist; available layers include "
                f"{hint}. Received: skip_layer_names={skip_layer_names!r}."
            )
    return model, skip_layer_names
