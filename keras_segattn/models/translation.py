"""Attention-based neural machine translation (Bahdanau et al., 2015).

`Seq2SeqTranslator` is the trainable functional model (teacher forcing:
source ids and the shifted target ids in, word logits out); its
`encode` and `decode_step` are the step-decoding interface that
`keras_segattn.decoding.greedy_decode` and `beam_search_decode` generate
from.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers.bahdanau_decoder import BahdanauDecoder
from keras_segattn.layers.dropout import Dropout
from keras_segattn.models._config import ConstructorConfigMixin


@keras.saving.register_keras_serializable(package="keras_segattn")
class Seq2SeqTranslator(ConstructorConfigMixin, keras.Model):
    """Bidirectional-GRU encoder, attention GRU decoder, word logits.

    The RNNsearch model of Bahdanau, Cho & Bengio (ICLR 2015):

    - encoder: `Embedding(mask_zero=True)` and a bidirectional GRU whose
      concatenated states are the annotations `h_j`;
    - `s_0 = tanh(W_s ←h_1)`, from the backward state at the first word
      (appendix A.2.2);
    - decoder: `keras_segattn.layers.BahdanauDecoder` (attention queried by
      `s_{i-1}`, context fed into the GRU, maxout deep output), then a
      `Dense` to the target vocabulary.

    With `attention=False` it is the RNN Encoder-Decoder baseline (Cho et
    al., 2014): the decoder sees one fixed context, the concatenated final
    forward and backward encoder states, at every step.

    Ids 0 are padding in both languages; the model does not care which id
    is the start token (the data pipeline puts it in `target_in`).

    Args:
        source_vocabulary_size: int > 1, including padding and OOV ids.
        target_vocabulary_size: int > 1.
        embedding_dim: int > 0, both embeddings.
        encoder_units: int > 0, per direction (annotations are twice this).
        decoder_units: int > 0, GRU state size.
        attention_units: int > 0, alignment layer size.
        readout_units: int > 0, maxout output size before the logits.
        dropout: rate on the embeddings and the readout, in [0, 1).
        attention: bool, RNNsearch (True) or RNN Encoder-Decoder (False).
        normalize_attention: bool, weight-normalised attention.
        dtype: dtype or dtype policy of every layer; logits are float32.
        **kwargs: `keras.Model` arguments (`name`).

    Inputs: `{"source": int [B, S], "target_in": int [B, T]}`.
    Output: logits float32 [B, T, target_vocabulary_size].

    The model has no loss of its own: compile it with
    `keras_segattn.losses.TokenCrossentropy(from_logits=True)` and token
    weights (0 on padding), the mean over the global batch's tokens under
    `tf.distribute` too (Keras's `reduction="mean_with_sample_weight"`
    averages each replica's tokens separately).
    """

    def __init__(
        self,
        source_vocabulary_size: int,
        target_vocabulary_size: int,
        embedding_dim: int = 128,
        encoder_units: int = 256,
        decoder_units: int = 256,
        attention_units: int = 256,
        readout_units: int = 192,
        dropout: float = 0.2,
        attention: bool = True,
        normalize_attention: bool = False,
        dtype=None,
        **kwargs,
    ):
        sizes = {
            name: validation.check_int(value, name, minimum)
            for name, value, minimum in (
                ("source_vocabulary_size", source_vocabulary_size, 2),
                ("target_vocabulary_size", target_vocabulary_size, 2),
                ("embedding_dim", embedding_dim, 1),
                ("encoder_units", encoder_units, 1),
                ("decoder_units", decoder_units, 1),
                ("attention_units", attention_units, 1),
                ("readout_units", readout_units, 1),
            )
        }
        validation.check_rate(dropout, "dropout")

        # === Layers ===
        source_embedding = keras.layers.Embedding(
            sizes["source_vocabulary_size"],
            sizes["embedding_dim"],
            mask_zero=True,
            dtype=dtype,
            name="source_embedding",
        )
        target_embedding = keras.layers.Embedding(
            sizes["target_vocabulary_size"],
            sizes["embedding_dim"],
            dtype=dtype,
            name="target_embedding",
        )
        embedding_dropout = Dropout(
            dropout, dtype=dtype, name="embedding_dropout"
        )
        encoder = keras.layers.Bidirectional(
            keras.layers.GRU(
                sizes["encoder_units"],
                return_sequences=True,
                return_state=True,
                dtype=dtype,
            ),
            dtype=dtype,
            name="encoder",
        )
        initial_state = keras.layers.Dense(
            sizes["decoder_units"],
            activation="tanh",
            dtype=dtype,
            name="initial_state",
        )
        decoder = BahdanauDecoder(
            sizes["decoder_units"],
            sizes["attention_units"],
            sizes["readout_units"],
            attention=attention,
            normalize=normalize_attention,
            dtype=dtype,
            name="decoder",
        )
        readout_dropout = Dropout(dropout, dtype=dtype, name="readout_dropout")
        logits_layer = keras.layers.Dense(
            sizes["target_vocabulary_size"],
            dtype="float32",
            name="logits",
        )

        # === Functional Model ===
        source = keras.Input((None,), dtype="int32", name="source")
        target_in = keras.Input((None,), dtype="int32", name="target_in")
        annotations, forward_state, backward_state = encoder(
            embedding_dropout(source_embedding(source))
        )
        memory = (
            annotations
            if attention
            else keras.layers.Concatenate(dtype=dtype, name="fixed_context")(
                [forward_state, backward_state]
            )
        )
        features, _ = decoder(
            embedding_dropout(target_embedding(target_in)),
            memory,
            initial_state(backward_state),
        )
        logits = logits_layer(readout_dropout(features))
        super().__init__(
            inputs={"source": source, "target_in": target_in},
            outputs=logits,
            **kwargs,
        )

        # === Config ===
        self.source_vocabulary_size = sizes["source_vocabulary_size"]
        self.target_vocabulary_size = sizes["target_vocabulary_size"]
        self.embedding_dim = sizes["embedding_dim"]
        self.encoder_units = sizes["encoder_units"]
        self.decoder_units = sizes["decoder_units"]
        self.attention_units = sizes["attention_units"]
        self.readout_units = sizes["readout_units"]
        self.dropout = float(dropout)
        self.attention = bool(attention)
        self.normalize_attention = bool(normalize_attention)
        self.source_embedding = source_embedding
        self.target_embedding = target_embedding
        self.encoder = encoder
        self.initial_state_layer = initial_state
        self.decoder = decoder
        self.logits_layer = logits_layer

    def _constructor_config(self):
        return {
            "source_vocabulary_size": self.source_vocabulary_size,
            "target_vocabulary_size": self.target_vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "encoder_units": self.encoder_units,
            "decoder_units": self.decoder_units,
            "attention_units": self.attention_units,
            "readout_units": self.readout_units,
            "dropout": self.dropout,
            "attention": self.attention,
            "normalize_attention": self.normalize_attention,
        }

    # === Inference, one step at a time ===

    def encode(self, source):
        """Encodes source ids [B, S] once for decoding.

        Returns:
            dict with `memory` (annotations [B, S, 2·encoder_units], or the
            fixed context [B, 2·encoder_units]), `mask` bool [B, S],
            `keys` (precomputed attention keys or None) and `state` `s_0`.
        """
        validation.check_rank(source, 2, "source")
        source = ops.cast(source, "int32")
        mask = ops.not_equal(source, 0)
        embedded = self.source_embedding(source)
        annotations, forward_state, backward_state = self.encoder(
            embedded, mask=mask, training=False
        )
        memory = (
            annotations
            if self.attention
            else ops.concatenate([forward_state, backward_state], axis=-1)
        )
        return {
            "memory": memory,
            "mask": mask,
            "keys": self.decoder.precompute_keys(memory),
            "state": self.initial_state_layer(backward_state),
        }

    def decode_step(self, tokens, state, encoded):
        """Logits for the next word after `tokens` [B] (ids of `y_{i-1}`).

        Returns:
            (logits float32 [B, V], new state [B, units], attention
            weights float32 [B, S] or [B, 0]).
        """
        embedding = self.target_embedding(tokens)
        new_state, context, weights = self.decoder.step(
            embedding,
            state,
            encoded["memory"],
            encoded["keys"],
            encoded["mask"],
        )
        features = self.decoder.readout(
            new_state, ops.cast(embedding, new_state.dtype), context
        )
        return self.logits_layer(features), new_state, weights
