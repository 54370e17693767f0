"""SavedModel export of a `Seq2SeqTranslator` that takes and returns text.

Contract (README, "Serving"):

- `serving_default` (greedy decoding): `text` tf.string [b] raw source
  sentences → `translation` tf.string [b] detokenised target sentences,
  `attention` float32 [b, max_output_length, s] (row i: weights of output
  word i over the s source words of the batch, zero after the end),
  `tokens` int32 [b, max_output_length] (target ids, 0-padded).
- `serving_beam`: the same with beam search (`beam_width` and
  `length_penalty` fixed at export), plus `scores` float32 [b].

The graph standardises with `keras_segattn.data.text.TextStandardizer`,
splits on white space and maps words with a lookup table built from the
source vocabulary (unknown words get the OOV id 1, exactly as the
`TextVectorization` of training does), decodes, maps ids to the display
vocabulary and detokenises with `keras_segattn.data.text.detokenize`. No
XLA, no tensorflow-text: core TensorFlow ops only.

Bad requests: an empty batch returns empty outputs; a sentence with no
word left after standardisation fails with an `InvalidArgument` error that
names `text` and the row; a non-string or wrong-rank request is rejected by
the signature.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_segattn.data.text import END_TOKEN
from keras_segattn.data.text import START_TOKEN
from keras_segattn.data.text import TextStandardizer
from keras_segattn.data.text import detokenize
from keras_segattn.decoding import beam_search_decode
from keras_segattn.decoding import greedy_decode
from keras_segattn.export.serving import SERVING_KEY
from keras_segattn.export.serving import write_version
from keras_segattn.export.serving import write_warmup_requests
from keras_segattn.models.translation import Seq2SeqTranslator
from keras_segattn.validation import check_version

BEAM_SERVING_KEY = "serving_beam"
OOV_ID = 1


def _check_vocabulary(vocabulary, name: str, size: int) -> list[str]:
    vocabulary = [str(word) for word in vocabulary]
    if len(vocabulary) != size:
        raise ValueError(
            f"Invalid length for argument `{name}`. Expected {size} entries "
            "(the model's vocabulary size). Received: "
            f"{len(vocabulary)} entries."
        )
    if vocabulary[:2] != ["", "[UNK]"]:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected the "
            "TextVectorization layout starting with '' (padding) and "
            f"'[UNK]'. Received: {vocabulary[:2]!r}."
        )
    return vocabulary


def display_words_for(vocabulary, start_id: int, end_id: int) -> tf.Tensor:
    """The words to show for each id: the start and end tokens show as ""."""
    display = [str(word) for word in vocabulary]
    display[start_id] = display[end_id] = ""
    return tf.constant(display)


def decoded_to_text(display_words, decoded: dict, text_key: str) -> dict:
    """Serving outputs of a `greedy_decode`/`beam_search_decode` result:
    `text_key` (detokenised sentences), `attention`, `tokens` and, from a
    beam, `scores`."""
    words = tf.gather(display_words, decoded["tokens"])
    outputs = {
        text_key: detokenize(words),
        "attention": decoded["attention"],
        "tokens": decoded["tokens"],
    }
    if "scores" in decoded:
        outputs["scores"] = decoded["scores"]
    return outputs


def outputs_or_empty(batch_size, run, probe):
    """`run()` for a non-empty batch; for an empty one, the outputs of
    `probe()` (one dummy example) cut to zero rows, because some kernels
    (oneDNN convolutions, the text pipeline) reject empty batches."""
    return tf.cond(
        batch_size > 0,
        run,
        lambda: {key: value[:0] for key, value in probe().items()},
    )


class TranslationServingModule(tf.Module):
    """Text-in, text-out functions around a `Seq2SeqTranslator`.

    Usable directly (`module.translate(["Hola."])`) and as the object that
    `export_translator_for_serving` saves.

    Args:
        model: a trained `Seq2SeqTranslator`.
        source_vocabulary: the source `TextVectorization` vocabulary.
        target_vocabulary: the target vocabulary (with "[START]", "[END]").
        display_vocabulary: optional surface forms aligned with
            `target_vocabulary` (see
            `keras_segattn.data.text.build_display_vocabulary`); defaults
            to `target_vocabulary`.
        max_output_length: int >= 1, most words generated per sentence.
        beam_width: int >= 1, for `translate_beam`.
        length_penalty: float >= 0, GNMT length normalisation of the beam.
    """

    def __init__(
        self,
        model: Seq2SeqTranslator,
        source_vocabulary: Sequence[str],
        target_vocabulary: Sequence[str],
        display_vocabulary: Sequence[str] | None = None,
        max_output_length: int = 50,
        beam_width: int = 4,
        length_penalty: float = 0.6,
        name=None,
    ):
        super().__init__(name=name)
        if not isinstance(model, Seq2SeqTranslator):
            raise TypeError(
                "Invalid type for argument `model`. Expected a "
                "Seq2SeqTranslator. Received: "
                f"{type(model).__name__}."
            )
        source_vocabulary = _check_vocabulary(
            source_vocabulary,
            "source_vocabulary",
            model.source_vocabulary_size,
        )
        target_vocabulary = _check_vocabulary(
            target_vocabulary,
            "target_vocabulary",
            model.target_vocabulary_size,
        )
        if display_vocabulary is None:
            display_vocabulary = target_vocabulary
        display_vocabulary = _check_vocabulary(
            display_vocabulary,
            "display_vocabulary",
            model.target_vocabulary_size,
        )
        for token in (START_TOKEN, END_TOKEN):
            if token not in target_vocabulary:
                raise ValueError(
                    "Invalid value for argument `target_vocabulary`. "
                    f"Expected it to contain {token!r}. Received a "
                    "vocabulary without it."
                )
        # Saved through the `tf.Variable`s the functions capture: tracking
        # the Keras model as well would store every variable twice.
        object.__setattr__(self, "_model", model)
        self.model_variables = [v.value for v in model.variables]
        self.start_id = target_vocabulary.index(START_TOKEN)
        self.end_id = target_vocabulary.index(END_TOKEN)
        self.max_output_length = int(max_output_length)
        self.beam_width = int(beam_width)
        self.length_penalty = float(length_penalty)
        self.standardizer = TextStandardizer()
        self.source_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(source_vocabulary[2:]),
                tf.range(2, len(source_vocabulary), dtype=tf.int64),
            ),
            default_value=OOV_ID,
        )
        self.display_words = display_words_for(
            display_vocabulary, self.start_id, self.end_id
        )
        spec = tf.TensorSpec([None], tf.string, name="text")
        self.translate = tf.function(self._translate_greedy, [spec])
        self.translate_beam = tf.function(self._translate_beam, [spec])

    @property
    def model(self) -> Seq2SeqTranslator:
        """The wrapped translator."""
        return self._model

    def vectorize(self, text):
        """Source ids [b, s] (0-padded) of sentences [b]."""
        words = tf.strings.split(self.standardizer(text))
        ids = tf.cast(self.source_table.lookup(words), tf.int32)
        lengths = ids.row_lengths()
        empty = tf.where(tf.equal(lengths, 0))[:, 0]
        check = tf.debugging.Assert(
            tf.size(empty) == 0,
            [
                "Invalid value for input `text`: sentences with no word "
                "left after standardisation at rows",
                empty,
            ],
        )
        with tf.control_dependencies([check]):
            return tf.identity(ids.to_tensor(0))

    def _outputs(self, decoded):
        return decoded_to_text(self.display_words, decoded, "translation")

    def _translate(self, text, decode):
        text = tf.ensure_shape(text, [None])
        return outputs_or_empty(
            tf.size(text),
            lambda: self._outputs(decode(self.vectorize(text))),
            lambda: self._outputs(decode(tf.ones([1, 1], tf.int32))),
        )

    def _translate_greedy(self, text):
        return self._translate(
            text,
            lambda source: greedy_decode(
                self.model,
                source,
                self.max_output_length,
                self.start_id,
                self.end_id,
            ),
        )

    def _translate_beam(self, text):
        return self._translate(
            text,
            lambda source: beam_search_decode(
                self.model,
                source,
                self.max_output_length,
                self.start_id,
                self.end_id,
                beam_width=self.beam_width,
                length_penalty=self.length_penalty,
            ),
        )


def export_translator_for_serving(
    model: Seq2SeqTranslator,
    export_dir: str | os.PathLike,
    source_vocabulary: Sequence[str],
    target_vocabulary: Sequence[str],
    display_vocabulary: Sequence[str] | None = None,
    *,
    version: int = 1,
    max_output_length: int = 50,
    beam_width: int = 4,
    length_penalty: float = 0.6,
    warmup_sentences: Sequence[str] | None = None,
) -> str:
    """Writes `export_dir/<version>/` with `serving_default` and
    `serving_beam` (see the module docstring for the contract).

    Args:
        model, source_vocabulary, target_vocabulary, display_vocabulary,
        max_output_length, beam_width, length_penalty: as for
            `TranslationServingModule`.
        export_dir: base directory (TF Serving's model directory).
        version: int >= 1, the version sub-directory.
        warmup_sentences: optional real source sentences written as TF
            Serving warmup requests (one request per sentence).

    Returns:
        The path of the written version directory.
    """
    version = check_version(version)
    module = TranslationServingModule(
        model,
        source_vocabulary,
        target_vocabulary,
        display_vocabulary,
        max_output_length=max_output_length,
        beam_width=beam_width,
        length_penalty=length_penalty,
    )

    def write(path):
        tf.saved_model.save(
            module,
            path,
            signatures={
                SERVING_KEY: module.translate,
                BEAM_SERVING_KEY: module.translate_beam,
            },
        )
        if warmup_sentences is not None:
            write_warmup_requests(
                path,
                [np.asarray(s, object) for s in warmup_sentences],
                input_name="text",
                dtype=object,
            )

    return write_version(export_dir, version, write)
