"""Greedy decoding of a step decoder."""

from __future__ import annotations

import tensorflow as tf

from keras_segattn.decoding import _common


def greedy_decode(
    model: _common.StepDecoder,
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
    _common.check_decoding_args(max_length, start_id, end_id)
    encoded = model.encode(source)
    batch = tf.shape(tf.nest.flatten(encoded["state"])[0])[0]
    attention_width = _common.attention_width(encoded)

    def body(step, tokens, state, done, output, attention):
        logits, state, weights = model.decode_step(tokens, state, encoded)
        next_tokens = tf.argmax(logits, axis=-1, output_type=tf.int32)
        next_tokens = tf.where(done, 0, next_tokens)
        weights = tf.where(done[:, None], 0.0, weights)
        output = _common.write_step(output, step, next_tokens)
        attention = _common.write_step(attention, step, weights)
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
    return _common.finish(
        tf.transpose(output), tf.transpose(attention, [1, 0, 2]), end_id
    )
