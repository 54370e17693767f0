"""SavedModel export of a `ShowAttendTellCaptioner`: images in, text out.

Contract (README, "Serving"):

- `serving_default` (greedy): `images` uint8 [b, H, W, C] (the model's
  size) → `caption` tf.string [b], `attention` float32 [b, max_len, L]
  (the weights over the L grid cells for each word, zero after the end),
  `tokens` int32 [b, max_len].
- `serving_beam`: the same with beam search, plus `scores` float32 [b].
- `serving_image_bytes`: greedy, like `serving_default`, from
  `image_bytes` tf.string [b] (PNG or JPEG of one common size per batch),
  decoded in the graph to the model's channels (grayscale for 1) and
  resized bilinearly to its H x W.

No XLA, core TensorFlow ops only. An empty batch returns empty outputs; a
wrong dtype, rank or image size is rejected by the signature or by an
`ensure_shape` naming `images`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_segattn.data.text import END_TOKEN
from keras_segattn.data.text import START_TOKEN
from keras_segattn.decoding import beam_search_decode
from keras_segattn.decoding import greedy_decode
from keras_segattn.export.classification import IMAGE_BYTES_SERVING_KEY
from keras_segattn.export.serving import SERVING_KEY
from keras_segattn.export.serving import decode_image_bytes_to_shape
from keras_segattn.export.serving import write_version
from keras_segattn.export.serving import write_warmup_requests
from keras_segattn.export.translation import BEAM_SERVING_KEY
from keras_segattn.export.translation import decoded_to_text
from keras_segattn.export.translation import display_words_for
from keras_segattn.export.translation import outputs_or_empty
from keras_segattn.models.captioning import ShowAttendTellCaptioner
from keras_segattn.validation import check_version


class CaptioningServingModule(tf.Module):
    """Image-in, caption-out functions around a `ShowAttendTellCaptioner`.

    Args:
        model: a trained `ShowAttendTellCaptioner`.
        vocabulary: its words by id (with "[START]" and "[END]").
        max_output_length: int >= 1, most words per caption.
        beam_width: int >= 1, for `caption_beam`.
        length_penalty: float >= 0, GNMT length normalisation.
    """

    def __init__(
        self,
        model: ShowAttendTellCaptioner,
        vocabulary: Sequence[str],
        max_output_length: int = 16,
        beam_width: int = 3,
        length_penalty: float = 0.6,
        name=None,
    ):
        super().__init__(name=name)
        if not isinstance(model, ShowAttendTellCaptioner):
            raise TypeError(
                "Invalid type for argument `model`. Expected a "
                f"ShowAttendTellCaptioner. Received: {type(model).__name__}."
            )
        vocabulary = [str(word) for word in vocabulary]
        if len(vocabulary) != model.vocabulary_size:
            raise ValueError(
                "Invalid length for argument `vocabulary`. Expected "
                f"{model.vocabulary_size} words (the model's vocabulary "
                f"size). Received: {len(vocabulary)} words."
            )
        for token in (START_TOKEN, END_TOKEN):
            if token not in vocabulary:
                raise ValueError(
                    "Invalid value for argument `vocabulary`. Expected it "
                    f"to contain {token!r}."
                )
        # Variables are saved once, through the `tf.Variable`s captured.
        object.__setattr__(self, "_model", model)
        self.model_variables = [v.value for v in model.variables]
        self.start_id = vocabulary.index(START_TOKEN)
        self.end_id = vocabulary.index(END_TOKEN)
        self.display_words = display_words_for(
            vocabulary, self.start_id, self.end_id
        )
        self.max_output_length = int(max_output_length)
        self.beam_width = int(beam_width)
        self.length_penalty = float(length_penalty)
        self.image_shape = tuple(model.image_shape)
        spec = tf.TensorSpec((None, *self.image_shape), tf.uint8, name="images")
        self.caption = tf.function(self._caption_greedy, [spec])
        self.caption_beam = tf.function(self._caption_beam, [spec])
        self.caption_image_bytes = tf.function(
            self._caption_image_bytes,
            [tf.TensorSpec([None], tf.string, name="image_bytes")],
        )

    @property
    def model(self) -> ShowAttendTellCaptioner:
        return self._model

    def _caption(self, images, decode):
        images = tf.ensure_shape(images, (None, *self.image_shape))

        def run(batch):
            decoded = decode(tf.cast(batch, tf.float32))
            return decoded_to_text(self.display_words, decoded, "caption")

        return outputs_or_empty(
            tf.shape(images)[0],
            lambda: run(images),
            lambda: run(tf.zeros((1, *self.image_shape), tf.uint8)),
        )

    def _caption_greedy(self, images):
        return self._caption(
            images,
            lambda x: greedy_decode(
                self._model,
                x,
                self.max_output_length,
                self.start_id,
                self.end_id,
            ),
        )

    def _caption_image_bytes(self, image_bytes):
        return self._caption_greedy(
            decode_image_bytes_to_shape(image_bytes, self.image_shape)
        )

    def _caption_beam(self, images):
        return self._caption(
            images,
            lambda x: beam_search_decode(
                self._model,
                x,
                self.max_output_length,
                self.start_id,
                self.end_id,
                beam_width=self.beam_width,
                length_penalty=self.length_penalty,
            ),
        )


def export_captioner_for_serving(
    model: ShowAttendTellCaptioner,
    export_dir: str | os.PathLike,
    vocabulary: Sequence[str],
    *,
    version: int = 1,
    max_output_length: int = 16,
    beam_width: int = 3,
    length_penalty: float = 0.6,
    warmup_images=None,
) -> str:
    """Writes `export_dir/<version>/` with `serving_default`,
    `serving_beam` and `serving_image_bytes` (see the module docstring).

    Returns:
        The path of the written version directory.
    """
    version = check_version(version)
    module = CaptioningServingModule(
        model, vocabulary, max_output_length, beam_width, length_penalty
    )

    def write(path):
        tf.saved_model.save(
            module,
            path,
            signatures={
                SERVING_KEY: module.caption,
                BEAM_SERVING_KEY: module.caption_beam,
                IMAGE_BYTES_SERVING_KEY: module.caption_image_bytes,
            },
        )
        if warmup_images is not None:
            write_warmup_requests(
                path, [np.asarray(image, np.uint8) for image in warmup_images]
            )

    return write_version(export_dir, version, write)
