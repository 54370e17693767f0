"""Attention-based neural machine translation (Bahdanau et al., 2015).

`Seq2SeqTranslator` is the trainable functional model (teacher forcing:
source ids and the shifted target ids in, word logits out);
`greedy_decode` and `beam_search_decode` generate from it with
`tf.while_loop`s of a fixed maximum length, so they run inside a
`tf.function` and in an exported SavedModel (TensorFlow backend).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_segattn import validation
from keras_segattn.layers.bahdanau_decoder import BahdanauDecoder
from keras_segattn.models._config import ConstructorConfigMixin


@keras.saving.register_keras_serializable(package="keras_segattn")
class Seq2SeqTranslator(ConstructorConfigMixin, keras.Model):
    """Bidirectional-GRU encoder, attention GRU decoder, word logits.

    The RNNsearch model of Bahdanau, Cho & Bengio (ICLR 2015):

    - encoder: `Embedding(mask_zero=True)` and a bidirectional GRU whose
      concatenated states are the annotations `h_j`;
    - `s_0 = tanh(W_s ←h_1)`, from the backward state at the first word
      (appendix A.2.2);
    - decoder: `keras_segattn.layers.BahdanauDecoder` (attention queried by
      `s_{i-1}`, context fed into the GRU, maxout deep output), then a
      `Dense` to the target vocabulary.

    With `attention=False` it is the RNN Encoder-Decoder baseline (Cho et
    al., 2014): the decoder sees one fixed context, the concatenated final
    forward and backward encoder states, at every step.

    Ids 0 are padding in both languages; the model does not care which id
    is the start token (the data pipeline puts it in `target_in`).

    Args:
        source_vocabulary_size: int > 1, including padding and OOV ids.
        target_vocabulary_size: int > 1.
        embedding_dim: int > 0, both embeddings.
        encoder_units: int > 0, per direction (annotations are twice this).
        decoder_units: int > 0, GRU state size.
        attention_units: int > 0, alignment layer size.
        readout_units: int > 0, maxout output size before the logits.
        dropout: rate on the embeddings and the readout, in [0, 1).
        attention: bool, RNNsearch (True) or RNN Encoder-Decoder (False).
        normalize_attention: bool, weight-normalised attention.
        dtype: dtype or dtype policy of every layer; logits are float32.
        **kwargs: `keras.Model` arguments (`name`).

    Inputs: `{"source": int [B, S], "target_in": int [B, T]}`.
    Output: logits float32 [B, T, target_vocabulary_size].
    """

    def __init__(
        self,
        source_vocabulary_size: int,
        target_vocabulary_size: int,
        embedding_dim: int = 128,
        encoder_units: int = 256,
        decoder_units: int = 256,
        attention_units: int = 256,
        readout_units: int = 192,
        dropout: float = 0.2,
        attention: bool = True,
        normalize_attention: bool = False,
        dtype=None,
        **kwargs,
    ):
        sizes = {
            name: validation.check_int(value, name, minimum)
            for name, value, minimum in (
                ("source_vocabulary_size", source_vocabulary_size, 2),
                ("target_vocabulary_size", target_vocabulary_size, 2),
                ("embedding_dim", embedding_dim, 1),
                ("encoder_units", encoder_units, 1),
                ("decoder_units", decoder_units, 1),
                ("attention_units", attention_units, 1),
                ("readout_units", readout_units, 1),
            )
        }
        validation.check_rate(dropout, "dropout")

        # === Layers ===
        source_embedding = keras.layers.Embedding(
            sizes["source_vocabulary_size"],
            sizes["embedding_dim"],
            mask_zero=True,
            dtype=dtype,
            name="source_embedding",
        )
        target_embedding = keras.layers.Embedding(
            sizes["target_vocabulary_size"],
            sizes["embedding_dim"],
            dtype=dtype,
            name="target_embedding",
        )
        embedding_dropout = keras.layers.Dropout(
            dropout, dtype=dtype, name="embedding_dropout"
        )
        encoder = keras.layers.Bidirectional(
            keras.layers.GRU(
                sizes["encoder_units"],
                return_sequences=True,
                return_state=True,
                dtype=dtype,
            ),
            dtype=dtype,
            name="encoder",
        )
        initial_state = keras.layers.Dense(
            sizes["decoder_units"],
            activation="tanh",
            dtype=dtype,
            name="initial_state",
        )
        decoder = BahdanauDecoder(
            sizes["decoder_units"],
            sizes["attention_units"],
            sizes["readout_units"],
            attention=attention,
            normalize=normalize_attention,
            dtype=dtype,
            name="decoder",
        )
        readout_dropout = keras.layers.Dropout(
            dropout, dtype=dtype, name="readout_dropout"
        )
        logits_layer = keras.layers.Dense(
            sizes["target_vocabulary_size"],
            dtype="float32",
            name="logits",
        )

        # === Functional Model ===
        source = keras.Input((None,), dtype="int32", name="source")
        target_in = keras.Input((None,), dtype="int32", name="target_in")
        annotations, forward_state, backward_state = encoder(
            embedding_dropout(source_embedding(source))
        )
        memory = (
            annotations
            if attention
            else keras.layers.Concatenate(dtype=dtype, name="fixed_context")(
                [forward_state, backward_state]
            )
        )
        features, _ = decoder(
            embedding_dropout(target_embedding(target_in)),
            memory,
            initial_state(backward_state),
        )
        logits = logits_layer(readout_dropout(features))
        super().__init__(
            inputs={"source": source, "target_in": target_in},
            outputs=logits,
            **kwargs,
        )

        # === Config ===
        self.source_vocabulary_size = sizes["source_vocabulary_size"]
        self.target_vocabulary_size = sizes["target_vocabulary_size"]
        self.embedding_dim = sizes["embedding_dim"]
        self.encoder_units = sizes["encoder_units"]
        self.decoder_units = sizes["decoder_units"]
        self.attention_units = sizes["attention_units"]
        self.readout_units = sizes["readout_units"]
        self.dropout = float(dropout)
        self.attention = bool(attention)
        self.normalize_attention = bool(normalize_attention)
        self.source_embedding = source_embedding
        self.target_embedding = target_embedding
        self.encoder = encoder
        self.initial_state_layer = initial_state
        self.decoder = decoder
        self.logits_layer = logits_layer

    def _constructor_config(self):
        return {
            "source_vocabulary_size": self.source_vocabulary_size,
            "target_vocabulary_size": self.target_vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "encoder_units": self.encoder_units,
            "decoder_units": self.decoder_units,
            "attention_units": self.attention_units,
            "readout_units": self.readout_units,
            "dropout": self.dropout,
            "attention": self.attention,
            "normalize_attention": self.normalize_attention,
        }

    # === Inference, one step at a time ===

    def encode(self, source):
        """Encodes source ids [B, S] once for decoding.

        Returns:
            dict with `memory` (annotations [B, S, 2·encoder_units], or the
            fixed context [B, 2·encoder_units]), `mask` bool [B, S],
            `keys` (precomputed attention keys or None) and `state` `s_0`.
        """
        validation.check_rank(source, 2, "source")
        source = ops.cast(source, "int32")
        mask = ops.not_equal(source, 0)
        embedded = self.source_embedding(source)
        annotations, forward_state, backward_state = self.encoder(
            embedded, mask=mask, training=False
        )
        memory = (
            annotations
            if self.attention
            else ops.concatenate([forward_state, backward_state], axis=-1)
        )
        return {
            "memory": memory,
            "mask": mask,
            "keys": self.decoder.precompute_keys(memory),
            "state": self.initial_state_layer(backward_state),
        }

    def decode_step(self, tokens, state, encoded):
        """Logits for the next word after `tokens` [B] (ids of `y_{i-1}`).

        Returns:
            (logits float32 [B, V], new state [B, units], attention
            weights float32 [B, S] or [B, 0]).
        """
        embedding = self.target_embedding(tokens)
        new_state, context, weights = self.decoder.step(
            embedding,
            state,
            encoded["memory"],
            encoded["keys"],
            encoded["mask"],
        )
        features = self.decoder.readout(
            new_state, ops.cast(embedding, new_state.dtype), context
        )
        return self.logits_layer(features), new_state, weights


def _check_decoding_args(max_length, start_id, end_id):
    validation.check_int(max_length, "max_length", 1)
    validation.check_int(start_id, "start_id", 0)
    validation.check_int(end_id, "end_id", 0)


def _attention_width(encoded: dict):
    """Attended positions: memory [B, S, D] -> S; a fixed context -> 0."""
    memory = encoded["memory"]
    return tf.shape(memory)[1] if len(memory.shape) == 3 else 0


def _tile_encoded(encoded: dict, beam_width: int) -> dict:
    """Repeats every batch row `beam_width` times: [B, ...] -> [B·K, ...]."""
    return {
        key: None if value is None else tf.repeat(value, beam_width, axis=0)
        for key, value in encoded.items()
    }


def greedy_decode(
    model: Seq2SeqTranslator,
    source,
    max_length: int,
    start_id: int,
    end_id: int,
):
    """Greedy decoding: the most likely word at every step.

    Works for any model with the step-decoding interface of
    `Seq2SeqTranslator`: `encode(source)` returning a dict of batch-major
    tensors with `state` and `memory` ([B, S, D] when attending), and
    `decode_step(tokens, state, encoded)` returning (logits, state,
    attention weights); `ShowAttendTellCaptioner` has it too.

    Args:
        model: a `Seq2SeqTranslator` or another step decoder.
        source: what `model.encode` takes (int ids [B, S] for a
            translator, 0 = padding).
        max_length: int >= 1, most words generated (the end token counts).
        start_id, end_id: ids of the start and end tokens.

    Returns:
        dict with `tokens` int32 [B, max_length] (0 after the end token),
        `lengths` int32 [B] (words before the end token), `attention`
        float32 [B, max_length, S] (zero rows after the end).
    """
    _check_decoding_args(max_length, start_id, end_id)
    encoded = model.encode(source)
    batch = tf.shape(tf.nest.flatten(encoded["state"])[0])[0]
    attention_width = _attention_width(encoded)

    def body(step, tokens, state, done, output, attention):
        logits, state, weights = model.decode_step(tokens, state, encoded)
        next_tokens = tf.argmax(logits, axis=-1, output_type=tf.int32)
        next_tokens = tf.where(done, 0, next_tokens)
        weights = tf.where(done[:, None], 0.0, weights)
        output = _write_step(output, step, next_tokens)
        attention = _write_step(attention, step, weights)
        done = done | tf.equal(next_tokens, end_id)
        return step + 1, next_tokens, state, done, output, attention

    # Steps the loop skips (every sentence done) stay zero.
    _, _, _, _, output, attention = tf.while_loop(
        lambda step, tokens, state, done, *_: (
            (step < max_length) & ~tf.reduce_all(done)
        ),
        body,
        (
            tf.constant(0),
            tf.fill([batch], tf.constant(start_id, tf.int32)),
            encoded["state"],
            tf.zeros([batch], tf.bool),
            tf.zeros([max_length, batch], tf.int32),
            tf.zeros([max_length, batch, attention_width], tf.float32),
        ),
    )
    return _finish(
        tf.transpose(output), tf.transpose(attention, [1, 0, 2]), end_id
    )


def _write_step(steps, step, value):
    """`steps` [L, ...] with row `step` replaced by `value` [...].

    A select rather than a scatter: it also works when `value` is empty
    (the [B, 0] attention of the fixed-context model).
    """
    rows = tf.range(tf.shape(steps)[0])
    is_step = tf.reshape(
        tf.equal(rows, step), [-1] + [1] * (len(steps.shape) - 1)
    )
    return tf.where(is_step, value[None], steps)


def _finish(tokens, attention, end_id):
    """Zeros everything from the end token on; returns the output dict."""
    is_end = tf.equal(tokens, end_id)
    before_end = tf.equal(tf.cumsum(tf.cast(is_end, tf.int32), axis=1), 0)
    lengths = tf.reduce_sum(tf.cast(before_end, tf.int32), axis=1)
    tokens = tf.where(before_end, tokens, 0)
    return {"tokens": tokens, "lengths": lengths, "attention": attention}


def beam_search_decode(
    model: Seq2SeqTranslator,
    source,
    max_length: int,
    start_id: int,
    end_id: int,
    beam_width: int = 4,
    length_penalty: float = 0.6,
):
    """Beam search with length normalisation (Wu et al., 2016, GNMT).

    Keeps the `beam_width` best partial translations by total log
    probability; a hypothesis that emits the end token is finished and
    keeps its score. At the end every hypothesis is ranked by
    `log p(Y | X) / lp(Y)` with `lp(Y) = ((5 + |Y|) / 6) ** length_penalty`
    (`|Y|` counts the end token); `length_penalty=0` ranks by raw log
    probability, which favours short outputs.

    Args:
        model: a `Seq2SeqTranslator` or another step decoder (see
            `greedy_decode`).
        source: what `model.encode` takes.
        max_length: int >= 1, most words generated.
        start_id, end_id: ids of the start and end tokens.
        beam_width: int >= 1; 1 equals greedy decoding.
        length_penalty: float >= 0, the GNMT `alpha`.

    Returns:
        dict as `greedy_decode` for the best hypothesis, plus `scores`
        float32 [B] (its normalised log probability).
    """
    _check_decoding_args(max_length, start_id, end_id)
    beam_width = validation.check_int(beam_width, "beam_width", 1)
    if float(length_penalty) < 0:
        raise ValueError(
            "Invalid value for argument `length_penalty`. Expected a float "
            f">= 0. Received: length_penalty={length_penalty!r}."
        )
    encoded = model.encode(source)
    batch = tf.shape(tf.nest.flatten(encoded["state"])[0])[0]
    width = beam_width
    flat = batch * width
    encoded = _tile_encoded(encoded, width)
    attention_width = _attention_width(encoded)
    vocabulary = model.target_vocabulary_size
    neg_inf = tf.constant(-1e9, tf.float32)
    # Only the first beam is alive at the start (the others are copies).
    initial_scores = tf.tile(
        tf.concat([[0.0], tf.fill([width - 1], neg_inf)], 0)[None], [batch, 1]
    )
    # A finished beam may only "emit" padding (id 0) at no cost.
    finished_row = tf.tensor_scatter_nd_update(
        tf.fill([vocabulary], neg_inf), [[0]], [0.0]
    )

    def body(step, tokens, state, scores, done, lengths, history, attention):
        logits, state, weights = model.decode_step(tokens, state, encoded)
        log_probs = tf.nn.log_softmax(logits)  # [B·K, V]
        log_probs = tf.where(done[:, None], finished_row[None], log_probs)
        total = tf.reshape(scores, [flat, 1]) + log_probs
        total = tf.reshape(total, [batch, width * vocabulary])
        scores, best = tf.math.top_k(total, k=width)  # [B, K]
        parent = best // vocabulary
        next_tokens = tf.reshape(best % vocabulary, [flat])
        # Row of the parent hypothesis in the flat [B·K] layout.
        parent = tf.reshape(parent + tf.range(batch)[:, None] * width, [flat])
        state = tf.gather(state, parent)
        done = tf.gather(done, parent)
        lengths = tf.gather(lengths, parent) + tf.cast(~done, tf.int32)
        history = tf.gather(history, parent, axis=1)
        attention = tf.gather(attention, parent, axis=1)
        weights = tf.where(done[:, None], 0.0, tf.gather(weights, parent))
        history = _write_step(history, step, next_tokens)
        attention = _write_step(attention, step, weights)
        done = done | tf.equal(next_tokens, end_id)
        outputs = (
            step + 1,
            next_tokens,
            state,
            scores,
            done,
            lengths,
            history,
            attention,
        )
        # Gathers lose static sizes; the loop needs them unchanged.
        return tuple(
            tf.ensure_shape(value, initial.shape)
            for value, initial in zip(outputs, loop_vars, strict=True)
        )

    loop_vars = (
        tf.constant(0),
        tf.fill([flat], tf.constant(start_id, tf.int32)),
        encoded["state"],
        initial_scores,
        tf.zeros([flat], tf.bool),
        tf.zeros([flat], tf.int32),
        tf.zeros([max_length, flat], tf.int32),
        tf.zeros([max_length, flat, attention_width], tf.float32),
    )
    loop = tf.while_loop(
        lambda step, tokens, state, scores, done, *_: (
            (step < max_length) & ~tf.reduce_all(done)
        ),
        body,
        loop_vars,
    )
    _, _, _, scores, _, lengths, history, attention = loop
    penalty = tf.pow(
        (5.0 + tf.cast(tf.reshape(lengths, [batch, width]), tf.float32)) / 6.0,
        float(length_penalty),
    )
    normalised = scores / penalty
    best = tf.argmax(normalised, axis=1, output_type=tf.int32)
    rows = tf.range(batch) * width + best
    tokens = tf.transpose(tf.gather(history, rows, axis=1))
    attention = tf.transpose(tf.gather(attention, rows, axis=1), [1, 0, 2])
    result = _finish(tokens, attention, end_id)
    result["scores"] = tf.gather(normalised, best, batch_dims=1)
    return result
