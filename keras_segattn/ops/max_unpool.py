"""Max unpooling with the DeconvNet/SegNet switches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from keras import ops

from keras_segattn import validation
from keras_segattn.validation import Tensor

INDICES_FORMATS = ("local", "flat")


def _check_indices_format(indices_format) -> str:
    """Returns `indices_format` or raises unless "local" or "flat"."""
    return validation.check_one_of(
        indices_format, INDICES_FORMATS, "indices_format"
    )


def _is_scalar_tensor(value) -> bool:
    return not isinstance(value, (int, float, np.generic)) and (
        tuple(getattr(value, "shape", (None,))) == ()
    )


def _standardize_output_size(output_size):
    """None, or (height, width) whose entries are ints > 0 or (in the op,
    for dynamic sizes) scalar integer tensors; ints are checked."""
    if output_size is None:
        return None
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(
            int(v) if isinstance(v, np.integer) else v for v in output_size
        )
        if any(_is_scalar_tensor(v) for v in output_size):
            for v in output_size:
                if not _is_scalar_tensor(v):
                    validation.check_positive_int(v, "output_size")
            return output_size
    return validation.standardize_size(output_size, "output_size")


def _check_output_size(
    inputs_shape, pool_size: tuple[int, int], output_size
) -> None:
    """Checks that every known output size pools back to the known inputs
    size: (h - 1) * kh < H <= h * kh, every window keeping >= 1 row."""
    height, width = inputs_shape[1:3]
    bounds = []
    ok = True
    for size, pooled, k in zip(
        output_size, (height, width), pool_size, strict=True
    ):
        if pooled is None:
            bounds.append(None)
            continue
        low, high = (pooled - 1) * k + 1, pooled * k
        bounds.append((low, high))
        if isinstance(size, int) and not low <= size <= high:
            ok = False
    if not ok:
        expected = " and ".join(
            f"{axis} in [{b[0]}, {b[1]}]"
            for axis, b in zip(("height", "width"), bounds, strict=True)
            if b is not None
        )
        raise ValueError(
            "Invalid value for argument `output_size`. Expected the size of "
            "an input that pools to inputs.shape[1:3] with pool size "
            f"{tuple(pool_size)} ({expected}): smaller would drop whole "
            "windows, larger would add rows or columns no window covers. "
            f"Received: output_size={tuple(output_size)} and "
            f"inputs.shape={tuple(inputs_shape)}."
        )


def _check_flat_windows(output_size, pool_size: tuple[int, int]) -> None:
    """Flat indices from `tf.nn.max_pool_with_argmax(padding="SAME")`
    match these windows only if TF pads at most one row and column (all
    of it at the bottom and right)."""
    for size, k, axis in zip(
        output_size, pool_size, ("height", "width"), strict=True
    ):
        if isinstance(size, int) and (-size) % k > 1:
            raise ValueError(
                "Invalid value for argument `output_size`. With "
                'indices_format="flat", expected a size whose "SAME" '
                "padding is at most 1 (tf.nn.max_pool_with_argmax pads "
                "the top as well beyond that, giving other windows). "
                f"Received: output_size={tuple(output_size)}, {axis} "
                f"{size} with pool size {tuple(pool_size)}."
            )


def _unpooled_shape(
    inputs_shape,
    indices_shape,
    pool_size: tuple[int, int],
    output_size=None,
    indices_format: str = "local",
) -> tuple:
    """Checks the static shapes of `inputs` and `indices` (rank 4, equal
    where known) and `output_size`; returns the unpooled shape
    [B, H, W, C], by default H = h * kh and W = w * kw."""
    inputs_shape = validation.check_rank(inputs_shape, 4, "inputs")
    validation.check_rank(indices_shape, 4, "indices")
    validation.check_same_static_shape(
        inputs_shape, indices_shape, "inputs", "indices"
    )
    batch, height, width, channels = inputs_shape
    kh, kw = pool_size
    if output_size is None:
        return (
            batch,
            None if height is None else height * kh,
            None if width is None else width * kw,
            channels,
        )
    _check_output_size(inputs_shape, pool_size, output_size)
    if indices_format == "flat":
        _check_flat_windows(output_size, pool_size)
    out_h, out_w = (v if isinstance(v, int) else None for v in output_size)
    return (batch, out_h, out_w, channels)


def _flat_to_local(indices, out_width, channels, pool_size, plane):
    """`tf.nn.max_pool_with_argmax` indices -> local window positions.

    A flat index is `((b * H + y) * W + x) * C + c` (the batch term only
    with `include_batch_in_index=True`); positions outside the window of
    their output element become -1 (so their window stays zero).
    """
    kh, kw = pool_size
    dtype = indices.dtype
    flat = ops.mod(indices, ops.cast(plane, dtype))
    position = ops.floor_divide(flat, ops.cast(channels, dtype))
    out_width = ops.cast(out_width, dtype)
    row = ops.floor_divide(position, out_width)
    column = ops.mod(position, out_width)
    _, height, width, _ = validation.shape_list(indices)
    row_start = ops.reshape(ops.arange(height, dtype=dtype) * kh, (-1, 1, 1))
    col_start = ops.reshape(ops.arange(width, dtype=dtype) * kw, (-1, 1))
    dy, dx = row - row_start, column - col_start
    inside = ops.logical_and(
        ops.logical_and(dy >= 0, dy < kh), ops.logical_and(dx >= 0, dx < kw)
    )
    same_channel = ops.equal(
        ops.mod(flat, ops.cast(channels, dtype)),
        ops.arange(channels, dtype=dtype),
    )
    inside = ops.logical_and(inside, same_channel)
    local = ops.where(inside, dy * kw + dx, ops.cast(-1, dtype))
    return ops.cast(local, "int32")


def max_unpool(
    inputs: Tensor,
    indices: Tensor,
    pool_size: int | Sequence[int] = (2, 2),
    output_size: int | Sequence[int] | None = None,
    indices_format: str = "local",
) -> Tensor:
    """Puts each value back where `max_pool_with_argmax` found its maximum.

    The unpooling of DeconvNet (Noh et al., 2015) and SegNet (Badrinarayanan
    et al., 2017): every input value goes to the position recorded in
    `indices` inside its `pool_size` window of the output, and every other
    output position is zero. The indices are local to each window
    (`0 .. kh * kw - 1`, row-major), as returned by `max_pool_with_argmax`;
    an index outside that range leaves its whole window zero. Built from a
    one-hot selection and reshapes in `keras.ops`, so it compiles under XLA
    and accepts unknown batch, height and width. The gradient with respect
    to `inputs` is the output gradient read at the recorded positions;
    `indices` get none.

    `output_size` gives back the size before a `padding="same"` (ceil
    mode) pooling, as `torch.nn.functional.max_unpool2d(...,
    output_size=...)` does: the full [B, h * kh, w * kw, C] map is built
    and its padded bottom rows and right columns are dropped. It must be
    a size that pools to (h, w), `(h - 1) * kh < H <= h * kh` (torch
    also accepts up to `h * kh + kh - 1`, the sizes that its floor mode
    pools to h; "valid" pooling here rejects those inputs).

    `indices_format="flat"` accepts the indices of
    `tf.nn.max_pool_with_argmax` (`((b * H + y) * W + x) * C + c`, with
    or without the batch term), for code ported from SegNet-TF; they are
    converted to local positions with the output size (H, W). Their
    windows must be these: "VALID" pooling, or "SAME" padding at most one
    row and column (pool size 2), since TF pads the top as well beyond
    that. A position outside its window leaves the window zero.

    Args:
        inputs: float tensor [B, h, w, C], e.g. pooled (and processed)
            features.
        indices: integer tensor [B, h, w, C] of local window positions
            (or of flat positions, see `indices_format`).
        pool_size: int or (kh, kw). The pool size used for pooling.
        output_size: None (H = h * kh, W = w * kw) or (H, W), the size of
            the pooling's input; its entries may be scalar integer tensors
            where the size is dynamic (they are then not checked).
        indices_format: "local" (`max_pool_with_argmax`'s window
            positions) or "flat" (`tf.nn.max_pool_with_argmax`'s).

    Returns:
        Tensor [B, H, W, C] of `inputs`' dtype.

    Raises:
        ValueError: if `pool_size` is not a strictly positive int or pair,
            `inputs` or `indices` is not rank 4, their known static
            shapes differ, `indices_format` is not "local" or "flat", or a
            known `output_size` does not pool to (h, w) (smaller drops
            windows, larger adds rows or columns no window covers).
        TypeError: if `inputs` is not floating or `indices` not integer.

    Example:

    >>> x = np.array([[[[5.0]]]], "float32")  # [1, 1, 1, 1]
    >>> np.asarray(max_unpool(x, np.array([[[[2]]]]), pool_size=2))[0, ..., 0]
    array([[0., 0.],
           [5., 0.]], dtype=float32)

    Reference:
        - [Noh et al., "Learning Deconvolution Network for Semantic
          Segmentation", ICCV 2015](https://arxiv.org/abs/1505.04366)
        - [Badrinarayanan et al., "SegNet: A Deep Convolutional
          Encoder-Decoder Architecture for Image Segmentation", TPAMI 2017](
          https://arxiv.org/abs/1511.00561)
    """
    kh, kw = validation.standardize_size(pool_size, "pool_size")
    inputs = ops.convert_to_tensor(inputs)
    indices = ops.convert_to_tensor(indices)
    validation.check_floating(inputs.dtype, "inputs")
    validation.check_integer(indices.dtype, "indices")
    indices_format = _check_indices_format(indices_format)
    output_size = _standardize_output_size(output_size)
    _unpooled_shape(
        inputs.shape, indices.shape, (kh, kw), output_size, indices_format
    )
    window = kh * kw

    _, height, width, channels = validation.shape_list(inputs)
    if output_size is None:
        out_h, out_w = height * kh, width * kw
    else:
        out_h, out_w = output_size
    if indices_format == "flat":
        indices = _flat_to_local(
            indices, out_w, channels, (kh, kw), out_h * out_w * channels
        )
    # [B, h, w, 1, C] == [kh*kw, 1] -> one-hot mask [B, h, w, kh*kw, C].
    positions = ops.reshape(ops.arange(window, dtype="int32"), (window, 1))
    selected = ops.equal(
        ops.expand_dims(ops.cast(indices, "int32"), 3), positions
    )
    values = ops.expand_dims(inputs, 3)
    x = ops.where(selected, values, ops.zeros_like(values))
    # [B, h, w, kh*kw, C] -> [B, h, kh, w, kw, C] -> [B, h*kh, w*kw, C].
    x = ops.reshape(x, [-1, height, width, kh, kw, channels])
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    x = ops.reshape(x, [-1, height * kh, width * kw, channels])
    if output_size is None:
        return x
    # Drop the rows and columns that "same" pooling padded.
    batch = validation.shape_list(x)[0]
    return ops.slice(x, [0, 0, 0, 0], [batch, out_h, out_w, channels])
