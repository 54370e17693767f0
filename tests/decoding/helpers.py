"""A tiny translator and source batch shared by the decoding tests."""

import numpy as np

from keras_segattn.models import Seq2SeqTranslator

START, END = 2, 3
NEVER = 99  # an end id no model here can emit: decode to max_length
SMALL = dict(
    embedding_dim=6,
    encoder_units=5,
    decoder_units=7,
    attention_units=4,
    readout_units=3,
)


def translator(attention=True, target_vocabulary_size=9, **kwargs):
    return Seq2SeqTranslator(
        11, target_vocabulary_size, attention=attention, **SMALL, **kwargs
    )


def source_ids(seed=0):
    """int32 [3, 6] with a full, a 4-word and a 2-word sentence."""
    rng = np.random.default_rng(seed)
    source = rng.integers(1, 11, size=(3, 6)).astype("int32")
    source[1, 4:] = 0  # padding
    source[2, 2:] = 0
    return source
