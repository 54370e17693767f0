"""Helpers shared by the decoding strategies (private)."""

from __future__ import annotations

from typing import Protocol

import tensorflow as tf

from keras_segattn import validation


class StepDecoder(Protocol):
    """The model interface the decoders use (`Seq2SeqTranslator` and
    `ShowAttendTellCaptioner` have it).

    - `encode(source)` returns a dict of batch-major tensors with `state`
      (the first decoder state, one tensor [B, ...]: beam search gathers
      it by hypothesis) and `memory` ([B, S, D] when attending, a fixed
      context [B, D] otherwise); beam search repeats every entry per beam
      and keeps `None` entries.
    - `decode_step(tokens, state, encoded)` takes the previous word ids
      [B] and returns (logits [B, V], new state, attention weights
      float32 [B, S], or [B, 0] for a fixed context).
    - `target_vocabulary_size` is V (beam search only).
    """

    target_vocabulary_size: int

    def encode(self, source) -> dict: ...

    def decode_step(self, tokens, state, encoded) -> tuple: ...


def check_decoding_args(max_length, start_id, end_id):
    validation.check_int(max_length, "max_length", 1)
    validation.check_int(start_id, "start_id", 0)
    validation.check_int(end_id, "end_id", 0)


def attention_width(encoded: dict):
    """Attended positions: memory [B, S, D] -> S; a fixed context -> 0."""
    memory = encoded["memory"]
    return tf.shape(memory)[1] if len(memory.shape) == 3 else 0


def write_step(steps, step, value):
    """`steps` [L, ...] with row `step` replaced by `value` [...].

    A select rather than a scatter: it also works when `value` is empty
    (the [B, 0] attention of the fixed-context model).
    """
    rows = tf.range(tf.shape(steps)[0])
    is_step = tf.reshape(
        tf.equal(rows, step), [-1] + [1] * (len(steps.shape) - 1)
    )
    return tf.where(is_step, value[None], steps)


def finish(tokens, attention, end_id):
    """Zeros everything from the end token on; returns the output dict."""
    is_end = tf.equal(tokens, end_id)
    before_end = tf.equal(tf.cumsum(tf.cast(is_end, tf.int32), axis=1), 0)
    lengths = tf.reduce_sum(tf.cast(before_end, tf.int32), axis=1)
    tokens = tf.where(before_end, tokens, 0)
    return {"tokens": tokens, "lengths": lengths, "attention": attention}
