"""Tests for `keras_segattn.models.Seq2SeqTranslator` (its decoders:
tests/decoding/)."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.models import Seq2SeqTranslator
from tests.decoding.helpers import source_ids
from tests.decoding.helpers import translator

START = 2


def _batch(seed=0, steps=5):
    rng = np.random.default_rng(seed)
    target = rng.integers(4, 9, size=(3, steps)).astype("int32")
    target[:, 0] = START
    return {"source": source_ids(seed), "target_in": target}


@pytest.mark.parametrize("attention", [True, False])
def test_fit_with_xla_and_keras_round_trip(tmp_path, attention):
    model = translator(attention)
    batch = _batch()
    logits = model(batch)
    assert tuple(logits.shape) == (3, 5, 9)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
        jit_compile=True,
    )
    assert model.jit_compile is True, "XLA was silently disabled"
    target_out = np.roll(batch["target_in"], -1, axis=1)
    weights = np.ones(target_out.shape, "float32")
    weights[:, -1] = 0.0
    history = model.fit(
        batch, target_out, sample_weight=weights, epochs=3, verbose=0
    )
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    model.save(tmp_path / "nmt.keras")
    reloaded = keras.saving.load_model(tmp_path / "nmt.keras")
    assert isinstance(reloaded, Seq2SeqTranslator)
    assert reloaded.get_config() == model.get_config()
    np.testing.assert_allclose(reloaded(batch), model(batch), atol=1e-6)


def test_mixed_precision_logits_are_float32():
    model = translator(dtype="mixed_float16")
    logits = model(_batch())
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert all(str(w.dtype) == "float32" for w in model.weights)


def test_source_padding_does_not_change_the_output():
    model = translator()
    batch = _batch()
    padded = dict(batch)
    padded["source"] = np.pad(batch["source"], ((0, 0), (0, 3)))
    np.testing.assert_allclose(model(padded), model(batch), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"source_vocabulary_size": 1}, "source_vocabulary_size"),
        ({"decoder_units": 0}, "decoder_units"),
        ({"dropout": 1.0}, re.escape("Received: dropout=1.0")),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    args = dict(source_vocabulary_size=10, target_vocabulary_size=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Seq2SeqTranslator(**args)
