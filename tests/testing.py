"""The shared harness that every public layer's test runs.

Modelled on `run_layer_test` (keras-team/keras: keras/src/testing/test_case.py)
and keras-hub's `TestCase` (keras_hub/src/tests/test_case.py), with an
explicitly forced XLA training step, a reference-numerics phase, mixed
precision, `.keras` exactness and SavedModel reload added.
"""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf


def _is_float(dtype) -> bool:
    return "float" in str(getattr(dtype, "name", dtype))


def _as_list(x):
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _call(layer, inputs, call_kwargs):
    if isinstance(inputs, dict):
        return layer(**inputs, **call_kwargs)
    return layer(inputs, **call_kwargs)


def _shape_of(x):
    return tuple(x.shape)


def _symbolic_inputs(inputs):
    """Builds `keras.Input`s with an unknown batch dimension."""
    if isinstance(inputs, dict):
        return {
            name: keras.Input(
                shape=np.shape(v)[1:], dtype=str(np.asarray(v).dtype), name=name
            )
            for name, v in inputs.items()
        }
    v = np.asarray(inputs)
    return keras.Input(shape=v.shape[1:], dtype=str(v.dtype), name="inputs")


def _flat_inputs(inputs):
    if isinstance(inputs, dict):
        return list(inputs.values())
    return [inputs]


def _with_none_batch(shape):
    return (None, *tuple(shape)[1:])


def check_config_round_trip(layer) -> None:
    """`from_config(get_config())` and (de)serialization give equal JSON."""
    config = layer.get_config()
    json.dumps(config)  # must be JSON-serializable
    clone = layer.__class__.from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(
        config, sort_keys=True
    )
    serialized = keras.saving.serialize_keras_object(layer)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(layer)
    assert json.dumps(revived.get_config(), sort_keys=True) == json.dumps(
        config, sort_keys=True
    )


def build_wrapped_model(
    layer, inputs, call_kwargs=None, with_dense: bool = True
) -> keras.Model:
    """A functional model around `layer`, with a 1x1 `Dense` in front of each
    float input (so backprop runs through the layer) and only float outputs.
    """
    call_kwargs = call_kwargs or {}
    sym = _symbolic_inputs(inputs)
    if isinstance(sym, dict):
        fed = {}
        for name, x in sym.items():
            if with_dense and _is_float(x.dtype) and len(x.shape) >= 2:
                x = keras.layers.Dense(x.shape[-1], name=f"pre_{name}")(x)
            fed[name] = x
    else:
        fed = sym
        if with_dense and _is_float(sym.dtype):
            fed = keras.layers.Dense(sym.shape[-1], name="pre_inputs")(sym)
    outputs = _call(layer, fed, call_kwargs)
    float_outputs = [o for o in _as_list(outputs) if _is_float(o.dtype)]
    if not float_outputs:
        raise ValueError("The layer has no float output to train through.")
    model_outputs = (
        float_outputs[0] if len(float_outputs) == 1 else float_outputs
    )
    return keras.Model(sym, model_outputs)


def check_xla_fit(model: keras.Model, inputs, loss="mse") -> None:
    """One `fit` step with `jit_compile=True` forced and asserted."""
    model.compile(optimizer="sgd", loss=loss, jit_compile=True)
    assert model.jit_compile is True, "XLA was silently disabled"
    outputs = _as_list(model(inputs))
    targets = [np.zeros(o.shape, "float32") for o in outputs]
    targets = targets[0] if len(targets) == 1 else targets
    batch = len(_flat_inputs(inputs)[0])
    history = model.fit(inputs, targets, batch_size=batch, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def check_finite_gradients(layer, inputs, call_kwargs=None) -> None:
    """Tape gradients w.r.t. every float input and weight exist, are finite."""
    call_kwargs = call_kwargs or {}
    if isinstance(inputs, dict):
        tensors = {k: tf.convert_to_tensor(v) for k, v in inputs.items()}
    else:
        tensors = tf.convert_to_tensor(inputs)
    watched = [t for t in _flat_inputs(tensors) if _is_float(t.dtype)]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        outputs = _call(layer, tensors, call_kwargs)
        loss = 0.0
        for i, o in enumerate(_as_list(outputs)):
            if _is_float(o.dtype):
                w = tf.cos(tf.cast(tf.range(tf.size(o)), o.dtype) + i)
                loss += tf.reduce_sum(
                    tf.cast(tf.reshape(o, [-1]) * w, "float32")
                )
    grads = tape.gradient(loss, watched + list(layer.trainable_variables))
    for g in grads:
        assert g is not None, "a float input or weight got no gradient"
        g = tf.convert_to_tensor(g)
        assert np.all(np.isfinite(g.numpy())), "non-finite gradient"


def check_numeric_gradients(fn, args, delta=1e-3, atol=1e-4) -> None:
    """Analytic vs finite-difference Jacobian in float64 (tf.test)."""
    args = [tf.constant(np.asarray(a, "float64")) for a in args]
    theoretical, numerical = tf.test.compute_gradient(fn, args, delta=delta)
    for t, n in zip(theoretical, numerical, strict=True):
        np.testing.assert_allclose(t, n, atol=atol, rtol=1e-3)


def check_keras_round_trip(model, inputs, tmp_path) -> keras.Model:
    """`.keras` save + safe-mode load gives the same classes, exact outputs."""
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    for a, b in zip(model.layers, restored.layers, strict=True):
        assert type(a) is type(b)
    for a, b in zip(
        _as_list(model(inputs)), _as_list(restored(inputs)), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return restored


def check_saved_model(model, inputs, tmp_path, atol=1e-6) -> None:
    """`model.export` + `tf.saved_model.load` match the eager outputs."""
    path = str(tmp_path / "saved_model")
    model.export(path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    expected = [np.asarray(o) for o in _as_list(model(inputs))]
    if isinstance(inputs, dict):  # a dict-input model serves one dict
        served = reloaded.serve({k: tf.constant(v) for k, v in inputs.items()})
    else:
        served = reloaded.serve(tf.constant(inputs))
    served = _as_list(served)
    for e, s in zip(expected, served, strict=True):
        np.testing.assert_allclose(np.asarray(s), e, atol=atol)
    signature = reloaded.signatures["serving_default"]
    arg_names = sorted(signature.structured_input_signature[1])
    if isinstance(inputs, dict):
        feed = {name: tf.constant(inputs[name]) for name in arg_names}
    else:
        feed = {arg_names[0]: tf.constant(inputs)}
    result = signature(**feed)
    values = [result[k] for k in sorted(result, key=_output_index)]
    for e, s in zip(expected, values, strict=True):
        np.testing.assert_allclose(np.asarray(s), e, atol=atol)


def _output_index(key: str) -> int:
    match = re.search(r"(\d+)$", key)
    return int(match.group(1)) if match else 0


def check_mixed_precision(
    layer_cls, init_kwargs, inputs, call_kwargs=None
) -> None:
    """Under mixed_float16: float outputs float16, weights float32, integer
    outputs unchanged."""
    call_kwargs = call_kwargs or {}
    layer = layer_cls(**init_kwargs, dtype="mixed_float16")
    outputs = _call(layer, inputs, call_kwargs)
    reference = _call(layer_cls(**init_kwargs), inputs, call_kwargs)
    for o, r in zip(_as_list(outputs), _as_list(reference), strict=True):
        if _is_float(r.dtype):
            dtype = keras.backend.standardize_dtype(o.dtype)
            assert dtype == "float16", dtype
            assert np.all(np.isfinite(np.asarray(o, "float32")))
        else:
            assert o.dtype == r.dtype
    for w in layer.weights:
        assert str(w.dtype) == "float32", (w.path, w.dtype)


def run_layer_checks(
    layer_cls,
    init_kwargs,
    inputs,
    *,
    tmp_path,
    expected_output_shape,
    expected_num_trainable_weights,
    expected_num_non_trainable_weights=0,
    call_kwargs=None,
    reference_fn=None,
    atol=1e-5,
    run_mixed_precision=True,
    run_training=True,
    run_saved_model=True,
    bad_init_kwargs=(),
    bad_call_inputs=(),
) -> keras.layers.Layer:
    """Runs every phase of the shared layer harness; returns the layer.

    Args:
        layer_cls: the layer class under test.
        init_kwargs: constructor arguments.
        inputs: NumPy array, or dict {call argument name: NumPy array}.
        tmp_path: pytest's `tmp_path`.
        expected_output_shape: shape tuple, or list of them for several
            outputs (eager, concrete batch).
        expected_num_trainable_weights: int.
        expected_num_non_trainable_weights: int.
        call_kwargs: extra non-tensor call arguments.
        reference_fn: `fn(layer, inputs) -> array or list of arrays`, an
            independent NumPy implementation (never the op under test).
        atol: tolerance of the reference comparison.
        run_mixed_precision, run_training, run_saved_model: phase switches.
        bad_init_kwargs: iterable of `(kwargs, exception, match)`; the
            constructor must raise `exception` matching `match`.
        bad_call_inputs: iterable of `(spec, exception, match)` where the
            spec is a shape tuple, `(shape, dtype)`, or {name: either};
            calling the layer on `keras.Input`s of those specs must raise.
    """
    call_kwargs = call_kwargs or {}
    expected = (
        [tuple(s) for s in expected_output_shape]
        if isinstance(expected_output_shape, list)
        else [tuple(expected_output_shape)]
    )

    # 1. Config round trip.
    layer = layer_cls(**init_kwargs)
    check_config_round_trip(layer)

    # 2. Build from shapes, weight counts.
    built = layer_cls(**init_kwargs)
    if isinstance(inputs, dict):
        shapes = {f"{k}_shape": np.shape(v) for k, v in inputs.items()}
        if type(built).build is not keras.layers.Layer.build:
            built.build(**shapes)
        output_spec_shapes = built.compute_output_shape(**shapes)
    else:
        if type(built).build is not keras.layers.Layer.build:
            built.build(np.shape(inputs))
        output_spec_shapes = built.compute_output_shape(np.shape(inputs))
    if type(built).build is not keras.layers.Layer.build:
        assert len(built.trainable_weights) == expected_num_trainable_weights
        assert len(built.non_trainable_weights) == (
            expected_num_non_trainable_weights
        )
    if len(expected) == 1:
        output_spec_shapes = [output_spec_shapes]
    assert [tuple(s) for s in output_spec_shapes] == expected

    # 3. Symbolic call with an unknown batch.
    sym = _symbolic_inputs(inputs)
    sym_out = _as_list(_call(layer_cls(**init_kwargs), sym, call_kwargs))
    assert [tuple(o.shape) for o in sym_out] == [
        _with_none_batch(s) for s in expected
    ]

    # 4. Eager call: shapes and dtypes.
    outputs = _as_list(_call(layer, inputs, call_kwargs))
    assert [_shape_of(o) for o in outputs] == expected
    for o, s in zip(outputs, sym_out, strict=True):
        assert o.dtype == s.dtype
        if _is_float(o.dtype):
            assert keras.backend.standardize_dtype(o.dtype) == (
                layer.compute_dtype
            )
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert len(layer.non_trainable_weights) == (
        expected_num_non_trainable_weights
    )

    # 5. Reference numerics.
    if reference_fn is not None:
        ref = _as_list(reference_fn(layer, inputs))
        for o, r in zip(outputs, ref, strict=True):
            np.testing.assert_allclose(
                np.asarray(o), np.asarray(r), atol=atol, rtol=atol
            )

    # 6. Gradients.
    check_finite_gradients(layer, inputs, call_kwargs)

    # 7. XLA training step through the layer.
    if run_training:
        check_xla_fit(
            build_wrapped_model(layer_cls(**init_kwargs), inputs, call_kwargs),
            inputs,
        )

    # 8. Mixed precision.
    if run_mixed_precision:
        check_mixed_precision(layer_cls, init_kwargs, inputs, call_kwargs)

    # 9-10. `.keras` and SavedModel round trips.
    model = build_wrapped_model(
        layer_cls(**init_kwargs), inputs, call_kwargs, with_dense=False
    )
    check_keras_round_trip(model, inputs, tmp_path)
    if run_saved_model:
        check_saved_model(model, inputs, tmp_path)

    # 11. Bad input.
    for kwargs, exc, match in bad_init_kwargs:
        with pytest.raises(exc, match=match):
            layer_cls(**kwargs)
    for spec, exc, match in bad_call_inputs:
        if isinstance(spec, dict):
            bad = {k: _input_from_spec(v, k) for k, v in spec.items()}
        else:
            bad = _input_from_spec(spec, "inputs")
        with pytest.raises(exc, match=match):
            _call(layer_cls(**init_kwargs), bad, call_kwargs)
    return layer


def _input_from_spec(spec, name):
    """`spec` is a shape tuple (float32) or `(shape, dtype)`."""
    if len(spec) == 2 and isinstance(spec[0], (tuple, list)):
        shape, dtype = spec
    else:
        shape, dtype = spec, "float32"
    return keras.Input(
        shape=tuple(shape)[1:], batch_size=shape[0], dtype=dtype, name=name
    )


def run_model_checks(
    model: keras.Model, inputs, targets, *, tmp_path, loss
) -> None:
    """A model's harness: one XLA fit step, `.keras` exactness, SavedModel."""
    model.compile(optimizer="adam", loss=loss, jit_compile=True)
    assert model.jit_compile is True, "XLA was silently disabled"
    history = model.fit(
        inputs, targets, batch_size=len(targets), epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
    check_keras_round_trip(model, inputs, tmp_path)
    check_saved_model(model, inputs, tmp_path, atol=1e-5)
