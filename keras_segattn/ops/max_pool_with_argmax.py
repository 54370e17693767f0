"""Max pooling that also returns the DeconvNet/SegNet switches."""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

from keras_segattn import validation
from keras_segattn.validation import Tensor

PADDINGS = ("valid", "same")


def _check_padding(padding) -> str:
    """Returns `padding` lower-cased, or raises unless "valid" or "same"."""
    if isinstance(padding, str):
        padding = padding.lower()
    return validation.check_one_of(padding, PADDINGS, "padding")


def _pooled_shape(
    inputs_shape, pool_size: tuple[int, int], padding: str = "valid"
) -> tuple:
    """Checks the static shape of `inputs` (rank 4; with "valid" padding H
    and W divisible by the pool size); returns the pooled shape
    [B, H / kh, W / kw, C], rounded up with "same" padding."""
    inputs_shape = validation.check_rank(inputs_shape, 4, "inputs")
    if padding == "valid":
        validation.check_divisible(inputs_shape, (1, 2), pool_size, "inputs")
    batch, height, width, channels = inputs_shape
    kh, kw = pool_size
    return (
        batch,
        None if height is None else -(-height // kh),
        None if width is None else -(-width // kw),
        channels,
    )


def max_pool_with_argmax(
    inputs: Tensor,
    pool_size: int | Sequence[int] = (2, 2),
    padding: str = "valid",
) -> tuple[Tensor, Tensor]:
    """Non-overlapping max pooling that also returns where each max was.

    Implements the pooling "switches" of DeconvNet (Noh et al., 2015) and
    SegNet (Badrinarayanan et al., 2017): for every window of `pool_size`
    (stride = pool size) it returns the maximum and its position inside
    the window, which `max_unpool` uses to put the value back. Unlike
    `tf.nn.max_pool_with_argmax`, which has no XLA kernel and returns flat
    indices into the whole input, the indices here are local to each
    window (`0 .. kh * kw - 1`, row-major), and the op is built from
    reshapes and reductions in `keras.ops`, so it compiles under XLA and
    accepts unknown batch, height and width.

    Ties go to the first element of the window in row-major order (as
    `numpy.argmax`), on every device: the index is the smallest position
    whose value equals the window maximum. The gradient of `pooled` flows
    to that element only, so tied values never split it. A NaN beats
    every number, as in `torch.nn.functional.max_pool2d`: a window that
    holds one pools to NaN with the index of its first NaN (torch's CPU
    kernel records its last), the same eagerly and under XLA. Infinite
    values are ordinary maxima (an all -inf window gives -inf, index 0).

    With `padding="valid"` (the default) H and W must be divisible by the
    pool size. With `padding="same"` any size is accepted: the bottom rows
    and right columns are padded with -inf up to the next multiple, so the
    output is [B, ceil(H / kh), ceil(W / kw), C] and the windows are those
    of `torch.nn.MaxPool2d(k, k, ceil_mode=True, return_indices=True)`
    (and of `tf.nn.max_pool_with_argmax(..., padding="SAME")` whenever its
    padding is at most one row and column, as with 2x2 pools). A padded
    position never wins: every window starts with a real element, which
    wins any tie, and it gets no gradient. Pass the input size to
    `max_unpool(..., output_size=(H, W))` to undo the padding.

    Args:
        inputs: float tensor [B, H, W, C]; with "valid" padding H and W
            divisible by the pool size.
        pool_size: int or (kh, kw). Window size and stride.
        padding: "valid" (whole windows only) or "same" (ceil mode: pad
            the bottom and right with -inf).

    Returns:
        Tuple `(pooled, indices)`:
        - `pooled`: tensor [B, H / kh, W / kw, C] of `inputs`' dtype
          (sizes rounded up with "same" padding).
        - `indices`: int32 tensor of the same shape, the row-major position
          `row * kw + column` of the maximum inside its window.

    Raises:
        ValueError: if `pool_size` is not a strictly positive int or pair,
            `padding` is not "valid" or "same", `inputs` is not rank 4, or
            with "valid" padding a known H or W is not divisible by the
            pool size.
        TypeError: if `inputs` is not floating.

    Example:

    >>> x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    >>> pooled, indices = max_pool_with_argmax(x, pool_size=2)
    >>> np.asarray(indices)[0, :, :, 0]
    array([[3, 3],
           [3, 3]], dtype=int32)
    >>> x = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)
    >>> pooled, indices = max_pool_with_argmax(x, 2, padding="same")
    >>> np.asarray(indices)[0, :, :, 0]  # 5x5 -> 3x3, ceil mode
    array([[3, 3, 2],
           [3, 3, 2],
           [1, 1, 0]], dtype=int32)

    Reference:
        - [Noh et al., "Learning Deconvolution Network for Semantic
          Segmentation", ICCV 2015](https://arxiv.org/abs/1505.04366)
        - [Badrinarayanan et al., "SegNet: A Deep Convolutional
          Encoder-Decoder Architecture for Image Segmentation", TPAMI 2017](
          https://arxiv.org/abs/1511.00561)
    """
    kh, kw = validation.standardize_size(pool_size, "pool_size")
    inputs = ops.convert_to_tensor(inputs)
    validation.check_floating(inputs.dtype, "inputs")
    padding = _check_padding(padding)
    _pooled_shape(inputs.shape, (kh, kw), padding)
    window = kh * kw

    _, height, width, channels = validation.shape_list(inputs)
    if padding == "same":
        # Ceil mode: pad bottom and right to whole windows with -inf, which
        # never beats (and never ties before) the real top-left element.
        pad_h, pad_w = (-height) % kh, (-width) % kw
        if not (isinstance(pad_h, int) and isinstance(pad_w, int)) or (
            pad_h or pad_w
        ):
            inputs = ops.pad(
                inputs,
                [[0, 0], [0, pad_h], [0, pad_w], [0, 0]],
                constant_values=float("-inf"),
            )
        height, width = height + pad_h, width + pad_w
    out_h, out_w = height // kh, width // kw
    # [B, H, W, C] -> [B, H/kh, kh, W/kw, kw, C] -> [B, H/kh, W/kw, kh*kw, C].
    x = ops.reshape(inputs, [-1, out_h, kh, out_w, kw, channels])
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    x = ops.reshape(x, [-1, out_h, out_w, window, channels])

    # First position attaining the maximum: deterministic ties (`argmax`
    # does not guarantee which tied index it returns on every device). A
    # NaN beats every number (as in torch's max pooling), so a window with
    # a NaN selects its first NaN; the maximum of the others ignores them,
    # since reductions treat NaN differently eagerly and under XLA.
    is_nan = ops.isnan(x)
    lowest = ops.full_like(x, float("-inf"))
    numbers = ops.where(is_nan, lowest, x)
    # `initial` (which changes no result) also lets keras.ops reduce an
    # empty batch, which it refuses eagerly without one.
    maximum = ops.max(numbers, axis=3, keepdims=True, initial=float("-inf"))
    is_max = ops.equal(numbers, maximum)
    is_max = ops.where(ops.any(is_nan, axis=3, keepdims=True), is_nan, is_max)
    positions = ops.reshape(ops.arange(window, dtype="int32"), (window, 1))
    indices = ops.min(
        ops.where(is_max, positions, window), axis=3, initial=window
    )

    # Select (not `max`) so the gradient goes to the recorded element only.
    selected = ops.equal(ops.expand_dims(indices, 3), positions)
    pooled = ops.sum(ops.where(selected, x, ops.zeros_like(x)), axis=3)
    return pooled, ops.cast(indices, "int32")
