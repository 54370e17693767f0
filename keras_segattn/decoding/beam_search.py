"""Beam search decoding of a step decoder, with the GNMT length penalty."""

from __future__ import annotations

import tensorflow as tf

from keras_segattn import validation
from keras_segattn.decoding import _common


def _tile_encoded(encoded: dict, beam_width: int) -> dict:
    """Repeats every batch row `beam_width` times: [B, ...] -> [B·K, ...]."""
    return {
        key: None if value is None else tf.repeat(value, beam_width, axis=0)
        for key, value in encoded.items()
    }


def beam_search_decode(
    model: _common.StepDecoder,
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
    probability, which favours short outputs. Wu et al., "Google's Neural
    Machine Translation System: Bridging the Gap between Human and Machine
    Translation" (arXiv:1609.08144, 2016), section "Decoder", without the
    coverage penalty (β = 0).

    Args:
        model: a `Seq2SeqTranslator` or another step decoder (see
            `greedy_decode`); it also needs `target_vocabulary_size`.
        source: what `model.encode` takes.
        max_length: int >= 1, most words generated.
        start_id, end_id: ids of the start and end tokens.
        beam_width: int >= 1; 1 equals greedy decoding.
        length_penalty: float >= 0, the GNMT `alpha`.

    Returns:
        dict as `greedy_decode` for the best hypothesis, plus `scores`
        float32 [B] (its normalised log probability).
    """
    _common.check_decoding_args(max_length, start_id, end_id)
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
    attention_width = _common.attention_width(encoded)
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
        history = _common.write_step(history, step, next_tokens)
        attention = _common.write_step(attention, step, weights)
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
    result = _common.finish(tokens, attention, end_id)
    result["scores"] = tf.gather(normalised, best, batch_dims=1)
    return result
