"""`BahdanauDecoder`: the attention GRU decoder of Bahdanau et al. (2015)."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers import _recurrent
from keras_segattn.layers.bahdanau_attention import BahdanauAttention


@keras.saving.register_keras_serializable(package="keras_segattn")
class BahdanauDecoder(keras.layers.Layer):
    """GRU decoder that attends to the encoder annotations at every step.

    Bahdanau, Cho & Bengio (ICLR 2015), section 3.1 and appendix A.2.2, for
    target step i with previous state `s_{i-1}` and previous word
    `y_{i-1}`:

    - context `c_i = Σ_j α_ij h_j` with `α_i` from `BahdanauAttention`
      queried by `s_{i-1}` (the attention reads the state *before* the
      step, so the context is fed into the recurrence);
    - state `s_i = GRU(s_{i-1}, [E y_{i-1}; c_i])`;
    - deep output `t_i = maxout(W_t [s_i; E y_{i-1}; c_i])` (maxout with
      pools of 2, `readout_units` outputs), from which a `Dense` gives the
      word logits (`p(y_i | y_<i, x) = g(y_{i-1}, s_i, c_i)`, eq. 4).

    With `attention=False` it is the RNN Encoder-Decoder of Cho et al.
    (2014) that the paper compares against: the same recurrence and
    readout with one fixed context vector `c` for every step.

    The layer runs all target steps with `keras.ops.scan` (teacher
    forcing: the embeddings of the reference words are given); `step` and
    `readout` are the same maths for one step, for greedy and beam
    decoding, with `precompute_keys` done once per source sentence.

    Args:
        units: int > 0, GRU state size.
        attention_units: int > 0, alignment layer size (attention only).
        readout_units: int > 0, size of the maxout output `t_i`.
        attention: bool, attend (True) or use a fixed context (False).
        normalize: bool, weight-normalised attention (see
            `BahdanauAttention`).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        target_embeddings: [B, T, E], embeddings of `y_0 .. y_{T-1}` (the
            target shifted right, starting with the start token).
        annotations: [B, S, Da] encoder states to attend over
            (`attention=True`), or the fixed context [B, Da]
            (`attention=False`).
        initial_state: [B, units], `s_0`.
        annotations_mask: optional bool [B, S], true on real source
            tokens; filled by Keras from the annotations' Keras mask.
        training: unused, accepted for Keras.

    Returns:
        (features [B, T, readout_units], attention [B, T, S] float32); with
        `attention=False` the second output is [B, T, 0].

    Raises:
        ValueError: for non-positive sizes, or inputs of wrong rank or
            mismatched batch sizes.
    """

    def __init__(
        self,
        units: int,
        attention_units: int,
        readout_units: int,
        attention: bool = True,
        normalize: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = validation.check_positive_int(units, "units")
        self.attention_units = validation.check_positive_int(
            attention_units, "attention_units"
        )
        self.readout_units = validation.check_positive_int(
            readout_units, "readout_units"
        )
        self.use_attention = bool(attention)
        self.normalize = bool(normalize)
        self.cell = keras.layers.GRUCell(
            self.units, dtype=self.dtype_policy, name="cell"
        )
        self.attention = (
            BahdanauAttention(
                self.attention_units,
                normalize=self.normalize,
                dtype=self.dtype_policy,
                name="attention",
            )
            if self.use_attention
            else None
        )
        self.readout_dense = keras.layers.Dense(
            2 * self.readout_units, dtype=self.dtype_policy, name="readout"
        )

    def _check_inputs(self, embeddings_shape, annotations_shape, state_shape):
        embeddings_shape = validation.check_rank(
            embeddings_shape, 3, "target_embeddings"
        )
        annotations_shape = validation.check_rank(
            annotations_shape,
            3 if self.use_attention else 2,
            "annotations",
        )
        state_shape = validation.check_rank(state_shape, 2, "initial_state")
        validation.check_static_dims(
            state_shape, {-1: self.units}, "initial_state"
        )
        batch = {
            name: shape[0]
            for name, shape in (
                ("target_embeddings", embeddings_shape),
                ("annotations", annotations_shape),
                ("initial_state", state_shape),
            )
            if shape[0] is not None
        }
        if len(set(batch.values())) > 1:
            raise ValueError(
                "Mismatched batch sizes. Expected the same size on axis 0 "
                f"of {', '.join(batch)}. Received: {batch}."
            )
        for shape, name in (
            (embeddings_shape, "target_embeddings"),
            (annotations_shape, "annotations"),
        ):
            if shape[-1] is None:
                raise ValueError(
                    f"Invalid shape for argument `{name}`. Expected a known "
                    f"last dimension. Received: {name}.shape={shape}."
                )
        return embeddings_shape[-1], annotations_shape[-1]

    def build(
        self, target_embeddings_shape, annotations_shape, initial_state_shape
    ):
        embed_dim, context_dim = self._check_inputs(
            target_embeddings_shape, annotations_shape, initial_state_shape
        )
        self.cell.build((None, embed_dim + context_dim))
        if self.attention is not None:
            self.attention.build((None, self.units), (None, None, context_dim))
        self.readout_dense.build((None, self.units + embed_dim + context_dim))

    # === One step, for decoding ===

    def precompute_keys(self, annotations):
        """`W1 h` for the attention (None without attention)."""
        if self.attention is None:
            return None
        return self.attention.precompute_keys(annotations)

    def step(self, embedding, state, annotations, processed_keys, mask=None):
        """One recurrence step.

        Args:
            embedding: [B, E], the embedding of `y_{i-1}`.
            state: [B, units], `s_{i-1}`.
            annotations: as in `call`.
            processed_keys: `precompute_keys(annotations)`.
            mask: optional bool [B, S].

        Returns:
            (new state `s_i` [B, units], context `c_i` [B, Da], attention
            weights [B, S] float32, or [B, 0] without attention).
        """
        if self.attention is None:
            context = ops.cast(annotations, self.compute_dtype)
            weights = ops.zeros((ops.shape(state)[0], 0), "float32")
        else:
            context, weights = self.attention.attend(
                state, annotations, processed_keys, mask
            )
        inputs = ops.concatenate(
            [ops.cast(embedding, self.compute_dtype), context], axis=-1
        )
        new_state, _ = self.cell(inputs, [state])
        return new_state, context, weights

    def readout(self, state, embedding, context):
        """Maxout deep output `t_i` from `s_i`, `E y_{i-1}` and `c_i`."""
        hidden = self.readout_dense(
            ops.concatenate([state, embedding, context], axis=-1)
        )
        shape = ops.shape(hidden)
        pooled = ops.reshape(
            hidden,
            [shape[i] for i in range(len(hidden.shape) - 1)]
            + [self.readout_units, 2],
        )
        return ops.max(pooled, axis=-1)

    # === All steps, for teacher forcing ===

    def call(
        self,
        target_embeddings,
        annotations,
        initial_state,
        annotations_mask=None,
        training=None,
    ):
        self._check_inputs(
            target_embeddings.shape, annotations.shape, initial_state.shape
        )
        dtype = self.compute_dtype
        embeddings = ops.cast(target_embeddings, dtype)
        annotations = ops.cast(annotations, dtype)
        processed_keys = self.precompute_keys(annotations)

        # The carry holds this step's context and weights next to the
        # state, and the stacked carries are the outputs.
        def body(carry, embedding):
            outputs = self.step(
                embedding,
                carry[0],
                annotations,
                processed_keys,
                annotations_mask,
            )
            return outputs, outputs

        initial_state = ops.cast(initial_state, dtype)
        batch = ops.shape(initial_state)[0]
        sources = ops.shape(annotations)[1] if self.use_attention else 0
        initial = (
            initial_state,
            ops.zeros((batch, annotations.shape[-1]), dtype),
            ops.zeros((batch, sources), "float32"),
        )
        states, contexts, weights = _recurrent.scan(
            body, initial, ops.transpose(embeddings, (1, 0, 2))
        )
        states, contexts, weights = (
            ops.transpose(x, (1, 0, 2)) for x in (states, contexts, weights)
        )
        return self.readout(states, embeddings, contexts), weights

    def compute_output_shape(
        self, target_embeddings_shape, annotations_shape, initial_state_shape
    ):
        self._check_inputs(
            target_embeddings_shape, annotations_shape, initial_state_shape
        )
        batch, steps = tuple(target_embeddings_shape)[:2]
        sources = annotations_shape[1] if self.use_attention else 0
        return (batch, steps, self.readout_units), (batch, steps, sources)

    def compute_output_spec(
        self, target_embeddings, annotations, initial_state, **kwargs
    ):
        features, weights = self.compute_output_shape(
            target_embeddings.shape, annotations.shape, initial_state.shape
        )
        return (
            keras.KerasTensor(features, self.compute_dtype),
            keras.KerasTensor(weights, "float32"),
        )

    def compute_mask(self, *args, **kwargs):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "attention_units": self.attention_units,
                "readout_units": self.readout_units,
                "attention": self.use_attention,
                "normalize": self.normalize,
            }
        )
        return config
