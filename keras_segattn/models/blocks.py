"""Composite `apply_*` blocks that FCN, DeconvNet and other models share.

Each function stitches standard Keras layers (and `CropToMatch`) into a
functional graph and returns the output tensor, after `apply_basic_block` in
keras-team/keras-hub: keras_hub/src/models/resnet/resnet_backbone.py. Layer
names derive from the `name` argument, so weights and checkpoints stay
addressable.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence

import keras

from keras_segattn import validation
from keras_segattn.initializers import BilinearUpsampling
from keras_segattn.layers import CropToMatch
from keras_segattn.layers import Dropout
from keras_segattn.validation import Tensor  # a KerasTensor here
from keras_segattn.validation import check_num_classes

FCN_VARIANTS = ("32s", "16s", "8s")
_FUSE_MODES = ("add", "concat")


def bilinear_kernel_size(factor: int) -> int:
    """Kernel size `2 * f - f % 2` of FCN's bilinear upsampling filter."""
    factor = validation.check_positive_int(factor, "factor")
    return 2 * factor - factor % 2


def check_fcn_variant(variant) -> str:
    """Returns `variant` or raises `ValueError` unless one of FCN's."""
    return validation.check_one_of(variant, FCN_VARIANTS, "variant")


def _conv_no_bias(x, filters, kernel_size, strides, name, dtype) -> Tensor:
    """A "same" He-initialised convolution without bias (BatchNorm follows)."""
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
        dtype=dtype,
    )(x)


def apply_conv_block(
    x: Tensor,
    filters: int | Sequence[int],
    num_convs: int | None = None,
    kernel_size: int = 3,
    name: str = "conv_block",
    dtype=None,
) -> Tensor:
    """Applies `num_convs` times Conv(3x3, "same") - BatchNorm - ReLU.

    The VGG stage (Simonyan and Zisserman, 2015) with batch normalisation,
    as in the SegNet encoder and decoder (Badrinarayanan et al., 2017).
    The convolutions have no bias (BatchNorm has one).

    Args:
        x: float tensor [B, H, W, C].
        filters: int > 0, the output channels of every convolution, or a
            sequence of them, one per convolution (SegNet's decoder blocks
            change width at their last convolution).
        num_convs: int > 0. Number of Conv-BN-ReLU units; defaults to 2
            for an int `filters` and to `len(filters)` for a sequence.
        kernel_size: int > 0. Convolution kernel size.
        name: prefix of the layer names: `{name}_conv{i}`, `{name}_bn{i}`,
            `{name}_relu{i}` for i = 1..num_convs.
        dtype: dtype or dtype policy of every layer.

    Returns:
        Tensor [B, H, W, filters] (the last width for a sequence).

    Raises:
        ValueError: if `filters`, `num_convs` or `kernel_size` is not a
            strictly positive integer, or `num_convs` differs from the
            length of a `filters` sequence.
    """
    if isinstance(filters, (tuple, list)):
        widths = tuple(
            validation.check_positive_int(f, "filters") for f in filters
        )
        if num_convs is not None and num_convs != len(widths):
            raise ValueError(
                "Invalid value for argument `num_convs`. Expected "
                f"len(filters)={len(widths)} when `filters` is a sequence. "
                f"Received: num_convs={num_convs!r}, filters={filters!r}."
            )
    else:
        num_convs = 2 if num_convs is None else num_convs
        num_convs = validation.check_positive_int(num_convs, "num_convs")
        widths = (validation.check_positive_int(filters, "filters"),)
        widths *= num_convs
    if not widths:
        raise ValueError(
            "Invalid value for argument `filters`. Expected at least one "
            f"width. Received: filters={filters!r}."
        )
    kernel_size = validation.check_positive_int(kernel_size, "kernel_size")
    for i, width in enumerate(widths, start=1):
        x = _conv_no_bias(x, width, kernel_size, 1, f"{name}_conv{i}", dtype)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}", dtype=dtype)(
            x
        )
        x = keras.layers.ReLU(name=f"{name}_relu{i}", dtype=dtype)(x)
    return x


def apply_residual_block(
    x: Tensor,
    filters: int,
    strides: int = 1,
    name: str = "residual_block",
    dtype=None,
) -> Tensor:
    """Applies ResNet's basic block (He et al., 2016), post-activation.

    `ReLU(BN(Conv3x3(ReLU(BN(Conv3x3_s(x))))) + shortcut(x))`, the shortcut
    a 1x1 convolution with stride `strides` and BatchNorm when the stride
    or width changes, else the identity: `apply_basic_block` of
    keras-team/keras-hub: keras_hub/src/models/resnet/resnet_backbone.py
    (v1). The strided convolution uses "same" padding, so the output has
    `ceil(H / strides)` rows, like the "same" max pools of the small VGG.

    Args:
        x: float tensor [B, H, W, C].
        filters: int > 0. Output channels.
        strides: int > 0. Stride of the first convolution and the shortcut.
        name: prefix of the layer names (`{name}_conv1`, `{name}_bn1`,
            `{name}_conv2`, `{name}_bn2`, `{name}_shortcut_conv`,
            `{name}_shortcut_bn`, `{name}_add`, `{name}_out`).
        dtype: dtype or dtype policy of every layer.

    Returns:
        Tensor [B, ceil(H / strides), ceil(W / strides), filters].

    Raises:
        ValueError: if `filters` or `strides` is not a positive int.
    """
    filters = validation.check_positive_int(filters, "filters")
    strides = validation.check_positive_int(strides, "strides")

    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_no_bias(
            x, filters, 1, strides, f"{name}_shortcut_conv", dtype
        )
        shortcut = keras.layers.BatchNormalization(
            name=f"{name}_shortcut_bn", dtype=dtype
        )(shortcut)
    y = _conv_no_bias(x, filters, 3, strides, f"{name}_conv1", dtype)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1", dtype=dtype)(y)
    y = keras.layers.ReLU(name=f"{name}_relu1", dtype=dtype)(y)
    y = _conv_no_bias(y, filters, 3, 1, f"{name}_conv2", dtype)
    # Zero-initialised last BN scale (Goyal et al., 2017): each block
    # starts as the identity, which trains deeper stacks from scratch.
    y = keras.layers.BatchNormalization(
        gamma_initializer="zeros", name=f"{name}_bn2", dtype=dtype
    )(y)
    y = keras.layers.Add(name=f"{name}_add", dtype=dtype)([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out", dtype=dtype)(y)


def apply_bilinear_upsampling(
    x: Tensor,
    factor: int,
    trainable: bool = True,
    name: str = "upsample",
    dtype=None,
) -> Tensor:
    """Upsamples by `factor` with a bilinear-initialised `Conv2DTranspose`.

    FCN's "deconvolution" layer (Long et al., 2015): kernel size
    `2 * f - f % 2`, stride `f`, no bias, initialised to bilinear
    interpolation channel by channel (`BilinearUpsampling`). With
    `padding="same"` the output is exactly `f` times larger, aligned with
    `"same"`-padded pooling.

    Args:
        x: float tensor [B, H, W, C].
        factor: int > 0. Upsampling factor.
        trainable: bool. Whether the kernel is learned (FCN learns the 2x
            layers and keeps the final one fixed).
        name: name of the `Conv2DTranspose` layer.
        dtype: dtype or dtype policy of the layer.

    Returns:
        Tensor [B, f * H, f * W, C].
    """
    return keras.layers.Conv2DTranspose(
        x.shape[-1],
        kernel_size=bilinear_kernel_size(factor),
        strides=factor,
        padding="same",
        use_bias=False,
        kernel_initializer=BilinearUpsampling(),
        trainable=trainable,
        name=name,
        dtype=dtype,
    )(x)


def apply_upsample_block(
    x: Tensor,
    filters: int | None = None,
    factor: int = 2,
    skip: Tensor | None = None,
    fuse: str = "add",
    num_convs: int = 0,
    trainable_upsampling: bool = True,
    name: str = "upsample_block",
    dtype=None,
) -> Tensor:
    """A `Conv2DTranspose`-based decoder block: upsample, crop, fuse.

    1. If `filters` differs from the channels of `x`, a 1x1 convolution
       `{name}_project` maps `x` to `filters` channels (the bilinear kernel
       does not mix channels).
    2. `{name}_upsample`: bilinear-initialised `Conv2DTranspose` by
       `factor` (see `apply_bilinear_upsampling`).
    3. With a `skip`: `{name}_crop` (`CropToMatch`) crops the upsampled map
       to the skip's height and width, then `{name}_add` adds the skip or
       `{name}_concat` concatenates it, as FCN's skip fusion (Long et al.,
       2015) or U-Net-style decoders do.
    4. With `num_convs > 0`: a conv block `{name}_conv_block`
       (`apply_conv_block`) refines the result.

    Args:
        x: float tensor [B, h, w, C].
        filters: int > 0 or None (keep C). Output channels.
        factor: int > 0. Upsampling factor.
        skip: optional float tensor [B, H, W, C_skip] with
            `H <= factor * h` and `W <= factor * w`; with `fuse="add"`,
            `C_skip` must equal the output channels.
        fuse: `"add"` or `"concat"`.
        num_convs: int >= 0. Conv-BN-ReLU units after the fusion.
        trainable_upsampling: bool. Whether the upsampling kernel is learned.
        name: prefix of the layer names.
        dtype: dtype or dtype policy of every layer.

    Returns:
        Tensor [B, H, W, C'] with a skip, else [B, factor * h, factor * w,
        C']; `C'` is `filters` (or C), plus `C_skip` for `"concat"` unless
        `num_convs > 0` (the conv block outputs `filters`, or C).

    Raises:
        ValueError: on an invalid `filters`, `factor`, `fuse` or
            `num_convs`, on channel counts that cannot be added, or when the
            upsampled map is statically smaller than the skip.

    Example:

    >>> low = keras.Input((8, 8, 64))
    >>> skip = keras.Input((15, 15, 32))
    >>> apply_upsample_block(low, 32, skip=skip, name="up1").shape
    (None, 15, 15, 32)

    Reference:
        - [Long et al., "Fully Convolutional Networks for Semantic
          Segmentation", CVPR 2015](https://arxiv.org/abs/1411.4038)
    """
    factor = validation.check_positive_int(factor, "factor")
    validation.check_one_of(fuse, _FUSE_MODES, "fuse")
    validation.check_int(num_convs, "num_convs", minimum=0)
    validation.check_rank(x, 4, "x")
    if filters is not None:
        filters = validation.check_positive_int(filters, "filters")
        if filters != x.shape[-1]:
            x = keras.layers.Conv2D(
                filters, 1, name=f"{name}_project", dtype=dtype
            )(x)
    channels = x.shape[-1]
    x = apply_bilinear_upsampling(
        x,
        factor,
        trainable=trainable_upsampling,
        name=f"{name}_upsample",
        dtype=dtype,
    )
    if skip is not None:
        validation.check_rank(skip, 4, "skip")
        x = CropToMatch(name=f"{name}_crop", dtype=dtype)(x, skip)
        if fuse == "add":
            if (
                skip.shape[-1] is not None
                and x.shape[-1] is not None
                and skip.shape[-1] != x.shape[-1]
            ):
                raise ValueError(
                    "Invalid shape for argument `skip`. With fuse='add' the "
                    "skip must have as many channels as the upsampled map "
                    f"({x.shape[-1]}); pass `filters` or use fuse='concat'. "
                    f"Received: skip.shape={tuple(skip.shape)}."
                )
            x = keras.layers.Add(name=f"{name}_add", dtype=dtype)([x, skip])
        else:
            x = keras.layers.Concatenate(name=f"{name}_concat", dtype=dtype)(
                [x, skip]
            )
    if num_convs:
        x = apply_conv_block(
            x,
            channels,
            num_convs,
            name=f"{name}_conv_block",
            dtype=dtype,
        )
    return x


def _standardize_fcn_skips(skips, variant: str) -> tuple:
    """Returns `(pool3, pool4)`, None where the variant does not use it."""
    if skips is None:
        skips = ()
    if isinstance(skips, Mapping):
        pool3, pool4 = skips.get("pool3"), skips.get("pool4")
    elif isinstance(skips, Sequence) and not isinstance(skips, str):
        skips = tuple(skips)
        if len(skips) > 2:
            raise ValueError(
                "Invalid value for argument `skips`. Expected at most 2 "
                "tensors ordered by stride: (pool3 [stride 8], pool4 "
                f"[stride 16]). Received: {len(skips)} tensors."
            )
        # Right-aligned: a single tensor is pool4, two are (pool3, pool4).
        pool3, pool4 = (None, None, *skips)[-2:]
    else:
        raise TypeError(
            "Invalid type for argument `skips`. Expected a sequence (pool3, "
            "pool4) or a dict with keys 'pool3' and 'pool4'. "
            f"Received: type(skips)={type(skips).__name__}."
        )
    needed = {"32s": (), "16s": ("pool4",), "8s": ("pool3", "pool4")}
    given = {"pool3": pool3, "pool4": pool4}
    missing = [key for key in needed[variant] if given[key] is None]
    if missing:
        raise ValueError(
            f"Invalid value for argument `skips`. variant={variant!r} needs "
            f"the skip features {list(needed[variant])}, ordered by stride "
            "(pool3 [stride 8], pool4 [stride 16]). Missing: "
            f"{missing}. Received: skips={skips!r}."
        )
    return (
        pool3 if variant == "8s" else None,
        pool4 if variant in ("16s", "8s") else None,
    )


def apply_fcn_decoder(
    final_features: Tensor,
    skips: Sequence[Tensor] | Mapping[str, Tensor] | None,
    num_classes: int,
    variant: str = "8s",
    reference: Tensor | None = None,
    head_filters: int | None = None,
    dropout: float = 0.5,
    score_initializer="zeros",
    trainable_final_upsampling: bool = False,
    name: str = "fcn",
    dtype=None,
) -> Tensor:
    """FCN-32s/16s/8s scoring, skip fusion and upsampling to class logits.

    Implements the decoder of Long et al. (2015),
    shelhamer/fcn.berkeleyvision.org: voc-fcn{32,16,8}s/net.py:

    - optional convolutionalised classifier: `{name}_fc6` (3x3 conv, ReLU,
      dropout; 7x7 in the paper, 3x3 here since small backbones have tiny
      stride-32 maps) and `{name}_fc7` (1x1 conv, ReLU, dropout), when
      `head_filters` is set (keras.applications backbones built with
      `include_top=False` have no fc layers);
    - `{name}_score_fr`: 1x1 conv to `num_classes` on the final features;
    - 16s and 8s: `{name}_upsample_2x_1` (learned, bilinear init) then
      `{name}_crop_pool4` to `{name}_score_pool4` (1x1 conv on pool4) and
      `{name}_fuse_pool4` (add);
    - 8s: the same once more with pool3 (`{name}_upsample_2x_2`,
      `{name}_score_pool3`, `{name}_crop_pool3`, `{name}_fuse_pool3`);
    - `{name}_upsample_{32,16,8}x`: the final bilinear upsampling, fixed
      by default as in FCN, and `{name}_crop_output` to `reference`.

    Score layers start at zero, as the paper's net surgery does ("we
    zero-initialize the class scoring layer"), so the new skips start as
    no-ops. Maps are top-left aligned (`"same"` pooling and transposed
    convolutions), so every crop has offset 0 where Caffe's FCN needs 5, 9
    and 31 because of its 100-pixel conv1 padding.

    Args:
        final_features: float tensor [B, H/32, W/32, C5] (rounded up).
        skips: pool3 [B, H/8, W/8, C3] and pool4 [B, H/16, W/16, C4] as a
            sequence ordered by stride `(pool3, pool4)` or a dict with keys
            `"pool3"` and `"pool4"`. "32s" needs none, "16s" pool4 (a
            single tensor is taken as pool4), "8s" both.
        num_classes: int >= 1.
        variant: one of `"32s"`, `"16s"`, `"8s"`.
        reference: optional tensor [B, H, W, ...] (the images); the output
            is cropped to its height and width. Without it the output is
            the upsampled size (32, 16 or 8 times the coarsest fused map).
        head_filters: int > 0 or None. Width of fc6/fc7; None skips them.
        dropout: float in [0, 1). Dropout rate after fc6 and fc7.
        score_initializer: kernel initializer of the score layers.
        trainable_final_upsampling: bool. Learn the last upsampling too.
        name: prefix of the layer names.
        dtype: dtype or dtype policy of every layer.

    Returns:
        Class logits [B, H, W, num_classes] (float, the layers' compute
        dtype).

    Raises:
        ValueError: on `num_classes < 1`, an unknown `variant`, missing
            skips, a bad `dropout` or `head_filters`, or static shapes that
            do not fit (an upsampled map smaller than its skip).

    Reference:
        - [Long, Shelhamer and Darrell, "Fully Convolutional Networks for
          Semantic Segmentation", CVPR 2015](https://arxiv.org/abs/1411.4038)
    """
    num_classes = check_num_classes(num_classes)
    variant = check_fcn_variant(variant)
    validation.check_rate(dropout, "dropout")
    pool3, pool4 = _standardize_fcn_skips(skips, variant)
    validation.check_rank(final_features, 4, "final_features")

    x = final_features
    if head_filters is not None:
        head_filters = validation.check_positive_int(
            head_filters, "head_filters"
        )
        for layer_name, kernel_size in (("fc6", 3), ("fc7", 1)):
            x = keras.layers.Conv2D(
                head_filters,
                kernel_size,
                padding="same",
                activation="relu",
                name=f"{name}_{layer_name}",
                dtype=dtype,
            )(x)
            if dropout:
                x = Dropout(
                    dropout, name=f"{name}_{layer_name}_dropout", dtype=dtype
                )(x)

    def score(features, score_name):
        return keras.layers.Conv2D(
            num_classes,
            1,
            kernel_initializer=score_initializer,
            name=f"{name}_{score_name}",
            dtype=dtype,
        )(features)

    x = score(x, "score_fr")
    final_factor = 32
    for index, (skip, skip_name) in enumerate(
        ((pool4, "pool4"), (pool3, "pool3")), start=1
    ):
        if skip is None:
            continue
        validation.check_rank(skip, 4, "skips")
        x = apply_bilinear_upsampling(
            x,
            2,
            trainable=True,
            name=f"{name}_upsample_2x_{index}",
            dtype=dtype,
        )
        skip_score = score(skip, f"score_{skip_name}")
        x = CropToMatch(name=f"{name}_crop_{skip_name}", dtype=dtype)(
            x, skip_score
        )
        x = keras.layers.Add(name=f"{name}_fuse_{skip_name}", dtype=dtype)(
            [x, skip_score]
        )
        final_factor //= 2
    x = apply_bilinear_upsampling(
        x,
        final_factor,
        trainable=trainable_final_upsampling,
        name=f"{name}_upsample_{final_factor}x",
        dtype=dtype,
    )
    if reference is not None:
        x = CropToMatch(name=f"{name}_crop_output", dtype=dtype)(x, reference)
    return x
