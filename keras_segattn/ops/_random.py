"""`keras.random.uniform` / `normal` that stay fast under XLA on CPU.

Keras's TensorFlow backend draws with `tf.random.stateless_*` and the
default `alg="auto_select"`, which XLA on CPU compiles into a per-element
computation that re-derives the key and counter from the seed (and picks
the algorithm) for every number: from a `SeedGenerator` (a seed read from
a variable, as in every training step) 524,288 uniforms take 107 ms with
`jit_compile=True` against 1.4 ms with the algorithm named (2 CPU cores,
TF 2.21; a constant seed is folded and fast either way). Draws from a
`keras.random.SeedGenerator` on the TensorFlow backend therefore name
Philox, TF's choice under "auto_select" on CPU and GPU, so the numbers are
`keras.random`'s for the same generator state there (tests/layers/
test_dropout.py); anything else (int or None seeds, other backends) is
`keras.random`'s own call.
"""

from __future__ import annotations

import keras

from keras_segattn.validation import Tensor

_ALGORITHM = "philox"


def _tf_seed(seed):
    """The generator's next [2] seed as int32 (as Keras casts it)."""
    import tensorflow as tf

    seed = tf.convert_to_tensor(seed.next())
    if seed.dtype != tf.int32:
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
    return seed


def _named_algorithm(seed) -> bool:
    return keras.backend.backend() == "tensorflow" and isinstance(
        seed, keras.random.SeedGenerator
    )


def _draw(name: str, shape, seed, dtype, **kwargs) -> Tensor:
    """`tf.random.stateless_<name>` with Philox named, or `keras.random`'s
    `<name>` where that is not a `SeedGenerator` on TensorFlow."""
    if not _named_algorithm(seed):
        keras_draw = getattr(keras.random, name)
        return keras_draw(shape, dtype=dtype, seed=seed, **kwargs)
    import tensorflow as tf

    dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
    draw = getattr(tf.random, f"stateless_{name}")
    return draw(
        shape, seed=_tf_seed(seed), dtype=dtype, alg=_ALGORITHM, **kwargs
    )


def uniform(shape, seed=None, dtype=None, minval=0.0, maxval=1.0) -> Tensor:
    """`keras.random.uniform(shape, minval, maxval, dtype, seed)`."""
    return _draw("uniform", shape, seed, dtype, minval=minval, maxval=maxval)


def normal(shape, seed=None, dtype=None, mean=0.0, stddev=1.0) -> Tensor:
    """`keras.random.normal(shape, mean, stddev, dtype, seed)`."""
    return _draw("normal", shape, seed, dtype, mean=mean, stddev=stddev)
