"""DeconvNet/SegNet-style encoder-decoder with max-pooling switches."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_segattn.layers import CropToMatch
from keras_segattn.layers import MaxPoolingWithArgmax2D
from keras_segattn.layers import MaxUnpooling2D
from keras_segattn.models.backbones import HUB_PYRAMID_LEVELS
from keras_segattn.models.backbones import _standardize_per_stage
from keras_segattn.models.backbones import check_image_shape
from keras_segattn.models.backbones import get_backbone
from keras_segattn.models.backbones import is_hub_backbone
from keras_segattn.models.backbones import pad_to_stride
from keras_segattn.models.blocks import apply_conv_block
from keras_segattn.models.blocks import apply_upsample_block
from keras_segattn.models.blocks import check_num_classes

_HUB_OUTPUT_STRIDE = 32


def DeconvNet(
    num_classes: int,
    image_shape: Sequence[int | None] = (None, None, 3),
    filters: Sequence[int] = (32, 64, 128, 256),
    convs_per_stage: int | Sequence[int] = 2,
    dtype=None,
    name: str | None = None,
    backbone=None,
) -> keras.Model:
    """Builds an encoder-decoder that unpools with the encoder's switches.

    The decoder of DeconvNet (Noh et al., 2015) and SegNet (Badrinarayanan
    et al., 2017): every encoder stage (`encoder_block{i}`, Conv3x3-BN-ReLU
    units) ends in a 2x2 `MaxPoolingWithArgmax2D` (`encoder_block{i}_pool`)
    that records where each maximum came from; the mirrored decoder stage
    puts values back at those positions with `MaxUnpooling2D`
    (`decoder_block{i}_unpool`), at the size the stage had before pooling,
    and densifies the sparse map with
    Conv3x3-BN-ReLU units (`decoder_block{i}`), the last of which narrows
    to the width of the next stage up, as in SegNet. A 1x1 convolution
    (`deconvnet_score`) gives the class scores.

    Simplifications with respect to DeconvNet: its stride-1
    "deconvolution" layers are written as convolutions (a transposed
    convolution with stride 1 is a convolution with a flipped kernel, so
    the function class is the same), and its fc6/fc7 centre (a 7x7
    convolution to 1x1 and back), which needs a fixed 224x224 input, is
    left out; the result is SegNet's architecture at a smaller width.

    Any input height and width is accepted, e.g. CamVid at its native
    360x480. The pools use `padding="same"` (ceil mode, the windows of
    `torch.nn.MaxPool2d(2, 2, ceil_mode=True)`; with even sizes the same as
    "valid"), so an odd size is rounded up (45 -> 23), and every unpool
    receives the size its encoder stage had before pooling (23 -> 45):
    `output_size` where `image_shape` makes it static, otherwise the
    pooling layer's input as `reference`, read at call time.

    Args:
        num_classes: int >= 1. Number of classes (void excluded).
        image_shape: (H, W, C); H and W may be None.
        filters: ints > 0, the width of each encoder stage (one pooling
            per stage).
        convs_per_stage: int or one int per stage, Conv-BN-ReLU units in
            each encoder stage and in its mirrored decoder stage.
        dtype: dtype or dtype policy of every layer (the probabilities are
            always float32).
        name: model name; defaults to `"deconvnet"`.
        backbone: None (the encoder above) or a `keras_hub.models.Backbone`
            with `pyramid_outputs` P2-P5 (e.g. `ResNetBackbone.from_preset`
            for ImageNet weights). A keras-hub encoder records no pooling
            switches, so its decoder upsamples with learned transposed
            convolutions (bilinear initialised) instead of unpooling:
            `decoder_block5` refines P5, `decoder_block{4,3,2}` each
            upsample 2x, crop to P4, P3, P2 and concatenate it, then apply
            `convs_per_stage` Conv-BN-ReLU units of width `filters[k - 2]`
            at level k (so `filters` needs 4 entries, for P2-P5);
            `decoder_output` upsamples 4x to the image. Static sizes that
            are not multiples of 32 are zero-padded and cropped back
            (dynamic ones must be multiples of 32).

    Returns:
        A functional `keras.Model` taking `"images"` float [B, H, W, C] in
        0..255 and returning `"mask_probs"` float32 [B, H, W, num_classes].

    Raises:
        ValueError: on `num_classes < 1`, empty or non-positive `filters`,
            or a bad `convs_per_stage` or `image_shape`.

    Example:

    >>> model = DeconvNet(num_classes=11, image_shape=(360, 480, 3))
    >>> model.output_shape
    (None, 360, 480, 11)

    Reference:
        - [Noh, Hong and Han, "Learning Deconvolution Network for Semantic
          Segmentation", ICCV 2015](https://arxiv.org/abs/1505.04366)
        - [Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep
          Convolutional Encoder-Decoder Architecture for Image
          Segmentation", TPAMI 2017](https://arxiv.org/abs/1511.00561)
    """
    num_classes = check_num_classes(num_classes)
    image_shape = check_image_shape(image_shape)
    if backbone is not None:
        return _hub_deconvnet(
            num_classes,
            backbone,
            image_shape,
            filters,
            convs_per_stage,
            dtype,
            name or "deconvnet",
        )
    if not isinstance(filters, (tuple, list)) or not filters:
        raise ValueError(
            "Invalid value for argument `filters`. Expected a non-empty "
            f"sequence of ints > 0. Received: filters={filters!r}."
        )
    filters = _standardize_per_stage(tuple(filters), len(filters), "filters")
    num_stages = len(filters)
    convs_per_stage = _standardize_per_stage(
        convs_per_stage, num_stages, "convs_per_stage"
    )
    images = keras.Input(image_shape, name="images")
    x = keras.layers.Rescaling(
        1.0 / 255.0, name="preprocess_rescaling", dtype=dtype
    )(images)
    switches, pre_pool = [], []
    for stage, (width, num_convs) in enumerate(
        zip(filters, convs_per_stage, strict=True), start=1
    ):
        x = apply_conv_block(
            x, width, num_convs, name=f"encoder_block{stage}", dtype=dtype
        )
        pre_pool.append(x)
        x, indices = MaxPoolingWithArgmax2D(
            2, padding="same", name=f"encoder_block{stage}_pool", dtype=dtype
        )(x)
        switches.append(indices)

    for stage in range(num_stages, 0, -1):
        # The pre-pool size: static where known, else read at call time.
        features = pre_pool[stage - 1]
        size = tuple(features.shape[1:3])
        dynamic = None in size
        x = MaxUnpooling2D(
            2,
            output_size=None if dynamic else size,
            name=f"decoder_block{stage}_unpool",
            dtype=dtype,
        )(x, switches[stage - 1], reference=features if dynamic else None)
        width = filters[stage - 1]
        out_width = filters[max(stage - 2, 0)]
        widths = (width,) * (convs_per_stage[stage - 1] - 1) + (out_width,)
        x = apply_conv_block(
            x, widths, name=f"decoder_block{stage}", dtype=dtype
        )

    logits = keras.layers.Conv2D(
        num_classes, 1, name="deconvnet_score", dtype=dtype
    )(x)
    probs = keras.layers.Softmax(dtype="float32", name="mask_probs")(logits)
    return keras.Model(images, probs, name=name or "deconvnet")


def _hub_deconvnet(
    num_classes, backbone, image_shape, filters, convs_per_stage, dtype, name
) -> keras.Model:
    """`DeconvNet` on a keras-hub backbone (see its `backbone` argument)."""
    if not is_hub_backbone(backbone):
        raise TypeError(
            "Invalid type for argument `backbone`. Expected None (the "
            "encoder with pooling switches) or a keras_hub.models.Backbone "
            "with `pyramid_outputs`. Received: "
            f"type(backbone)={type(backbone).__name__}."
        )
    levels = len(HUB_PYRAMID_LEVELS)
    if not isinstance(filters, (tuple, list)) or len(filters) != levels:
        raise ValueError(
            "Invalid value for argument `filters`. Expected 4 ints > 0, the "
            "decoder widths at P2-P5 of a keras-hub backbone. Received: "
            f"filters={filters!r}."
        )
    filters = _standardize_per_stage(tuple(filters), levels, "filters")
    convs = _standardize_per_stage(convs_per_stage, levels, "convs_per_stage")
    images = keras.Input(image_shape, name="images")
    x, padded_shape = pad_to_stride(
        images, image_shape, _HUB_OUTPUT_STRIDE, "deconvnet_pad_images", dtype
    )
    encoder, _ = get_backbone(backbone, padded_shape, dtype=dtype)
    pyramid = encoder(x)  # P2, P3, P4, P5
    x = apply_conv_block(
        pyramid[-1], filters[3], convs[3], name="decoder_block5", dtype=dtype
    )
    for index in (2, 1, 0):  # up to P4, P3, P2 and concatenate it
        x = apply_upsample_block(
            x,
            filters[index],
            2,
            skip=pyramid[index],
            fuse="concat",
            num_convs=convs[index],
            name=f"decoder_block{index + 2}",
            dtype=dtype,
        )
    x = apply_upsample_block(
        x, filters[0], 4, name="decoder_output", dtype=dtype
    )
    x = CropToMatch(name="decoder_crop_output", dtype=dtype)(x, images)
    logits = keras.layers.Conv2D(
        num_classes, 1, name="deconvnet_score", dtype=dtype
    )(x)
    probs = keras.layers.Softmax(dtype="float32", name="mask_probs")(logits)
    return keras.Model(images, probs, name=name)


def SegNet(
    num_classes: int,
    image_shape: Sequence[int | None] = (None, None, 3),
    filters: Sequence[int] = (32, 64, 128, 256),
    convs_per_stage: int | Sequence[int] = 2,
    dtype=None,
    name: str | None = None,
) -> keras.Model:
    """SegNet (Badrinarayanan et al., 2017): `DeconvNet` named `"segnet"`.

    Same architecture and arguments as `DeconvNet`, whose docstring
    describes both.

    Reference:
        - [Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep
          Convolutional Encoder-Decoder Architecture for Image
          Segmentation", TPAMI 2017](https://arxiv.org/abs/1511.00561)
    """
    return DeconvNet(
        num_classes,
        image_shape=image_shape,
        filters=filters,
        convs_per_stage=convs_per_stage,
        dtype=dtype,
        name=name or "segnet",
    )
