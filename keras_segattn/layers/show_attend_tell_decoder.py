"""`ShowAttendTellDecoder`: the LSTM caption decoder of Xu et al. (2015)."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers._recurrent import scan as _scan
from keras_segattn.layers.bahdanau_attention import BahdanauAttention
from keras_segattn.ops import _random

ATTENTION_MODES = ("soft", "hard", "none")


@keras.saving.register_keras_serializable(package="keras_segattn")
class ShowAttendTellDecoder(keras.layers.Layer):
    """LSTM that attends to L image locations at every generated word.

    Xu et al., "Show, Attend and Tell", ICML 2015, sections 3.1.2 and 4.
    For step t with previous state `(h_{t-1}, c_{t-1})` and previous word
    `y_{t-1}` (embedding `E y_{t-1}`), over annotations `a_1 .. a_L`:

    - `α_t = softmax_i(f_att(a_i, h_{t-1}))` with `f_att` the MLP of
      `BahdanauAttention` (the same maths: `vᵀ tanh(W1 a_i + W2 h)`);
    - soft attention: `ẑ_t = β_t Σ_i α_ti a_i`, with the gating scalar
      `β_t = σ(f_β(h_{t-1}))` (section 4.2.1);
    - hard attention: `ẑ_t = β_t a_{s_t}` with `s_t ~ Multinoulli(α_t)`
      while training (sampled by inverse CDF from uniform `noise`, so the
      layer stays deterministic given its inputs), and with probability
      `expected_context_probability` (the paper's 0.5) per batch the
      expected context instead (section 4.1: "we set the sampled attention
      location s̃ to its expected value α"); at inference the most
      attended location;
    - `h_t, c_t = LSTM([E y_{t-1}; ẑ_t], (h_{t-1}, c_{t-1}))`;
    - deep output features `E y_{t-1} + L_h h_t + L_z ẑ_t`, which a
      `Dense(vocabulary)` (`L_o`) turns into word logits (eq. 7).

    With `attention="none"` it is the plain RNN captioner of the
    lectures: the context is the same mean annotation `(1/L) Σ_i a_i` at
    every step (uniform weights, no gate), so the model sees the whole
    image but cannot look at one part of it per word.

    Args:
        units: int > 0, LSTM size.
        attention_units: int > 0, size of the attention MLP.
        attention: "soft", "hard" or "none".
        expected_context_probability: float in [0, 1], the probability per
            batch that hard attention trains on the expected context (the
            soft one) instead of a sampled location; 0.5 in the paper.
        seed: seed of the hard-attention draws.
        **kwargs: base `Layer` arguments.

    Call arguments:
        caption_embeddings: [B, T, E], embeddings of `y_0 .. y_{T-1}`.
        annotations: [B, L, D] image features.
        initial_state: [B, 2·units], `[h_0; c_0]`.
        noise: optional float [B, T] uniform in [0, 1) for hard sampling
            (drawn by the layer when omitted); `use_expected`: optional
            bool scalar, the expected-context switch (drawn with
            `expected_context_probability` when omitted).
        training: hard attention samples only when true.

    Returns:
        (features [B, T, E], attention α [B, T, L] float32, log α at the
        sampled location [B, T] float32; zeros unless hard attention
        samples).
    """

    def __init__(
        self,
        units: int,
        attention_units: int,
        attention: str = "soft",
        expected_context_probability: float = 0.5,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = validation.check_positive_int(units, "units")
        self.attention_units = validation.check_positive_int(
            attention_units, "attention_units"
        )
        self.attention_mode = validation.check_one_of(
            attention, ATTENTION_MODES, "attention"
        )
        self.expected_context_probability = validation.check_fraction(
            expected_context_probability, "expected_context_probability"
        )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        policy = self.dtype_policy
        self.cell = keras.layers.LSTMCell(units, dtype=policy, name="cell")
        self.attention = self.gate = None
        if self.uses_attention:
            self.attention = BahdanauAttention(
                self.attention_units, dtype=policy, name="attention"
            )
            self.gate = keras.layers.Dense(
                1, activation="sigmoid", dtype=policy, name="gate"
            )  # f_β
        self.hidden_projection = None  # L_h, built with the embedding size
        self.context_projection = None  # L_z

    @property
    def uses_attention(self) -> bool:
        return self.attention_mode != "none"

    def _check(self, embeddings_shape, annotations_shape, state_shape):
        embeddings_shape = validation.check_rank(
            embeddings_shape, 3, "caption_embeddings"
        )
        annotations_shape = validation.check_rank(
            annotations_shape, 3, "annotations"
        )
        validation.check_rank(state_shape, 2, "initial_state")
        validation.check_static_dims(
            state_shape, {-1: 2 * self.units}, "initial_state"
        )
        return embeddings_shape[-1], annotations_shape[-1]

    def build(
        self, caption_embeddings_shape, annotations_shape, initial_state_shape
    ):
        embed_dim, feature_dim = self._check(
            caption_embeddings_shape, annotations_shape, initial_state_shape
        )
        policy = self.dtype_policy
        self.hidden_projection = keras.layers.Dense(
            embed_dim, dtype=policy, name="hidden_projection"
        )
        self.hidden_projection.build((None, self.units))
        self.cell.build((None, embed_dim + feature_dim))
        if self.uses_attention:
            self.attention.build((None, self.units), (None, None, feature_dim))
            self.gate.build((None, self.units))
        self.context_projection = keras.layers.Dense(
            embed_dim,
            use_bias=False,
            dtype=policy,
            name="context_projection",
        )
        self.context_projection.build((None, feature_dim))

    def precompute_keys(self, annotations):
        if not self.uses_attention:
            return None
        return self.attention.precompute_keys(annotations)

    def step(
        self,
        embedding,
        state,
        annotations,
        keys,
        noise=None,
        use_expected=None,
        training=False,
    ):
        """One step; returns (state, features, α, log α of the sample)."""
        dtype = self.compute_dtype
        embedding = ops.cast(embedding, dtype)
        h, c = state[:, : self.units], state[:, self.units :]
        batch = ops.shape(state)[0]
        if not self.uses_attention:
            locations = ops.shape(annotations)[1]
            context = ops.mean(ops.cast(annotations, dtype), axis=1)
            weights = ops.ones((batch, locations), "float32") / ops.cast(
                locations, "float32"
            )
            sample_log_prob = ops.zeros((batch,), "float32")
        else:
            context, weights = self.attention.attend(h, annotations, keys)
            sample_log_prob = ops.zeros((batch,), "float32")
            if self.attention_mode == "hard":
                if training:
                    # Inverse CDF: the first location whose cumulative
                    # weight exceeds the uniform draw.
                    cumulative = ops.cumsum(weights, axis=-1)
                    index = ops.sum(
                        ops.cast(cumulative < noise[:, None], "int32"), -1
                    )
                else:
                    index = ops.argmax(weights, axis=-1)
                index = ops.minimum(
                    ops.cast(index, "int32"), ops.shape(weights)[1] - 1
                )
                sampled = ops.take_along_axis(
                    ops.cast(annotations, dtype), index[:, None, None], axis=1
                )[:, 0]
                chosen = ops.take_along_axis(weights, index[:, None], 1)[:, 0]
                if training:
                    sample_log_prob = ops.where(
                        use_expected,
                        ops.zeros_like(chosen),
                        ops.log(chosen + 1e-8),
                    )
                    context = ops.where(use_expected, context, sampled)
                else:
                    context = sampled
            context = self.gate(h) * context
        inputs = ops.concatenate([embedding, context], axis=-1)
        output, (h, c) = self.cell(inputs, [h, c])
        features = (
            embedding
            + self.hidden_projection(output)
            + self.context_projection(context)
        )
        return ops.concatenate([h, c], -1), features, weights, sample_log_prob

    def call(
        self,
        caption_embeddings,
        annotations,
        initial_state,
        noise=None,
        use_expected=None,
        training=None,
    ):
        self._check(
            caption_embeddings.shape, annotations.shape, initial_state.shape
        )
        dtype = self.compute_dtype
        embeddings = ops.cast(caption_embeddings, dtype)
        annotations = ops.cast(annotations, dtype)
        keys = self.precompute_keys(annotations)
        batch, steps = ops.shape(embeddings)[0], ops.shape(embeddings)[1]
        sampling = bool(training) and self.attention_mode == "hard"
        if sampling and noise is None:
            noise = _random.uniform((batch, steps), self.seed_generator)
        if sampling and use_expected is None:
            use_expected = (
                _random.uniform((), self.seed_generator)
                < self.expected_context_probability
            )
        if noise is None:
            noise = ops.zeros((batch, steps), "float32")

        def body(carry, inputs):
            embedding, step_noise = inputs
            state, features, weights, log_prob = self.step(
                embedding,
                carry[0],
                annotations,
                keys,
                noise=step_noise,
                use_expected=use_expected,
                training=sampling,
            )
            outputs = (state, features, weights, log_prob)
            return outputs, outputs

        initial = (
            ops.cast(initial_state, dtype),
            ops.zeros((batch, embeddings.shape[-1]), dtype),
            ops.zeros((batch, ops.shape(annotations)[1]), "float32"),
            ops.zeros((batch,), "float32"),
        )
        _, features, weights, log_probs = _scan(
            body,
            initial,
            (
                ops.transpose(embeddings, (1, 0, 2)),
                ops.transpose(ops.cast(noise, "float32")),
            ),
        )
        return (
            ops.transpose(features, (1, 0, 2)),
            ops.transpose(weights, (1, 0, 2)),
            ops.transpose(log_probs),
        )

    def compute_output_shape(
        self, caption_embeddings_shape, annotations_shape, initial_state_shape
    ):
        batch, steps, embed_dim = tuple(caption_embeddings_shape)
        locations = tuple(annotations_shape)[1]
        return (
            (batch, steps, embed_dim),
            (batch, steps, locations),
            (batch, steps),
        )

    def compute_output_spec(
        self, caption_embeddings, annotations, initial_state, **kwargs
    ):
        features, weights, log_probs = self.compute_output_shape(
            caption_embeddings.shape, annotations.shape, initial_state.shape
        )
        return (
            keras.KerasTensor(features, self.compute_dtype),
            keras.KerasTensor(weights, "float32"),
            keras.KerasTensor(log_probs, "float32"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "attention_units": self.attention_units,
                "attention": self.attention_mode,
                "expected_context_probability": (
                    self.expected_context_probability
                ),
                "seed": self.seed,
            }
        )
        return config
