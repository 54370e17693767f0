"""Tests for `keras_segattn.losses.TokenCrossentropy` (under
MirroredStrategy: tests/distribute/, the translator family)."""

import json

import keras
import numpy as np
import pytest

from keras_segattn.losses import TokenCrossentropy


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(3, 4, 5)).astype("float32")
    labels = rng.integers(0, 5, size=(3, 4)).astype("int32")
    weights = np.ones((3, 4), "float32")
    weights[0, 2:] = 0.0
    weights[2, 1] = 0.5
    return labels, logits, weights


def np_token_mean(labels, logits, weights):
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    return float((nll * weights).sum() / weights.sum())


def test_matches_numpy_and_keras_mean_with_sample_weight_on_one_device():
    labels, logits, weights = _batch()
    loss = TokenCrossentropy(from_logits=True)
    value = float(loss(labels, logits, sample_weight=weights))
    np.testing.assert_allclose(
        value, np_token_mean(labels, logits, weights), rtol=1e-5
    )
    keras_loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight"
    )
    np.testing.assert_allclose(
        value,
        float(keras_loss(labels, logits, sample_weight=weights)),
        rtol=1e-5,
    )
    probs = keras.ops.softmax(logits)
    np.testing.assert_allclose(
        float(TokenCrossentropy()(labels, probs, sample_weight=weights)),
        value,
        rtol=1e-4,
    )


@pytest.mark.parametrize("per_example", [True, False])
def test_example_weights_and_ignore_class(per_example):
    labels, logits, _ = _batch(1)
    labels[1, 3] = 0
    keep = (labels != 0).astype("float32")
    loss = TokenCrossentropy(from_logits=True, ignore_class=0)
    if per_example:
        example = np.array([1.0, 2.0, 0.0], "float32")
        value = loss(labels, logits, sample_weight=example)
        weights = keep * example[:, None]
    else:
        value = loss(labels, logits)
        weights = keep
    np.testing.assert_allclose(
        float(value), np_token_mean(labels, logits, weights), rtol=1e-5
    )


def test_config_round_trip():
    loss = TokenCrossentropy(from_logits=True, ignore_class=0, name="tokens")
    config = loss.get_config()
    assert TokenCrossentropy.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    )
    assert isinstance(restored, TokenCrossentropy)
    assert restored.get_config() == config
