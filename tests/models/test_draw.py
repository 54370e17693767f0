"""Tests for `keras_segattn.models.DRAW`."""

import keras
import numpy as np
import pytest

from keras_segattn.models.draw import DRAW


def _images(count=8, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(count, 12, 12, 1)) > 0.6).astype("float32")


def _model(**kwargs):
    return DRAW(
        image_shape=(12, 12, 1),
        steps=3,
        units=8,
        latent_dim=4,
        write_size=3,
        seed=0,
        **kwargs,
    )


def test_bound_terms_match_numpy():
    model = _model()
    x = _images()
    outputs = model(x)
    assert outputs["canvases"].shape == (8, 3, 12, 12)
    assert outputs["kl"].shape == (8, 3)
    total, reconstruction, kl = model.negative_bound(x, outputs)
    logits = np.asarray(outputs["canvases"], "float64")[:, -1]
    p = 1.0 / (1.0 + np.exp(-logits))
    expected = -np.sum(
        x[..., 0] * np.log(p) + (1 - x[..., 0]) * np.log(1 - p), axis=(1, 2)
    )
    np.testing.assert_allclose(reconstruction, expected, rtol=1e-4)
    assert np.all(np.asarray(kl) >= 0.0)
    np.testing.assert_allclose(
        total, np.asarray(reconstruction) + kl, rtol=1e-6
    )


def test_fit_with_xla_lowers_the_bound_and_round_trips(tmp_path):
    model = _model()
    x = _images(16)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    assert model.jit_compile is True, "XLA was silently disabled"
    history = model.fit(x, epochs=5, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    assert {"reconstruction", "kl"} <= set(history.history)
    model.save(tmp_path / "draw.keras")
    reloaded = keras.saving.load_model(tmp_path / "draw.keras")
    assert reloaded.get_config() == model.get_config()
    samples = reloaded.generate(2, seed=1)
    assert samples.shape == (2, 3, 12, 12)
    assert np.all((np.asarray(samples) >= 0) & (np.asarray(samples) <= 1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_shape"):
        DRAW(image_shape=(12, 12, 3))
    with pytest.raises(ValueError, match="read_size"):
        DRAW(read_size=1)
    with pytest.raises(ValueError, match="steps"):
        DRAW(steps=0)
