"""Autoregressive decoding for step decoders: one strategy per file.

After keras-hub's `samplers/` (keras-team/keras-hub:
keras_hub/src/samplers/greedy_sampler.py, beam_sampler.py), as
functions rather than sampler objects:

- `greedy_decode` (greedy.py): the most likely word at every step;
- `beam_search_decode` (beam_search.py): beam search ranked by the GNMT
  length penalty (Wu et al., 2016).

Both take any model with the step-decoding interface of
`keras_segattn.models.Seq2SeqTranslator` and
`keras_segattn.models.ShowAttendTellCaptioner` (`encode`, `decode_step`,
`target_vocabulary_size`; see `_common.StepDecoder`), run fixed-length
`tf.while_loop`s (TensorFlow backend), and so work inside a `tf.function`
and an exported SavedModel. `keras_segattn.models` re-exports both.
"""

from keras_segattn.decoding.beam_search import beam_search_decode
from keras_segattn.decoding.greedy import greedy_decode
