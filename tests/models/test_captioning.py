"""Tests for `keras_segattn.models.ShowAttendTellCaptioner`."""

import keras
import numpy as np
import pytest

from keras_segattn.decoding import beam_search_decode
from keras_segattn.decoding import greedy_decode
from keras_segattn.models import ShowAttendTellCaptioner

START, END, NEVER = 2, 3, 99
SMALL = dict(
    image_shape=(16, 16, 1),
    filters=(4, 6),
    embedding_dim=6,
    decoder_units=8,
    attention_units=5,
)


def _model(attention="soft", **kwargs):
    return ShowAttendTellCaptioner(12, attention=attention, **SMALL, **kwargs)


def _data(seed=0, batch=4, steps=5):
    rng = np.random.default_rng(seed)
    x = {
        "images": rng.uniform(0, 255, (batch, 16, 16, 1)).astype("float32"),
        "caption_in": rng.integers(4, 12, (batch, steps)).astype("int32"),
    }
    x["caption_in"][:, 0] = START
    y = np.roll(x["caption_in"], -1, axis=1)
    y[:, -1] = END
    y[0, 3:] = 0  # a shorter caption
    return x, y


@pytest.mark.parametrize("attention", ["soft", "hard", "none"])
def test_fit_with_xla_and_keras_round_trip(tmp_path, attention):
    model = _model(attention)
    x, y = _data()
    outputs = model(x)
    assert outputs["logits"].shape == (4, 5, 12)
    assert outputs["attention"].shape == (4, 5, 16)  # 4x4 grid
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    assert model.jit_compile is True, "XLA was silently disabled"
    history = model.fit(x, y, epochs=4, batch_size=4, verbose=0)
    nll = history.history["nll"]
    assert np.all(np.isfinite(history.history["loss"]))
    assert nll[-1] < nll[0]
    assert "accuracy" in history.history
    if attention == "hard":
        assert float(model.reward_updates.numpy()) == 4.0
        assert float(model.reward_baseline) < 0.0  # a log likelihood
    model.save(tmp_path / "captioner.keras")
    reloaded = keras.saving.load_model(tmp_path / "captioner.keras")
    assert reloaded.get_config() == model.get_config()
    np.testing.assert_allclose(
        reloaded(x)["logits"], model(x)["logits"], atol=1e-5
    )


def test_doubly_stochastic_penalty_value():
    model = _model("soft", doubly_stochastic=2.0)
    x, y = _data(1)
    outputs = model(x)
    mask = (y > 0).astype("float64")
    logits = np.asarray(outputs["logits"], "float64")
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, y[..., None], -1)[..., 0]
    coverage = (np.asarray(outputs["attention"]) * mask[..., None]).sum(1)
    expected = (nll * mask).sum() / mask.sum() + 2.0 * np.mean(
        (1.0 - coverage) ** 2
    )
    loss = model.compute_loss(x, y, outputs, training=False)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_greedy_and_beam_decoding_use_the_same_steps():
    model = _model("soft")
    x, _ = _data(2)
    images = x["images"]
    raw = greedy_decode(model, images, 5, START, NEVER)
    caption_in = np.concatenate(
        [np.full((4, 1), START), raw["tokens"].numpy()[:, :-1]], 1
    )
    logits = model({"images": images, "caption_in": caption_in})["logits"]
    np.testing.assert_array_equal(np.argmax(logits, -1), raw["tokens"])
    assert raw["attention"].shape == (4, 5, 16)
    beam = beam_search_decode(model, images, 5, START, END, beam_width=1)
    greedy = greedy_decode(model, images, 5, START, END)
    np.testing.assert_array_equal(beam["tokens"], greedy["tokens"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="`attention`"):
        _model("glance")
    with pytest.raises(ValueError, match="image_shape"):
        ShowAttendTellCaptioner(12, image_shape=(16, 16))
    with pytest.raises(ValueError, match="vocabulary_size"):
        ShowAttendTellCaptioner(1)
    with pytest.raises(ValueError, match="Invalid rank for argument `images`"):
        _model().encode(np.zeros((16, 16, 1), "float32"))
