"""Strategies and checks shared by the property-based tests."""

import numpy as np
import tensorflow as tf
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
INTEGER_DTYPES = ("int32", "int64", "uint8")
# Eager vs XLA and reference tolerances, per dtype (XLA may fuse and
# reorder float arithmetic; half precision rounds every step).
TOLERANCE = {
    "float16": 2e-2,
    "bfloat16": 1e-1,
    "float32": 1e-5,
    "float64": 1e-10,
}
NAN, INF = float("nan"), float("inf")

float_dtypes = st.sampled_from(FLOAT_DTYPES)
integer_dtypes = st.sampled_from(INTEGER_DTYPES)


def finite(bound: float = 100.0):
    """Finite float32-representable numbers in [-bound, bound]."""
    return st.floats(
        -bound, bound, allow_nan=False, allow_infinity=False, width=32
    )


def non_finite():
    return st.sampled_from([NAN, INF, -INF])


def array(shape, elements) -> st.SearchStrategy:
    """float64 NumPy arrays of `shape` (cast to the tested dtype later)."""
    return hnp.arrays(np.float64, shape, elements=elements)


def tensor(values, dtype) -> tf.Tensor:
    """`values` (NumPy) as a tensor of `dtype` (bfloat16 included)."""
    return tf.cast(tf.constant(np.asarray(values, "float64")), dtype)


def numpy(x) -> np.ndarray:
    """A tensor as NumPy; half precisions widened to float32."""
    x = tf.convert_to_tensor(x)
    if x.dtype in (tf.float16, tf.bfloat16):
        x = tf.cast(x, tf.float32)
    return x.numpy()


_JITTED = {}


def jitted(fn, key):
    """`tf.function(fn, jit_compile=True)`, one per `key` (the static
    arguments `fn` closes over), so examples of the same shapes reuse the
    compiled program."""
    if key not in _JITTED:
        _JITTED[key] = tf.function(fn, jit_compile=True)
    return _JITTED[key]


def assert_eager_equals_xla(fn, args, key, dtype="float32", scale=1.0):
    """`fn(*args)` eagerly and under XLA agree (NaN where NaN), output by
    output, within the dtype's relative tolerance plus an absolute one of
    that tolerance times `scale` (the magnitude of the values whose
    rounding errors can add up, e.g. cancelling coordinates); returns the
    eager outputs as NumPy."""
    eager = tf.nest.flatten(fn(*args))
    xla = tf.nest.flatten(jitted(fn, key)(*args))
    rtol = TOLERANCE[dtype]
    atol = rtol * scale
    outputs = []
    for a, b in zip(eager, xla, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        a, b = numpy(a), numpy(b)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
        outputs.append(a)
    return outputs


def gradients(fn, args, wrt):
    """Gradients of the sum of `fn`'s floating outputs with respect to the
    arguments at positions `wrt`, as float64 NumPy (None stays None)."""
    args = list(args)
    with tf.GradientTape() as tape:
        for i in wrt:
            tape.watch(args[i])
        outputs = [
            tf.reduce_sum(tf.cast(out, tf.float64))
            for out in tf.nest.flatten(fn(*args))
            if out.dtype.is_floating
        ]
        total = tf.add_n(outputs)
    grads = tape.gradient(total, [args[i] for i in wrt])
    return [None if g is None else numpy(g).astype("float64") for g in grads]


def assert_all_finite(*arrays) -> None:
    for a in arrays:
        if a is not None:
            assert np.isfinite(np.asarray(a, "float64")).all(), a
