"""Checks shared by the tests of the RoI ops (`roi_align`, `roi_pool`)."""

import numpy as np
import pytest
import tensorflow as tf

F32 = np.float32


def check_static_output_shape_with_unknown_batch(op) -> None:
    """Traces `op` on [None, 8, 8, 4] features and [None, 6, 4] boxes: the
    output keeps a static [None, 6, 7, 5, 4] shape."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 8, 8, 4], tf.float32),
            tf.TensorSpec([None, 6, 4], tf.float32),
        ]
    )
    def pool(features, boxes):
        out = op(features, boxes, (7, 5))
        assert out.shape.as_list() == [None, 6, 7, 5, 4]
        return out

    pool.get_concrete_function()


def check_invalid_inputs(op, features_shape, boxes_shape, kwargs, match):
    """`op` on zero inputs of these shapes (output_size 2 unless in
    `kwargs`) raises a `ValueError` matching `match`."""
    kwargs = {"output_size": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        op(np.zeros(features_shape, F32), np.zeros(boxes_shape, F32), **kwargs)


def check_integer_features_raise_type_error(op) -> None:
    with pytest.raises(TypeError, match="features.dtype=int32"):
        op(np.zeros((1, 2, 2, 1), "int32"), np.zeros((1, 1, 4)), 2)
