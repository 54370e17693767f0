"""Multi-scale convolutional scene labelling (Farabet et al., 2013)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_segattn import validation
from keras_segattn.layers.multi_scale_encoder import MultiScaleEncoder
from keras_segattn.models.backbones import check_image_shape
from keras_segattn.models.blocks import apply_conv_block
from keras_segattn.validation import check_num_classes


def build_multi_scale_conv_encoder(
    channels: int = 3,
    filters: Sequence[int] = (16, 32, 64),
    dtype=None,
    name: str = "multi_scale_conv_encoder",
) -> keras.Model:
    """The shared encoder of `build_multi_scale_segmenter`.

    Farabet et al.'s three-stage network: Conv-BN-ReLU stages
    (`apply_conv_block`, one 3x3 convolution each, `stage{i}`) with a 2x2
    max pool (`stage{i}_pool`, `"same"` padding) between them, so the
    output has stride `2 ** (len(filters) - 1)`. Fully convolutional: it
    takes images of any size.

    Args:
        channels: int > 0. Input channels.
        filters: ints > 0, one width per stage.
        dtype: dtype or dtype policy of every layer.
        name: model name.

    Returns:
        A functional `keras.Model` [B, h, w, channels] ->
        [B, ceil(h / s), ceil(w / s), filters[-1]].
    """
    channels = validation.check_positive_int(channels, "channels")
    if not isinstance(filters, (tuple, list)) or not filters:
        raise ValueError(
            "Invalid value for argument `filters`. Expected a non-empty "
            f"sequence of ints > 0. Received: filters={filters!r}."
        )
    filters = tuple(
        validation.check_positive_int(f, "filters") for f in filters
    )
    inputs = keras.Input((None, None, channels), name="images")
    x = inputs
    for stage, width in enumerate(filters, start=1):
        if stage > 1:
            x = keras.layers.MaxPooling2D(
                2, padding="same", name=f"stage{stage - 1}_pool", dtype=dtype
            )(x)
        x = apply_conv_block(x, width, 1, name=f"stage{stage}", dtype=dtype)
    return keras.Model(inputs, x, name=name)


def build_multi_scale_segmenter(
    num_classes: int,
    image_shape: Sequence[int] = (64, 64, 3),
    scales: Sequence[float] = (1.0, 0.5, 0.25),
    filters: Sequence[int] = (16, 32, 64),
    head_filters: int | None = None,
    interpolation: str = "bilinear",
    dtype=None,
    name: str = "multi_scale_segmenter",
) -> keras.Model:
    """Builds the multi-scale scene-labelling network of Farabet et al.

    1. `preprocess_rescaling`: 0..255 -> 0..1;
    2. `multi_scale_encoder` (`MultiScaleEncoder`): the shared
       `build_multi_scale_conv_encoder` run on the image pyramid `scales`,
       features upsampled to the first level's and concatenated;
    3. the per-pixel classifier: optional `head_hidden` (1x1 conv + ReLU,
       `head_filters` wide, the paper's two-layer classifier) and
       `head_logits` (1x1 conv to `num_classes`);
    4. `upsample_logits`: bilinear `Resizing` to the image size, then the
       float32 softmax `mask_probs`.

    Args:
        num_classes: int >= 1.
        image_shape: (H, W, C), static (the pyramid sizes are static).
        scales: strictly decreasing positive floats (see
            `MultiScaleEncoder`).
        filters: widths of the encoder stages (output stride
            `2 ** (len(filters) - 1)`).
        head_filters: int > 0 or None. Hidden width of the classifier.
        interpolation: resize method of the pyramid and the features.
        dtype: dtype or dtype policy of every layer (the probabilities
            are float32).
        name: model name.

    Returns:
        A functional `keras.Model` taking `"images"` float [B, H, W, C] in
        0..255 and returning `"mask_probs"` float32 [B, H, W, num_classes].

    Raises:
        ValueError: on `num_classes < 1`, a bad or dynamic `image_shape`,
            bad `scales` (not positive or not strictly decreasing),
            `filters` or `head_filters`.

    Reference:
        - [Farabet, Couprie, Najman and LeCun, "Learning Hierarchical
          Features for Scene Labeling", TPAMI 2013](
          https://doi.org/10.1109/TPAMI.2012.231)
    """
    num_classes = check_num_classes(num_classes)
    image_shape = check_image_shape(image_shape)
    if None in image_shape:
        raise ValueError(
            "Invalid value for argument `image_shape`. Expected a static "
            "(height, width, channels): the pyramid sizes are static. "
            f"Received: image_shape={image_shape!r}."
        )
    encoder = build_multi_scale_conv_encoder(
        image_shape[-1], filters, dtype=dtype
    )
    images = keras.Input(image_shape, name="images")
    x = keras.layers.Rescaling(
        1.0 / 255.0, name="preprocess_rescaling", dtype=dtype
    )(images)
    x = MultiScaleEncoder(
        encoder,
        scales=scales,
        interpolation=interpolation,
        name="multi_scale_encoder",
        dtype=dtype,
    )(x)
    if head_filters is not None:
        head_filters = validation.check_positive_int(
            head_filters, "head_filters"
        )
        x = keras.layers.Conv2D(
            head_filters,
            1,
            activation="relu",
            name="head_hidden",
            dtype=dtype,
        )(x)
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
