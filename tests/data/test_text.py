"""Tests for `keras_segattn.data.text` (standardisation, detokenisation)."""

import unicodedata

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data import text

SENTENCES = [
    "¿Está Tom aquí?",
    "No sé.  Ése\tes el ÑANDÚ!",
    'I don\'t know, "maybe"; 3:30 p.m.',
    "ﬁne x² Ｆｕｌｌ",  # ligature, superscript, full-width letters
    "Ⅸ capítulo — façade, naïve e-mail",
    "",
    "   ",
    "日本語 only",
]


def test_graph_matches_python_reference():
    graph = text.TextStandardizer()(tf.constant(SENTENCES)).numpy()
    for sentence, got in zip(SENTENCES, graph, strict=True):
        assert got.decode("utf-8") == text.standardize_python(sentence)


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("¿Está Tom aquí?", "¿ esta tom aqui ?"),
        ("No sé.  Ése\tes", "no se . ese es"),
        ('I don\'t, "ok".', 'i don\'t , " ok " .'),
        ("ﬁne x² Ｆｕｌｌ", "fine x2 full"),
        ("日本語 only", "only"),
    ],
)
def test_known_outputs(sentence, expected):
    assert text.standardize_python(sentence) == expected
    got = text.TextStandardizer()(tf.constant([sentence]))[0].numpy()
    assert got.decode("utf-8") == expected


def test_start_end_tokens_and_shapes():
    standardizer = text.TextStandardizer(start_end=True)
    out = standardizer(tf.constant([["Hola."], ["Adiós"]]))
    assert out.shape == (2, 1)
    assert out[0, 0].numpy() == b"[START] hola . [END]"
    assert standardizer(tf.constant("Sí")).numpy() == b"[START] si [END]"


def test_nfkd_table_entries_are_nfkd_forms():
    keys, values = text.nfkd_table()
    assert len(keys) == len(values) > 1000
    table = dict(zip(keys, values, strict=True))
    assert table["é"] == "e\u0301" and table["ﬁ"] == "fi"
    for key, value in list(table.items())[::50]:
        assert unicodedata.normalize("NFKD", key) == value


def test_detokenize():
    words = tf.constant(
        [
            ["i", "don't", "know", ",", '"', "hi", '"', ".", ""],
            ["¿", "tom", "?", "", "", "", "", "", ""],
            ["", "", "", "", "", "", "", "", ""],
        ]
    )
    assert list(text.detokenize(words).numpy()) == [
        b'I don\'t know, "hi".',
        "¿Tom?".encode(),
        b"",
    ]
    assert text.detokenize(tf.zeros([0, 3], tf.string)).shape == (0,)


def test_display_vocabulary_prefers_inner_spelling():
    vocabulary = ["", "[UNK]", "tom", "i", "the", ".", "zebra"]
    display = text.build_display_vocabulary(
        [
            "Tom is here.",
            "I think Tom knows.",
            "The dog saw the cat and the bird.",
            "Can I go?",
        ],
        vocabulary,
    )
    assert display == ["", "[UNK]", "Tom", "I", "the", ".", "zebra"]


def test_round_trip_of_standardised_text():
    sentence = '¡Hola! ¿Qué tal, "amigo"?'
    words = np.array([text.standardize_python(sentence).split()])
    assert text.detokenize(tf.constant(words))[0].numpy().decode() == (
        '¡Hola! ¿que tal, "amigo"?'  # only the first letter is re-cased
    )
