"""Tests for `keras_segattn.data.spa_eng` on the embedded real sample."""

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data import spa_eng

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = ROOT / "sample_data" / "spa_eng"


@pytest.fixture(scope="module")
def pairs():
    return spa_eng.load_spa_eng_pairs(SAMPLE_DIR)


def test_sample_loads_as_spanish_english(pairs):
    assert len(pairs) == 400
    assert ("¡Incendio!", "Fire!") in pairs
    assert all(s and e for s, e in pairs)


def test_plain_text_file_and_bad_files(tmp_path):
    (tmp_path / "spa.txt").write_text("Go.\tVe.\n\nHi.\tHola.\n", "utf-8")
    assert spa_eng.load_spa_eng_pairs(tmp_path) == [
        ("Ve.", "Go."),
        ("Hola.", "Hi."),
    ]
    with pytest.raises(FileNotFoundError, match="No `spa.txt.gz`"):
        spa_eng.load_spa_eng_pairs(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "spa.txt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=re.escape(str(bad / "spa.txt.gz"))):
        spa_eng.load_spa_eng_pairs(bad)
    no_tab = tmp_path / "no_tab"
    no_tab.mkdir()
    with gzip.open(no_tab / "spa.txt.gz", "wt", encoding="utf-8") as f:
        f.write("Go.\tVe.\nHello there\n")
    with pytest.raises(ValueError, match="Invalid line 2 in"):
        spa_eng.load_spa_eng_pairs(no_tab)


def test_split_shares_no_sentence_and_is_deterministic(pairs):
    # Duplicate sentences so that groups are non-trivial.
    linked = pairs + [(s, e + " (2)") for s, e in pairs[:50]]
    train, validation = spa_eng.split_translation_pairs(linked, 60, seed=1)
    assert len(train) + len(validation) == len(linked)
    assert 60 <= len(validation) < 80
    train_sentences = {x for pair in train for x in pair}
    assert not any(
        s in train_sentences or e in train_sentences for s, e in validation
    )
    again = spa_eng.split_translation_pairs(linked, 60, seed=1)
    assert again == (train, validation)
    with pytest.raises(ValueError, match="validation_size"):
        spa_eng.split_translation_pairs(pairs, 0)


@pytest.fixture(scope="module")
def vectorized(pairs):
    source = spa_eng.make_text_vectorizer([s for s, _ in pairs], 300)
    target = spa_eng.make_text_vectorizer(
        [e for _, e in pairs], 200, start_end=True
    )
    return source, target, spa_eng.vectorize_pairs(pairs, source, target)


def test_vectorizers_use_the_standardisation(vectorized):
    source, target, (source_ids, target_ids) = vectorized
    vocabulary = target.get_vocabulary()
    assert vocabulary[:4] == ["", "[UNK]", "[START]", "[END]"]
    assert len(source.get_vocabulary()) == 300
    ids = source(tf.constant(["¿Está aquí?", "qwertyuiop"])).to_list()
    assert ids[1] == [1]  # out of vocabulary -> OOV id, no crash
    assert source.get_vocabulary()[ids[0][0]] == "¿"
    assert all(row[0] == 2 and row[-1] == 3 for row in target_ids.to_list())


def test_translation_dataset_buckets(vectorized):
    _, _, (source_ids, target_ids) = vectorized
    dataset = spa_eng.make_translation_dataset(
        source_ids,
        target_ids,
        batch_size=8,
        bucket_boundaries=(6, 12, 20),
        seed=0,
    )
    widths = set()
    for inputs, target_out, weights in dataset:
        width = inputs["source"].shape[1]
        assert width in (6, 12, 20)
        widths.add(width)
        assert inputs["source"].shape == (8, width)
        assert inputs["target_in"].shape == target_out.shape == (8, width)
        target_in = inputs["target_in"].numpy()
        assert np.all(target_in[:, 0] == 2)
        # Teacher forcing: the input is the output shifted right by one.
        np.testing.assert_array_equal(
            target_in[:, 1:], target_out.numpy()[:, :-1]
        )
        np.testing.assert_array_equal(weights.numpy(), target_out.numpy() > 0)
        # Every real target row ends with exactly one [END].
        assert np.all(np.sum(target_out.numpy() == 3, axis=1) == 1)
    assert widths >= {6, 12}
    too_long = spa_eng.count_too_long(source_ids, target_ids, 20)
    assert too_long >= 0


def test_translation_dataset_bad_arguments(vectorized):
    _, _, (source_ids, target_ids) = vectorized
    with pytest.raises(ValueError, match="bucket_boundaries"):
        spa_eng.make_translation_dataset(
            source_ids, target_ids, bucket_boundaries=(10, 5)
        )
    with pytest.raises(ValueError, match="batch_size"):
        spa_eng.make_translation_dataset(source_ids, target_ids, batch_size=0)
    with pytest.raises(ValueError, match="Mismatched number of sentences"):
        spa_eng.make_translation_dataset(source_ids[:5], target_ids)
    with pytest.raises(ValueError, match="max_tokens"):
        spa_eng.make_text_vectorizer(["a"], 2)


def test_synthetic_pairs_reverse_the_word_order():
    pairs = spa_eng.make_synthetic_translation_pairs(20, seed=3)
    assert pairs == spa_eng.make_synthetic_translation_pairs(20, seed=3)
    words = dict(spa_eng._SYNTHETIC_WORDS)
    for source, target in pairs:
        spanish = source.rstrip(".").lower().split()
        english = target.rstrip(".").lower().split()
        assert [words[w] for w in spanish][::-1] == english
