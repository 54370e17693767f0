"""Tests for `keras_segattn.data.captions` (caption vocabularies)."""

import re

import numpy as np
import pytest

from keras_segattn.data import CAPTION_VOCABULARY
from keras_segattn.data import SPECIAL_TOKENS
from keras_segattn.data import CaptionVocabulary
from keras_segattn.data import caption_words


def test_digit_captions_round_trip():
    vocabulary = CaptionVocabulary(CAPTION_VOCABULARY, 11)
    captions = ["three left of seven above one", "two above five"]
    caption_in, caption_out = vocabulary.encode(captions)
    assert caption_in.shape == caption_out.shape == (2, 11)
    assert caption_in.dtype == np.int32
    assert vocabulary.decode(caption_out) == captions
    assert vocabulary.decode(caption_in) == captions
    assert np.all(caption_in[:, 0] == vocabulary.start)
    # Teacher forcing: caption_in is caption_out shifted right by one.
    np.testing.assert_array_equal(caption_in[0, 1:7], caption_out[0, :6])
    assert caption_out[1, 3] == vocabulary.end and caption_out[1, 4] == 0


def test_too_long_captions_are_refused_by_name():
    vocabulary = CaptionVocabulary(CAPTION_VOCABULARY, 4)
    assert vocabulary.fits("one two three")
    assert not vocabulary.fits("one two three four")
    vocabulary.encode(["one two three"])  # 3 words + [END] = 4 steps
    with pytest.raises(
        ValueError,
        match=re.escape("`captions`. Expected at most 3 words")
        + ".*caption 1 with 4 words",
    ):
        vocabulary.encode(["one", "one two three four"])


def test_unknown_words_and_vocabulary_mismatch():
    vocabulary = CaptionVocabulary((*SPECIAL_TOKENS, "a", "man"), 4)
    _, caption_out = vocabulary.encode(["a dog"])
    assert caption_out[0].tolist() == [4, 1, vocabulary.end, 0]
    assert vocabulary.decode([[4, 1, 3, 0]]) == ["a [UNK]"]
    with pytest.raises(ValueError, match=r"`tokens`.*\[0, 6\).*\[4, 9\]"):
        vocabulary.decode([[4, 9]])


def test_from_captions_and_words():
    assert caption_words("A man, riding a Horse.") == "a man riding a horse"
    vocabulary = CaptionVocabulary.from_captions(
        ["a man riding a horse", "a horse", "two dogs"], 8, min_count=2
    )
    assert vocabulary.vocabulary == (*SPECIAL_TOKENS, "a", "horse")
    assert len(vocabulary) == 6


@pytest.mark.parametrize(
    "vocabulary, max_length, match",
    [
        (("a", "b"), 4, "Expected it to start with"),
        ((*SPECIAL_TOKENS, "a", "a"), 4, r"repeated words: \['a'\]"),
        (SPECIAL_TOKENS, 1, "Received: max_length=1"),
    ],
)
def test_bad_vocabularies(vocabulary, max_length, match):
    with pytest.raises(ValueError, match=match):
        CaptionVocabulary(vocabulary, max_length)
