"""Shared private helper of the recurrent layers and models."""

from __future__ import annotations

import keras
from keras import ops


def scan(body, initial, sequence):
    """Stacked carries of `carry = body(carry, x)[0]` over `sequence`.

    On TensorFlow this is `tf.scan`, whose while loop has
    `maximum_iterations` set: XLA needs that bound to differentiate the loop
    when the number of steps is only known at run time (`keras.ops.scan`
    leaves it unset and `fit(jit_compile=True)` fails on the gradient).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.scan(lambda carry, x: body(carry, x)[0], sequence, initial)
    return ops.scan(body, initial, sequence)[1]
