"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer and Darrell, 2015)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from keras_segattn.models.backbones import CEIL_MODE_BACKBONES
from keras_segattn.models.backbones import VGG_SMALL
from keras_segattn.models.backbones import check_image_shape
from keras_segattn.models.backbones import get_backbone
from keras_segattn.models.backbones import is_hub_backbone
from keras_segattn.models.backbones import pad_to_stride
from keras_segattn.models.blocks import apply_fcn_decoder
from keras_segattn.models.blocks import check_fcn_variant
from keras_segattn.models.blocks import check_num_classes

_NUM_SKIPS = {"32s": 0, "16s": 1, "8s": 2}
_OUTPUT_STRIDE = 32


def _single(tensors, what: str, model_name: str):
    tensors = tensors if isinstance(tensors, (list, tuple)) else [tensors]
    if len(tensors) != 1:
        raise ValueError(
            f"Invalid value for argument `backbone`. Expected a model with "
            f"one {what}. Received: model {model_name!r} with "
            f"{len(tensors)} {what}s."
        )
    return tensors[0]


def FCN(
    num_classes: int,
    backbone: str | keras.Model = VGG_SMALL,
    variant: str = "8s",
    image_shape: Sequence[int | None] = (None, None, 3),
    skip_layer_names: Sequence[str] | None = None,
    weights: str | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    head_filters: int | None = None,
    dropout: float = 0.5,
    trainable_final_upsampling: bool = False,
    dtype=None,
    name: str | None = None,
) -> keras.Model:
    """Builds a Fully Convolutional Network for semantic segmentation.

    The three nets of Long et al. (2015), as in
    shelhamer/fcn.berkeleyvision.org: voc-fcn{32,16,8}s/net.py, on any
    backbone (see `get_backbone`), decoded by `apply_fcn_decoder`:

    - `"32s"`: class scores on the stride-32 features, upsampled 32x;
    - `"16s"`: plus `fcn_score_pool4`, fused with the 2x-upsampled scores
      at stride 16, then upsampled 16x;
    - `"8s"`: plus `fcn_score_pool3`, fused at stride 8, upsampled 8x.

    The 2x upsamplings are learned `Conv2DTranspose` layers initialised to
    bilinear interpolation; the final one is fixed bilinear (as in FCN)
    unless `trainable_final_upsampling`. Every fusion crops with
    `CropToMatch` and the output is cropped to the image, so any height
    and width work with `"vgg_small"` (its pools round up). Other
    backbones may round down (VGG16, MobileNet, DenseNet, EfficientNet);
    for them a static `image_shape` that is not a multiple of 32 is
    zero-padded at the bottom and right (`fcn_pad_images`) and cropped back,
    and with a dynamic one H and W must be multiples of 32 (ResNets round up
    and take any size).

    Args:
        num_classes: int >= 1. Number of classes (void excluded).
        backbone: `"vgg_small"`, a `keras.applications` model name, a
            `keras_hub.models.Backbone` with `pyramid_outputs` (P3 and P4
            are the skips, P5 the features) or a functional `keras.Model`;
            see `get_backbone`.
        variant: `"32s"`, `"16s"` or `"8s"`.
        image_shape: (H, W, C); H and W may be None.
        skip_layer_names: layer names at stride 8 and 16 (pool3, pool4),
            ordered by stride; None for the backbone's defaults. `"16s"`
            uses the last name only, `"32s"` none.
        weights: `keras.applications` weights (None here: no network).
        backbone_kwargs: extra arguments of the backbone constructor, e.g.
            `{"filters": (8, 16, 32, 32, 64)}` for `"vgg_small"`.
        head_filters: int or None. Width of the fc6/fc7 convolutions of the
            convolutionalised classifier; None puts the score layer
            directly on the backbone output.
        dropout: float in [0, 1). Dropout after fc6 and fc7.
        trainable_final_upsampling: bool. Learn the last upsampling.
        dtype: dtype or dtype policy of every layer built here (the
            probabilities are always float32).
        name: model name; defaults to `"fcn{variant}"`.

    Returns:
        A functional `keras.Model` taking `"images"` float [B, H, W, C] in
        0..255 and returning `"mask_probs"` float32 [B, H, W, num_classes]
        (softmax over classes).

    Raises:
        ValueError: on `num_classes < 1`, an unknown `variant` or backbone
            name, a malformed `image_shape`, too few or missing skip
            layers, or a backbone with several inputs or outputs.

    Example:

    >>> model = FCN(num_classes=11, variant="8s")
    >>> model(np.zeros((1, 100, 75, 3), "float32")).shape
    TensorShape([1, 100, 75, 11])

    Reference:
        - [Long, Shelhamer and Darrell, "Fully Convolutional Networks for
          Semantic Segmentation", CVPR 2015](https://arxiv.org/abs/1411.4038)
    """
    num_classes = check_num_classes(num_classes)
    variant = check_fcn_variant(variant)
    image_shape = check_image_shape(image_shape)

    # Backbones other than the ceil-mode ones may round sizes down: pad
    # static sizes.
    images = keras.Input(image_shape, name="images")
    stride = (
        1
        if isinstance(backbone, str) and backbone in CEIL_MODE_BACKBONES
        else _OUTPUT_STRIDE
    )
    x, backbone_shape = pad_to_stride(
        images, image_shape, stride, "fcn_pad_images", dtype
    )
    backbone_model, skip_layer_names = get_backbone(
        backbone,
        backbone_shape,
        skip_layer_names=skip_layer_names,
        weights=weights,
        backbone_kwargs=backbone_kwargs,
        dtype=dtype,
    )
    num_skips = _NUM_SKIPS[variant]
    if num_skips and not (num_skips <= len(skip_layer_names) <= 2):
        raise ValueError(
            "Invalid value for argument `skip_layer_names`. Expected "
            f"{num_skips} or 2 layer names ordered by stride (stride 8, "
            f"stride 16) for variant={variant!r}. Received: "
            f"skip_layer_names={skip_layer_names!r}."
        )
    used_skips = skip_layer_names[len(skip_layer_names) - num_skips :]

    model_name = backbone_model.name
    features = keras.Model(
        _single(backbone_model.inputs, "input", model_name),
        [backbone_model.get_layer(n).output for n in used_skips]
        + [
            # A keras-hub backbone gives P2-P5: its stride-32 map is "P5".
            backbone_model.get_layer("P5").output
            if is_hub_backbone(backbone)
            else _single(backbone_model.outputs, "output", model_name)
        ],
        name="backbone",
    )

    outputs = features(x)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    logits = apply_fcn_decoder(
        outputs[-1],
        tuple(outputs[:-1]),
        num_classes,
        variant,
        reference=images,
        head_filters=head_filters,
        dropout=dropout,
        trainable_final_upsampling=trainable_final_upsampling,
        name="fcn",
        dtype=dtype,
    )
    probs = keras.layers.Softmax(dtype="float32", name="mask_probs")(logits)
    return keras.Model(images, probs, name=name or f"fcn{variant}")


def build_fcn_segmenter(num_classes: int, **kwargs) -> keras.Model:
    """Builder-function spelling of `FCN`; takes the same arguments."""
    return FCN(num_classes, **kwargs)
