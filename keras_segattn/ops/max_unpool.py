"""Max unpooling with the DeconvNet/SegNet switches."""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

from keras_segattn import validation
from keras_segattn.validation import Tensor


def _unpooled_shape(
    inputs_shape, indices_shape, pool_size: tuple[int, int]
) -> tuple:
    """Checks the static shapes of `inputs` and `indices` (rank 4, equal
    where known); returns the unpooled shape [B, h * kh, w * kw, C]."""
    inputs_shape = validation.check_rank(inputs_shape, 4, "inputs")
    validation.check_rank(indices_shape, 4, "indices")
    validation.check_same_static_shape(
        inputs_shape, indices_shape, "inputs", "indices"
    )
    batch, height, width, channels = inputs_shape
    kh, kw = pool_size
    return (
        batch,
        None if height is None else height * kh,
        None if width is None else width * kw,
        channels,
    )


def max_unpool(
    inputs: Tensor, indices: Tensor, pool_size: int | Sequence[int] = (2, 2)
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

    Args:
        inputs: float tensor [B, h, w, C], e.g. pooled (and processed)
            features.
        indices: integer tensor [B, h, w, C] of local window positions.
        pool_size: int or (kh, kw). The pool size used for pooling.

    Returns:
        Tensor [B, h * kh, w * kw, C] of `inputs`' dtype.

    Raises:
        ValueError: if `pool_size` is not a strictly positive int or pair,
            `inputs` or `indices` is not rank 4, or their known static
            shapes differ.
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
    _unpooled_shape(inputs.shape, indices.shape, (kh, kw))
    window = kh * kw

    _, height, width, channels = validation.shape_list(inputs)
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
    return ops.reshape(x, [-1, height * kh, width * kw, channels])
