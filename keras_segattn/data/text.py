"""Sentence standardisation for the translation and captioning pipelines.

One definition serves training (`TextVectorization(standardize=...)`), the
exported SavedModel (the same TensorFlow ops in the serving graph) and a
pure-Python twin used by tests and for BLEU references:

1. Unicode NFKD (compatibility decomposition), then lower case: "Está" ->
   "esta" once step 2 drops the combining accent. In the graph NFKD is a
   lookup table from each code point to its NFKD form, built from Python's
   `unicodedata` (restricted to the code points whose decomposition keeps a
   character of step 2; every other code point is dropped there anyway, so
   the result equals full NFKD followed by step 2).
2. Keep only `a-z`, `0-9`, space and the punctuation `. , ? ! ¿ ¡ ' " : ; -`
   (white space of any kind becomes one space first).
3. Split punctuation from words: `. , ? ! ¿ ¡ " : ;` get spaces around
   them; the apostrophe and hyphen stay inside words ("don't", "e-mail").

Only core TensorFlow string ops and a `StaticHashTable` are used, so TF
Serving runs the graph without tensorflow-text.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence

import tensorflow as tf

KEPT_CHARACTERS = "a-z0-9 .,?!¿¡'\":;-"
"""The character class that survives standardisation (a regex class body)."""
SPLIT_PUNCTUATION = '.,?!¿¡":;'
"""Punctuation that becomes a token of its own."""
START_TOKEN = "[START]"
END_TOKEN = "[END]"

_DROP = re.compile(f"[^{KEPT_CHARACTERS}]")
_SPLIT = re.compile(f"([{re.escape(SPLIT_PUNCTUATION)}])")
_SPACES = re.compile(r"[ \t\n\r\f\v]+")  # RE2 `\s` in the graph


@functools.lru_cache(maxsize=1)
def nfkd_table() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(characters, NFKD forms) for code points that step 2 would not drop.

    Only code points with a decomposition whose lower-cased form contains a
    kept character are listed (about 3,000): Latin letters with accents,
    ligatures, full-width and mathematical letters, super/subscript digits.
    """
    keys, values = [], []
    for code_point in range(sys.maxunicode + 1):
        char = chr(code_point)
        if not unicodedata.decomposition(char):
            continue
        form = unicodedata.normalize("NFKD", char)
        if form != char and _DROP.sub("", form.lower()):
            keys.append(char)
            values.append(form)
    return tuple(keys), tuple(values)


def standardize_python(text: str) -> str:
    """Pure-Python standardisation, equal to `TextStandardizer` output."""
    text = unicodedata.normalize("NFKD", text).lower()
    text = _DROP.sub("", _SPACES.sub(" ", text))
    text = _SPLIT.sub(r" \1 ", text)
    return " ".join(text.split())


class TextStandardizer(tf.Module):
    """In-graph sentence standardisation (see the module docstring).

    A `tf.Module` so that a SavedModel that holds it also saves its NFKD
    lookup table. Call it on a string tensor of any shape; pass it as
    `keras.layers.TextVectorization(standardize=standardizer)`.

    Args:
        start_end: wrap every sentence as "[START] ... [END]" (targets).
    """

    def __init__(self, start_end: bool = False, name=None):
        super().__init__(name=name)
        self.start_end = bool(start_end)
        keys, values = nfkd_table()
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys), tf.constant(values)
            ),
            default_value="",
        )

    def __call__(self, text):
        text = tf.convert_to_tensor(text)
        shape = tf.shape(text)
        text = tf.strings.lower(tf.reshape(text, [-1]), encoding="utf-8")
        text = tf.strings.regex_replace(text, r"\s+", " ")
        chars = tf.strings.unicode_split(text, "UTF-8")
        mapped = self.table.lookup(chars.flat_values)
        mapped = tf.where(mapped == "", chars.flat_values, mapped)
        text = tf.strings.reduce_join(chars.with_flat_values(mapped), axis=-1)
        # NFKD forms may hold upper-case letters (e.g. the "Ⅸ" numeral).
        text = tf.strings.lower(text, encoding="utf-8")
        text = tf.strings.regex_replace(text, f"[^{KEPT_CHARACTERS}]", "")
        text = tf.strings.regex_replace(
            text, f"([{re.escape(SPLIT_PUNCTUATION)}])", r" \1 "
        )
        text = tf.strings.strip(tf.strings.regex_replace(text, " +", " "))
        if self.start_end:
            text = tf.strings.join([START_TOKEN, text, END_TOKEN], " ")
        return tf.reshape(text, shape)


_CASED_DROP = re.compile(f"[^A-Z{KEPT_CHARACTERS}]")


def build_display_vocabulary(
    sentences: Sequence[str], vocabulary: Sequence[str]
) -> list[str]:
    """Surface forms for the words of a lower-cased vocabulary.

    Standardisation lower-cases, so generated words come out as "tom" or
    "i". This counts, over the original `sentences`, how each vocabulary
    word is written away from the start of a sentence (where capitals are
    grammar, not spelling) and returns the most frequent form ("Tom", "I",
    "the"); words seen only sentence-initially keep their lower-case form.
    `detokenize` capitalises the first word.

    Returns:
        a list aligned with `vocabulary`.
    """
    counts: dict[str, Counter] = {}
    for sentence in sentences:
        text = unicodedata.normalize("NFKD", sentence)
        text = _CASED_DROP.sub("", _SPACES.sub(" ", text))
        words = _SPLIT.sub(r" \1 ", text).split()
        for word in words[1:]:
            counts.setdefault(word.lower(), Counter())[word] += 1
    return [
        counts[word].most_common(1)[0][0] if word in counts else word
        for word in vocabulary
    ]


def detokenize(words):
    """Joins word strings [..., T] ("" = padding) into sentences [...].

    The inverse of step 3 of the standardisation, as far as it goes:
    no space before `. , ? ! : ;`, none after `¿ ¡`, quotes hug what they
    enclose, and the first letter is upper case. Core TF ops only.
    """
    text = tf.strings.reduce_join(words, axis=-1, separator=" ")
    text = tf.strings.strip(tf.strings.regex_replace(text, " +", " "))
    text = tf.strings.regex_replace(text, r" ([.,?!:;])", r"\1")
    text = tf.strings.regex_replace(text, r"([¿¡]) ", r"\1")
    text = tf.strings.regex_replace(text, '" ([^"]*?) "', '"\\1"')
    # Upper-case the first letter after any opening "¿", "¡" or quote
    # (standardised words are ASCII, so byte offsets are safe).
    prefix = tf.strings.length(
        tf.strings.regex_replace(text, '^([¿¡" ]*).*$', "\\1")
    )
    length = tf.strings.length(text)
    head = tf.strings.substr(text, tf.zeros_like(prefix), prefix)
    first = tf.strings.substr(
        text, tf.minimum(prefix, length), tf.ones_like(prefix)
    )
    rest = tf.strings.substr(text, tf.minimum(prefix + 1, length), length)
    return tf.strings.join([head, tf.strings.upper(first), rest])
