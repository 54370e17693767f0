"""Spanish-English sentence pairs (Tatoeba/Anki `spa-eng`) for translation.

`../shared/data/spa_eng/spa.txt.gz` holds one "<English>\\t<Spanish>" pair
per line. `load_spa_eng_pairs` reads it as (spanish, english) tuples,
`split_translation_pairs` holds out a validation set in which no Spanish
and no English sentence of the training set appears (pairs that share a
sentence are kept together, as the shared folder's own test split was
made), `make_text_vectorizer` builds a `TextVectorization` with the
standardisation of `keras_segattn.data.text`, and `make_translation_dataset`
batches token ids for teacher forcing with length buckets of static shape
(one XLA compilation per bucket).

The elements of a translation dataset are
`({"source": [B, S], "target_in": [B, S]}, target_out [B, S], weights
[B, S])`: `target_in` is "[START] w1 ... wn", `target_out` is
"w1 ... wn [END]", both 0-padded, and `weights` is 1.0 on the real tokens of
`target_out` (a masked loss and accuracy).
"""

from __future__ import annotations

import gzip
import os
import random
import zlib
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.data.text import TextStandardizer

PathLike = str | os.PathLike

SPA_ENG_FILE = "spa.txt.gz"
"""File name of the pairs in `../shared/data/spa_eng`."""
DEFAULT_BUCKET_BOUNDARIES = (10, 16, 24, 48)
"""Padded lengths of the training batches (tokens, including [START])."""


def load_spa_eng_pairs(data_dir: PathLike) -> list[tuple[str, str]]:
    """Reads `spa.txt.gz` (or an uncompressed `spa.txt`) from `data_dir`.

    Returns:
        list of (spanish, english) sentence pairs, in file order.

    Raises:
        FileNotFoundError: if neither file exists in `data_dir`.
        ValueError: naming the file (and line) if it is not gzip/UTF-8 text
            or a line is not "<English>\\t<Spanish>".
    """
    data_dir = Path(data_dir)
    openers = {SPA_ENG_FILE: gzip.open, "spa.txt": open}
    path = next(
        (data_dir / name for name in openers if (data_dir / name).exists()),
        None,
    )
    if path is None:
        raise FileNotFoundError(
            f"No `{SPA_ENG_FILE}` or `spa.txt` in data_dir={str(data_dir)!r}. "
            "Expected the spa_eng folder of ../shared/data."
        )
    opener = openers[path.name]
    try:
        with opener(path, "rt", encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as error:
        raise ValueError(
            f"Could not read {str(path)!r} as UTF-8 text: {error}"
        ) from error
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            raise ValueError(
                f"Invalid line {number} in {str(path)!r}. Expected "
                f"'<English>\\t<Spanish>'. Received: {line[:80]!r}."
            )
        pairs.append((fields[1], fields[0]))
    if not pairs:
        raise ValueError(f"No sentence pairs in {str(path)!r}.")
    return pairs


def split_translation_pairs(
    pairs: Sequence[tuple[str, str]],
    validation_size: int,
    seed: int = 0,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Holds out about `validation_size` pairs, sharing no sentence.

    Pairs that share their source or their target sentence form a group
    (connected components); groups are shuffled with `seed` and whole
    groups move to the validation set until it holds `validation_size`
    pairs (it may hold a few more). Deterministic for a given input.

    Returns:
        (train_pairs, validation_pairs), each in input order.
    """
    if not isinstance(validation_size, int) or not (
        0 < validation_size < len(pairs)
    ):
        raise ValueError(
            "Invalid value for argument `validation_size`. Expected an int "
            f"in [1, {len(pairs) - 1}]. Received: "
            f"validation_size={validation_size!r}."
        )
    parent = list(range(len(pairs)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen = {}
    for index, (source, target) in enumerate(pairs):
        for key in (("s", source), ("t", target)):
            if key in first_seen:
                parent[find(index)] = find(first_seen[key])
            else:
                first_seen[key] = index
    groups: dict[int, list[int]] = {}
    for index in range(len(pairs)):
        groups.setdefault(find(index), []).append(index)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    held_out = set()
    for group in order:
        if len(held_out) >= validation_size:
            break
        held_out.update(group)
    train = [p for i, p in enumerate(pairs) if i not in held_out]
    validation = [p for i, p in enumerate(pairs) if i in held_out]
    return train, validation


def make_text_vectorizer(
    sentences: Sequence[str],
    max_tokens: int,
    start_end: bool = False,
) -> keras.layers.TextVectorization:
    """A `TextVectorization` adapted on `sentences` (ids 0 = pad, 1 = OOV).

    Args:
        sentences: the training sentences of one language.
        max_tokens: vocabulary size including padding and "[UNK]".
        start_end: wrap sentences in "[START] ... [END]" (target side).

    Returns:
        the adapted layer; its `standardize` is a
        `keras_segattn.data.text.TextStandardizer`, unknown words map to
        the OOV id 1.
    """
    if not isinstance(max_tokens, int) or max_tokens < 4:
        raise ValueError(
            "Invalid value for argument `max_tokens`. Expected an int >= 4. "
            f"Received: max_tokens={max_tokens!r}."
        )
    vectorizer = keras.layers.TextVectorization(
        max_tokens=max_tokens,
        standardize=TextStandardizer(start_end=start_end),
        split="whitespace",
        output_mode="int",
        ragged=True,
    )
    vectorizer.adapt(
        tf.data.Dataset.from_tensor_slices(list(sentences)).batch(4096)
    )
    return vectorizer


def vectorize_pairs(
    pairs: Sequence[tuple[str, str]],
    source_vectorizer,
    target_vectorizer,
) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
    """Token ids of all pairs: (source [N, (S)], target [N, (T)]) ragged."""
    if not pairs:
        raise ValueError("Invalid value for argument `pairs`: it is empty.")
    sources, targets = zip(*pairs, strict=True)
    return (
        source_vectorizer(tf.constant(list(sources))),
        target_vectorizer(tf.constant(list(targets))),
    )


def make_translation_dataset(
    source_ids: tf.RaggedTensor,
    target_ids: tf.RaggedTensor,
    batch_size: int = 64,
    bucket_boundaries: Sequence[int] = DEFAULT_BUCKET_BOUNDARIES,
    shuffle: bool = True,
    seed: int | None = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Teacher-forcing batches in length buckets of static shape.

    Each pair goes to the first bucket whose boundary exceeds both its
    source length and its target length minus one; source, `target_in`
    and `target_out` are 0-padded to that boundary. Pairs longer than the
    last boundary are dropped (count them with `count_too_long`). Batches
    are full (`drop_remainder=True`): one XLA compilation per bucket.

    Args:
        source_ids, target_ids: ragged int ids from `vectorize_pairs`; the
            targets must start with [START] and end with [END].
        batch_size: pairs per batch.
        bucket_boundaries: increasing padded lengths.
        shuffle, seed: shuffle the pairs (and the order of batches).
        repeat: repeat forever (then pass `steps_per_epoch` to `fit`).
    """
    boundaries = [int(b) for b in bucket_boundaries]
    if (
        not boundaries
        or boundaries != sorted(set(boundaries))
        or (boundaries[0] < 2)
    ):
        raise ValueError(
            "Invalid value for argument `bucket_boundaries`. Expected "
            "strictly increasing ints >= 2. Received: "
            f"bucket_boundaries={bucket_boundaries!r}."
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            "Invalid value for argument `batch_size`. Expected an int >= 1. "
            f"Received: batch_size={batch_size!r}."
        )
    if source_ids.shape[0] != target_ids.shape[0]:
        raise ValueError(
            "Mismatched number of sentences between `source_ids` and "
            f"`target_ids`. Received: {source_ids.shape[0]} and "
            f"{target_ids.shape[0]}."
        )
    dataset = tf.data.Dataset.from_tensor_slices(
        (
            source_ids.with_row_splits_dtype("int64"),
            target_ids.with_row_splits_dtype("int64"),
        )
    )
    if shuffle:
        dataset = dataset.shuffle(
            int(source_ids.shape[0]), seed=seed, reshuffle_each_iteration=True
        )
    if repeat:
        dataset = dataset.repeat()

    def length(source, target):
        return tf.maximum(tf.shape(source)[0], tf.shape(target)[0] - 1)

    dataset = dataset.filter(lambda s, t: length(s, t) <= boundaries[-1]).map(
        lambda s, t: (tf.cast(s, "int32"), tf.cast(t, "int32")),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    # A bucket takes lengths < its boundary and, with
    # `pad_to_bucket_boundary`, pads to boundary - 1; the target (with
    # [START] and [END]) needs `b + 1` tokens for pairs of length <= b.
    dataset = dataset.bucket_by_sequence_length(
        lambda s, t: length(s, t) + 1,
        bucket_boundaries=[b + 2 for b in boundaries],
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        pad_to_bucket_boundary=True,
        drop_remainder=True,
    )

    def to_example(source, target):
        width = tf.shape(target)[1] - 1  # the bucket's boundary
        target_in, target_out = target[:, :-1], target[:, 1:]
        weights = tf.cast(target_out > 0, "float32")
        inputs = {"source": source[:, :width], "target_in": target_in}
        return inputs, target_out, weights

    return dataset.map(
        to_example, num_parallel_calls=tf.data.AUTOTUNE
    ).prefetch(tf.data.AUTOTUNE)


def count_too_long(source_ids, target_ids, max_length: int) -> int:
    """How many pairs `make_translation_dataset` drops for `max_length`."""
    lengths = np.maximum(
        source_ids.row_lengths().numpy(), target_ids.row_lengths().numpy() - 1
    )
    return int(np.sum(lengths > max_length))


_SYNTHETIC_WORDS = (
    ("uno", "one"),
    ("dos", "two"),
    ("tres", "three"),
    ("cuatro", "four"),
    ("cinco", "five"),
    ("seis", "six"),
    ("siete", "seven"),
    ("ocho", "eight"),
    ("nueve", "nine"),
    ("rojo", "red"),
    ("verde", "green"),
    ("azul", "blue"),
)


def make_synthetic_translation_pairs(
    num_examples: int = 256,
    max_words: int = 6,
    seed: int = 0,
) -> list[tuple[str, str]]:
    """A toy language pair for tests and `--smoke`: word-for-word
    translation with reversed word order ("uno dos." -> "Two one.").

    Learning it needs attention over the whole source (the order flips),
    but a tiny model gets it in a few hundred steps.
    """
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(num_examples):
        count = int(rng.integers(1, max_words + 1))
        picks = rng.integers(0, len(_SYNTHETIC_WORDS), size=count)
        source = " ".join(_SYNTHETIC_WORDS[i][0] for i in picks)
        target = " ".join(_SYNTHETIC_WORDS[i][1] for i in picks[::-1])
        pairs.append((source.capitalize() + ".", target.capitalize() + "."))
    return pairs
