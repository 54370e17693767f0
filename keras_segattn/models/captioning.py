"""Show, Attend and Tell captioning (Xu et al., 2015) with soft, hard or no
attention.

`ShowAttendTellCaptioner` is a functional model (images and the shifted
caption in; word logits, attention maps and hard-attention sample log
probabilities out) whose `compute_loss`, the hook Keras's `train_step`
calls inside `fit`, adds the paper's terms to the masked cross-entropy:
the doubly stochastic attention penalty and, for hard attention, the
REINFORCE estimator with a moving-average baseline and an entropy bonus.
It has the step-decoding interface (`encode`, `decode_step`) of
`Seq2SeqTranslator`, so `keras_segattn.decoding.greedy_decode` and
`beam_search_decode` caption with it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers.show_attend_tell_decoder import ATTENTION_MODES
from keras_segattn.layers.show_attend_tell_decoder import ShowAttendTellDecoder
from keras_segattn.losses.distribution import global_mean
from keras_segattn.losses.distribution import replica_share_of_mean
from keras_segattn.losses.distribution import sum_over_replicas
from keras_segattn.models._config import ConstructorConfigMixin


def build_caption_encoder(
    image_shape: Sequence[int],
    filters: Sequence[int] = (32, 64, 96),
    decoder_units: int = 256,
    dtype=None,
) -> keras.Model:
    """CNN giving the L×D annotation grid and the initial LSTM state.

    Images (0..255) are rescaled, passed through 3x3 conv-BN-ReLU blocks
    that halve the size (one per entry of `filters`), flattened to
    annotations [B, L, D], and `[h_0; c_0] = tanh(W mean_i a_i)` (section
    3.1.2: "predicted by an average of the annotation vectors fed through
    two separate MLPs").
    """
    images = keras.Input(tuple(image_shape), name="images")
    x = keras.layers.Rescaling(1.0 / 255, dtype=dtype)(images)
    for i, width in enumerate(filters):
        x = keras.layers.Conv2D(
            width,
            3,
            strides=2,
            padding="same",
            use_bias=False,
            dtype=dtype,
            name=f"encoder_conv{i}",
        )(x)
        x = keras.layers.BatchNormalization(dtype=dtype, name=f"encoder_bn{i}")(
            x
        )
        x = keras.layers.ReLU(dtype=dtype)(x)
    height, width, depth = x.shape[1:]
    annotations = keras.layers.Reshape(
        (height * width, depth), dtype=dtype, name="annotations"
    )(x)
    mean = keras.layers.GlobalAveragePooling1D(dtype=dtype)(annotations)
    state = keras.layers.Dense(
        2 * decoder_units,
        activation="tanh",
        dtype=dtype,
        name="initial_state",
    )(mean)
    return keras.Model(images, [annotations, state], name="caption_encoder")


@keras.saving.register_keras_serializable(package="keras_segattn")
class ShowAttendTellCaptioner(ConstructorConfigMixin, keras.Model):
    """CNN encoder, attention LSTM decoder, deep-output word logits.

    Args:
        vocabulary_size: int > 1, caption words including padding (0),
            OOV, start and end tokens.
        image_shape: (H, W, C), static (the annotation grid is fixed).
        attention: "soft", "hard" or "none" (the plain RNN baseline).
        filters: encoder widths, one stride-2 block each.
        embedding_dim, decoder_units, attention_units: sizes.
        dropout: rate on the embeddings and the deep output.
        doubly_stochastic: λ of the penalty `λ mean_i (1 − Σ_t α_ti)²`
            (eq. 14, averaged rather than summed over the L locations).
        entropy_weight: λ_e of the hard-attention entropy bonus.
        baseline_decay: decay of the REINFORCE baseline, a bias-corrected
            moving average of the reward log p(y | s, a).
        dtype: dtype policy of every layer; logits are float32.

    Inputs: `{"images": float [B, H, W, C] in 0..255, "caption_in": int
    [B, T]}`. Outputs: `{"logits": float32 [B, T, V], "attention": float32
    [B, T, L], "sample_log_probs": float32 [B, T]}`. Train with `fit(x,
    caption_out)`: targets are the caption shifted left, 0-padded; the
    padding is masked out of every loss term.
    """

    def __init__(
        self,
        vocabulary_size: int,
        image_shape: Sequence[int] = (84, 84, 1),
        attention: str = "soft",
        filters: Sequence[int] = (32, 64, 96),
        embedding_dim: int = 64,
        decoder_units: int = 256,
        attention_units: int = 128,
        dropout: float = 0.2,
        doubly_stochastic: float = 1.0,
        entropy_weight: float = 0.01,
        baseline_decay: float = 0.9,
        dtype=None,
        **kwargs,
    ):
        vocabulary_size = validation.check_int(
            vocabulary_size, "vocabulary_size", 2
        )
        validation.check_one_of(attention, ATTENTION_MODES, "attention")
        image_shape = tuple(int(d) for d in image_shape)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(
                "Invalid value for argument `image_shape`. Expected a static "
                f"(H, W, C). Received: image_shape={image_shape!r}."
            )

        # === Layers ===
        encoder = build_caption_encoder(
            image_shape, filters, decoder_units, dtype=dtype
        )
        embedding = keras.layers.Embedding(
            vocabulary_size, embedding_dim, dtype=dtype, name="embedding"
        )
        decoder = ShowAttendTellDecoder(
            decoder_units,
            attention_units,
            attention=attention,
            dtype=dtype,
            name="decoder",
        )
        embedding_dropout = keras.layers.Dropout(dropout, dtype=dtype)
        output_dropout = keras.layers.Dropout(dropout, dtype=dtype)
        logits_layer = keras.layers.Dense(
            vocabulary_size, dtype="float32", name="logits"
        )

        # === Functional Model ===
        images = keras.Input(image_shape, name="images")
        caption_in = keras.Input((None,), dtype="int32", name="caption_in")
        annotations, state = encoder(images)
        features, weights, log_probs = decoder(
            embedding_dropout(embedding(caption_in)), annotations, state
        )
        logits = logits_layer(output_dropout(features))
        super().__init__(
            inputs={"images": images, "caption_in": caption_in},
            outputs={
                "logits": logits,
                "attention": keras.layers.Identity(
                    dtype="float32", name="attention"
                )(weights),
                "sample_log_probs": keras.layers.Identity(
                    dtype="float32", name="sample_log_probs"
                )(log_probs),
            },
            **kwargs,
        )

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.image_shape = image_shape
        self.attention_mode = attention
        self.filters = tuple(int(f) for f in filters)
        self.embedding_dim = int(embedding_dim)
        self.decoder_units = int(decoder_units)
        self.attention_units = int(attention_units)
        self.dropout = float(dropout)
        self.doubly_stochastic = float(doubly_stochastic)
        self.entropy_weight = float(entropy_weight)
        self.baseline_decay = float(baseline_decay)
        self.image_encoder = encoder
        self.embedding = embedding
        self.decoder = decoder
        self.logits_layer = logits_layer
        # Updated once per global step from the global batch's mean reward
        # (identical on every replica): under tf.distribute the first
        # replica's assignment is the update.
        self.reward_average = keras.Variable(
            0.0,
            trainable=False,
            aggregation="only_first_replica",
            name="reward_average",
        )
        self.reward_updates = keras.Variable(
            0.0,
            trainable=False,
            aggregation="only_first_replica",
            name="reward_updates",
        )
        self.caption_accuracy = keras.metrics.SparseCategoricalAccuracy(
            name="accuracy"
        )
        # The word negative log likelihood per token: the `loss` of a hard
        # attention model also holds the REINFORCE surrogate.
        self.caption_nll = keras.metrics.Mean(name="nll")

    @property
    def target_vocabulary_size(self) -> int:
        return self.vocabulary_size

    def _constructor_config(self):
        return {
            "vocabulary_size": self.vocabulary_size,
            "image_shape": self.image_shape,
            "attention": self.attention_mode,
            "filters": self.filters,
            "embedding_dim": self.embedding_dim,
            "decoder_units": self.decoder_units,
            "attention_units": self.attention_units,
            "dropout": self.dropout,
            "doubly_stochastic": self.doubly_stochastic,
            "entropy_weight": self.entropy_weight,
            "baseline_decay": self.baseline_decay,
        }

    # === Losses (called by Keras's train_step and test_step) ===

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        """The loss of this replica's examples as its share of the global
        batch's: sums over its tokens and captions divided by the global
        token and caption counts (all-reduced under `tf.distribute`), so
        that the replicas' shares, whose gradients Keras sums, add up to
        the loss of one device on the whole batch."""
        mask = ops.cast(ops.greater(y, 0), "float32")
        if sample_weight is not None:
            mask = mask * ops.cast(sample_weight, "float32")
        tokens = ops.maximum(sum_over_replicas(ops.sum(mask)), 1.0)
        cross_entropy = keras.losses.sparse_categorical_crossentropy(
            y, y_pred["logits"], from_logits=True
        )
        nll = ops.sum(cross_entropy * mask)
        loss = nll / tokens
        self.caption_nll.update_state(sum_over_replicas(nll) / tokens)
        if self.attention_mode == "none":
            return loss
        weights = y_pred["attention"] * mask[..., None]  # [B, T, L]
        # Doubly stochastic attention: every location attended about once
        # over the caption. Eq. 14 sums over locations; the mean keeps λ
        # independent of the grid size (as the common PyTorch port does).
        coverage = ops.sum(weights, axis=1)  # [B, L]
        loss = loss + self.doubly_stochastic * replica_share_of_mean(
            ops.mean(ops.square(1.0 - coverage), axis=-1)
        )
        if self.attention_mode == "hard" and training:
            # REINFORCE with reward log p(y | s, a) per caption.
            reward = -ops.sum(cross_entropy * mask, axis=-1)  # [B]
            reward = ops.stop_gradient(reward)
            batch_reward = global_mean(reward)
            advantage = reward - self._baseline(batch_reward)
            log_probs = ops.sum(y_pred["sample_log_probs"] * mask, axis=-1)
            loss = loss - ops.sum(advantage * log_probs) / tokens
            entropy = (
                -ops.sum(weights * ops.log(y_pred["attention"] + 1e-8)) / tokens
            )
            loss = loss - self.entropy_weight * entropy
            decay = self.baseline_decay
            self.reward_average.assign(
                decay * self.reward_average + (1.0 - decay) * batch_reward
            )
            self.reward_updates.assign(self.reward_updates + 1.0)
        return loss

    @property
    def reward_baseline(self):
        """The bias-corrected moving average of the reward (as Adam
        corrects its moments), 0 before the first update."""
        updates = self.reward_updates
        correction = 1.0 - ops.power(self.baseline_decay, updates)
        return ops.where(
            updates > 0,
            self.reward_average / ops.maximum(correction, 1e-8),
            0.0,
        )

    def _baseline(self, batch_reward):
        # Before any update the (global) batch mean is the only estimate.
        return ops.where(
            self.reward_updates > 0, self.reward_baseline, batch_reward
        )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        mask = ops.cast(ops.greater(y, 0), "float32")
        self.caption_accuracy.update_state(
            y, y_pred["logits"], sample_weight=mask
        )
        return self.get_metrics_result()

    # === Step decoding (keras_segattn.decoding) ===

    def encode(self, images):
        """Annotations, their attention keys and `[h_0; c_0]` of images."""
        validation.check_rank(images, 4, "images")
        annotations, state = self.image_encoder(images, training=False)
        return {
            "memory": annotations,
            "keys": self.decoder.precompute_keys(annotations),
            "state": state,
        }

    def decode_step(self, tokens, state, encoded):
        """(logits [B, V], new state, attention α [B, L]) after `tokens`."""
        state, features, weights, _ = self.decoder.step(
            self.embedding(tokens), state, encoded["memory"], encoded["keys"]
        )
        return self.logits_layer(features), state, weights
