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


@pytest.mark.parametrize(
    "attention, options",
    [
        ("soft", {}),
        ("hard", {}),
        ("none", {}),
        ("hard", {"baseline": "self_critical"}),
        ("hard", {"baseline": "learned", "reward": "token_accuracy"}),
    ],
)
def test_fit_with_xla_and_keras_round_trip(tmp_path, attention, options):
    model = _model(attention, **options)
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
        if "reward" not in options:  # a log likelihood
            assert float(model.reward_baseline) < 0.0
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


def _log_softmax(logits):
    logits = np.asarray(logits, "float64")
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def np_hard_loss(model, x, y, outputs, baseline_fn):
    """The REINFORCE surrogate of Xu et al. (2015), eq. 12, in NumPy:
    mean NLL + λ coverage penalty − Σ_n (r_n − b_n) Σ_t log α(s_t) / tokens
    − λ_e H(α) / tokens, with r = log p(y | s, a)."""
    mask = (y > 0).astype("float64")
    tokens = mask.sum()
    log_p = np.take_along_axis(
        _log_softmax(outputs["logits"]), y[..., None], -1
    )
    nll = -(log_p[..., 0] * mask)
    alpha = np.asarray(outputs["attention"], "float64")
    coverage = (alpha * mask[..., None]).sum(1)
    reward = -nll.sum(-1)
    log_probs = (np.asarray(outputs["sample_log_probs"]) * mask).sum(-1)
    entropy = -(alpha * mask[..., None] * np.log(alpha + 1e-8)).sum()
    return (
        nll.sum() / tokens
        + model.doubly_stochastic * np.mean((1.0 - coverage) ** 2)
        - ((reward - baseline_fn(reward)) * log_probs).sum() / tokens
        - model.entropy_weight * entropy / tokens
    ), reward


def _hard_outputs(model, x, seed=0):
    # One training forward pass whose samples are certainly used.
    outputs = dict(model(x, training=False))
    rng = np.random.default_rng(seed)
    outputs["sample_log_probs"] = np.log(
        rng.uniform(0.1, 1.0, outputs["sample_log_probs"].shape)
    ).astype("float32")
    return outputs


def test_self_critical_baseline_is_the_greedy_reward():
    model = _model("hard", baseline="self_critical", dropout=0.0)
    x, y = _data(3)
    outputs = _hard_outputs(model, x)
    # Perturbed logits: the sampled run's reward differs from the greedy.
    outputs["logits"] = outputs["logits"] + np.random.default_rng(1).normal(
        size=outputs["logits"].shape
    ).astype("float32")
    greedy = np.take_along_axis(
        _log_softmax(model(x, training=False)["logits"]), y[..., None], -1
    )[..., 0]
    greedy_reward = (greedy * (y > 0)).sum(-1)
    expected, reward = np_hard_loss(
        model, x, y, outputs, lambda r: greedy_reward
    )
    assert np.all(np.abs(reward - greedy_reward) > 1e-3)
    loss = model.compute_loss(x, y, outputs, training=True)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_learned_baseline_is_regressed_on_the_reward():
    model = _model("hard", baseline="learned")
    x, y = _data(4)
    outputs = _hard_outputs(model, x)
    value = np.asarray(outputs["reward_value"], "float64")
    assert value.shape == (4,)
    expected, reward = np_hard_loss(model, x, y, outputs, lambda r: value)
    expected += np.mean((value - reward) ** 2)
    loss = model.compute_loss(x, y, outputs, training=True)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    # The value head learns from the squared error alone: the encoder gets
    # no gradient from it.
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = model(x, training=False)["reward_value"]
        target = tf.reduce_sum(value)
    grads = tape.gradient(
        target, [model.value_head.kernel, model.image_encoder.weights[1]]
    )
    assert grads[0] is not None and grads[1] is None


def test_moving_average_baseline_and_entropy_bonus():
    x, y = _data(5)
    model = _model("hard", entropy_weight=0.0)
    outputs = _hard_outputs(model, x)
    # Before any update the baseline is the batch's mean reward.
    expected, reward = np_hard_loss(
        model, x, y, outputs, lambda r: np.full_like(r, r.mean())
    )
    loss = model.compute_loss(x, y, outputs, training=True)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(
        float(model.reward_baseline), reward.mean(), rtol=1e-5
    )
    # The entropy bonus subtracts λ_e H(α) / tokens.
    model.entropy_weight = 0.5
    model.reward_updates.assign(0.0)
    with_bonus = model.compute_loss(x, y, outputs, training=True)
    mask = (y > 0).astype("float64")
    alpha = np.asarray(outputs["attention"], "float64")
    entropy = -(alpha * mask[..., None] * np.log(alpha + 1e-8)).sum()
    np.testing.assert_allclose(
        float(loss) - float(with_bonus), 0.5 * entropy / mask.sum(), rtol=1e-4
    )


def test_token_accuracy_and_custom_rewards():
    from keras_segattn.models.captioning import _caption_reward

    x, y = _data(6)
    model = _model("hard")
    logits = np.asarray(model(x)["logits"])
    mask = (y > 0).astype("float32")
    right = (logits.argmax(-1) == y) * mask
    np.testing.assert_allclose(
        _caption_reward("token_accuracy", y, logits, mask),
        right.sum(-1) / mask.sum(-1),
    )
    custom = _model(
        "hard",
        baseline="self_critical",
        reward=lambda y, logits, m: keras.ops.sum(m, -1),
    )
    outputs = _hard_outputs(custom, x)
    # Equal rewards for sample and greedy run: no REINFORCE term.
    no_reinforce, _ = np_hard_loss(custom, x, y, outputs, lambda r: r)
    np.testing.assert_allclose(
        float(custom.compute_loss(x, y, outputs, training=True)),
        no_reinforce,
        rtol=1e-5,
    )


def test_reward_of_the_wrong_shape_is_refused():
    x, y = _data(7)
    for bad in (lambda y, logits, m: m, lambda y, logits, m: m[:2, 0]):
        model = _model("hard", reward=bad)
        outputs = _hard_outputs(model, x)
        with pytest.raises(ValueError, match="`reward`.*shape"):
            model.compute_loss(x, y, outputs, training=True)


def test_encoder_options():
    from keras_segattn.models import build_caption_encoder

    # The default: a 6x6 grid with (y, x) channels on an 84x84 canvas.
    encoder = build_caption_encoder((84, 84, 1))
    annotations, state = encoder.outputs
    assert annotations.shape == (None, 36, 130)
    assert len([w for w in encoder.layers if "conv" in w.name]) == 8
    # The previous encoder: an 11x11 grid, no positions.
    old = build_caption_encoder(
        (84, 84, 1), (32, 64, 64), block_depth=1, coordinates=False
    )
    assert old.outputs[0].shape == (None, 121, 64)
    images = np.random.default_rng(0).uniform(0, 255, (2, 84, 84, 1))
    values = np.asarray(encoder(images.astype("float32"))[0])
    np.testing.assert_allclose(
        values[0, :6, -1], np.arange(6) / 3 - 5 / 6, atol=1e-6
    )
    np.testing.assert_allclose(
        values[1, ::6, -2], np.arange(6) / 3 - 5 / 6, atol=1e-6
    )
    model = _model("soft", block_depth=1, coordinates=False)
    config = model.get_config()
    assert config["block_depth"] == 1 and config["coordinates"] is False
    assert ShowAttendTellCaptioner.from_config(config).get_config() == config
    assert model(_data()[0])["attention"].shape == (4, 5, 16)


def test_bad_arguments():
    with pytest.raises(ValueError, match="`attention`"):
        _model("glance")
    with pytest.raises(ValueError, match="image_shape"):
        ShowAttendTellCaptioner(12, image_shape=(16, 16))
    with pytest.raises(ValueError, match="vocabulary_size"):
        ShowAttendTellCaptioner(1)
    with pytest.raises(ValueError, match=r"`baseline`.*Received: baseline='v"):
        _model("hard", baseline="value")
    with pytest.raises(ValueError, match="`reward`"):
        _model("hard", reward="cider")
    with pytest.raises(ValueError, match="`block_depth`"):
        _model(block_depth=0)
    with pytest.raises(TypeError, match="`coordinates`"):
        _model(coordinates="yes")
    with pytest.raises(ValueError, match="`expected_context_probability`"):
        _model("hard", expected_context_probability=2.0)
    with pytest.raises(ValueError, match="Invalid rank for argument `images`"):
        _model().encode(np.zeros((16, 16, 1), "float32"))
