"""Caption vocabularies: words to the token ids a captioner trains on.

`CaptionVocabulary` holds an ordered vocabulary whose first four entries
are the special tokens of the captioners and translators of this package
(padding 0, `[UNK]` 1, `[START]` 2, `[END]` 3) and the decoder length
`max_length` (words plus `[END]`). `encode` turns captions into the
teacher-forcing pair `(caption_in, caption_out)` and refuses a caption too
long for the decoder (a silently truncated caption would train the model
never to end it); `decode` turns token ids back into text.
`caption_words` is the COCO normalisation (lower case, punctuation
dropped) and `CaptionVocabulary.from_captions` builds a vocabulary from
training captions.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable
from collections.abc import Sequence

import numpy as np

SPECIAL_TOKENS = ("", "[UNK]", "[START]", "[END]")


def caption_words(caption: str) -> str:
    """Lower-case words of a caption, punctuation dropped ("A man, riding."
    -> "a man riding")."""
    return " ".join(re.findall(r"[a-z0-9]+", caption.lower()))


class CaptionVocabulary:
    """Token ids of captions for a decoder of `max_length` steps.

    Args:
        vocabulary: sequence of str, starting with `SPECIAL_TOKENS`.
        max_length: int >= 2, decoder steps: at most `max_length - 1`
            words plus `[END]`.

    Raises:
        ValueError: if the vocabulary does not start with the special
            tokens, repeats a word, or `max_length` < 2.
    """

    def __init__(self, vocabulary: Sequence[str], max_length: int):
        vocabulary = tuple(vocabulary)
        if vocabulary[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(
                "Invalid value for argument `vocabulary`. Expected it to "
                f"start with {SPECIAL_TOKENS}. Received: "
                f"{vocabulary[: len(SPECIAL_TOKENS)]}."
            )
        if len(set(vocabulary)) != len(vocabulary):
            repeated = sorted(
                w for w, n in collections.Counter(vocabulary).items() if n > 1
            )
            raise ValueError(
                "Invalid value for argument `vocabulary`. Expected distinct "
                f"words. Received repeated words: {repeated[:5]}."
            )
        if isinstance(max_length, bool) or not isinstance(max_length, int):
            max_length = -1
        if max_length < 2:
            raise ValueError(
                "Invalid value for argument `max_length`. Expected an int "
                f">= 2 (words plus [END]). Received: max_length={max_length}."
            )
        self.vocabulary, self.max_length = vocabulary, max_length
        self.word_ids = {word: i for i, word in enumerate(vocabulary)}

    @classmethod
    def from_captions(
        cls,
        captions: Iterable[str],
        max_length: int,
        min_count: int = 1,
    ) -> CaptionVocabulary:
        """The words of `captions` (space-separated, already normalised)
        seen at least `min_count` times, sorted, after the special
        tokens."""
        counts = collections.Counter(
            word for caption in captions for word in caption.split()
        )
        words = sorted(
            w
            for w, n in counts.items()
            if n >= min_count and w not in SPECIAL_TOKENS
        )
        return cls((*SPECIAL_TOKENS, *words), max_length)

    def __len__(self) -> int:
        return len(self.vocabulary)

    @property
    def start(self) -> int:
        return self.word_ids["[START]"]

    @property
    def end(self) -> int:
        return self.word_ids["[END]"]

    def fits(self, caption: str) -> bool:
        """Whether the decoder can produce `caption` and then [END]."""
        return len(caption.split()) < self.max_length

    def encode(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`(caption_in, caption_out)` int32 [N, max_length], 0-padded:
        `[START] w1 .. wn` and `w1 .. wn [END]`; unknown words become
        `[UNK]`.

        Raises:
            ValueError: naming `captions` and the offending caption if one
                has `max_length` words or more.
        """
        caption_in = np.zeros((len(captions), self.max_length), np.int32)
        caption_out = np.zeros((len(captions), self.max_length), np.int32)
        unknown = self.word_ids["[UNK]"]
        for row, caption in enumerate(captions):
            ids = [self.word_ids.get(w, unknown) for w in caption.split()]
            if len(ids) >= self.max_length:
                raise ValueError(
                    "Invalid value for argument `captions`. Expected at most "
                    f"{self.max_length - 1} words per caption (max_length="
                    f"{self.max_length} decoder steps include [END]). "
                    f"Received: caption {row} with {len(ids)} words, "
                    f"{caption!r}."
                )
            caption_in[row, : len(ids) + 1] = [self.start, *ids]
            caption_out[row, : len(ids) + 1] = [*ids, self.end]
        return caption_in, caption_out

    def decode(self, tokens) -> list[str]:
        """Captions of token rows [N, T]: padding, `[START]` and `[END]`
        dropped.

        Raises:
            ValueError: naming `tokens` for an id outside the vocabulary
                (a model trained with another vocabulary).
        """
        tokens = np.asarray(tokens)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= len(self)):
            raise ValueError(
                "Invalid value for argument `tokens`. Expected ids in "
                f"[0, {len(self)}) (the vocabulary's size). Received ids in "
                f"[{tokens.min()}, {tokens.max()}]: a model trained with "
                "another vocabulary?"
            )
        skip = (0, self.start, self.end)
        return [
            " ".join(self.vocabulary[t] for t in row if t not in skip)
            for row in tokens
        ]
