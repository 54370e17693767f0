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
from keras_segattn.layers.dropout import Dropout
from keras_segattn.layers.grid_coordinates import GridCoordinates
from keras_segattn.layers.show_attend_tell_decoder import ATTENTION_MODES
from keras_segattn.layers.show_attend_tell_decoder import ShowAttendTellDecoder
from keras_segattn.losses.distribution import global_mean
from keras_segattn.losses.distribution import replica_share_of_mean
from keras_segattn.losses.distribution import sum_over_replicas
from keras_segattn.models._config import ConstructorConfigMixin

BASELINES = ("moving_average", "self_critical", "learned")
REWARDS = ("log_likelihood", "token_accuracy")


def _caption_reward(kind, y, logits, mask):
    """Per-caption rewards [B] of teacher-forced `logits` for targets `y`
    (`mask`: 1 on real tokens): `log p(y | s, a)` (the paper's, eq. 10),
    the fraction of words the argmax gets right, or `kind(y, logits,
    mask)`, which must return one float per caption."""
    if kind == "log_likelihood":
        cross_entropy = keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True
        )
        return -ops.sum(cross_entropy * mask, axis=-1)
    if kind == "token_accuracy":
        right = ops.cast(
            ops.equal(ops.argmax(logits, axis=-1), ops.cast(y, "int32")),
            "float32",
        )
        return ops.divide_no_nan(
            ops.sum(right * mask, axis=-1), ops.sum(mask, axis=-1)
        )
    reward = kind(y, logits, mask)
    shape = tuple(getattr(reward, "shape", ()))
    batch = tuple(y.shape)[0]
    if len(shape) != 1 or (
        shape[0] is not None and batch is not None and shape[0] != batch
    ):
        raise ValueError(
            "Invalid value for argument `reward`. Expected a function "
            "returning one reward per caption, shape (batch,) = "
            f"({batch},). Received: a function returning shape {shape}."
        )
    return ops.cast(reward, "float32")


def build_caption_encoder(
    image_shape: Sequence[int],
    filters: Sequence[int] = (16, 32, 64, 128),
    decoder_units: int = 256,
    block_depth: int = 2,
    coordinates: bool = True,
    dtype=None,
) -> keras.Model:
    """CNN giving the L×D annotation grid and the initial LSTM state.

    Images (0..255) are rescaled and passed through one block per entry of
    `filters`: a 3x3 stride-2 conv-BN-ReLU, then `block_depth − 1` 3x3
    stride-1 ones. The map is flattened to annotations [B, L, D] (with
    `coordinates`, `GridCoordinates` appends each location's normalised
    (y, x): D = filters[-1] + 2), and `[h_0; c_0] = tanh(W mean_i a_i)`
    (section 3.1.2: "predicted by an average of the annotation vectors fed
    through two separate MLPs").

    The defaults turn an 84x84 digit canvas (3x3 cells of 28 px) into a
    6x6 grid whose annotations each see 91 px (the receptive field of the
    nine convolutions), so every annotation covers a whole cell and its
    neighbours; `filters=(32, 64, 64), block_depth=1, coordinates=False`
    is the previous encoder (an 11x11 grid of 31-px views, no position).
    """
    filters = tuple(
        validation.check_positive_int(f, "filters") for f in filters
    )
    if not filters:
        raise ValueError(
            "Invalid value for argument `filters`. Expected at least one "
            f"width. Received: filters={filters!r}."
        )
    block_depth = validation.check_positive_int(block_depth, "block_depth")
    images = keras.Input(tuple(image_shape), name="images")
    x = keras.layers.Rescaling(1.0 / 255, dtype=dtype)(images)
    for i, width in enumerate(filters):
        for j in range(block_depth):
            suffix = f"{i}" if j == 0 else f"{i}_{j}"
            x = keras.layers.Conv2D(
                width,
                3,
                strides=2 if j == 0 else 1,
                padding="same",
                use_bias=False,
                dtype=dtype,
                name=f"encoder_conv{suffix}",
            )(x)
            x = keras.layers.BatchNormalization(
                dtype=dtype, name=f"encoder_bn{suffix}"
            )(x)
            x = keras.layers.ReLU(dtype=dtype)(x)
    height, width, depth = x.shape[1:]
    annotations = keras.layers.Reshape(
        (height * width, depth), dtype=dtype, name="annotations"
    )(x)
    if coordinates:
        annotations = GridCoordinates(
            (height, width), dtype=dtype, name="coordinates"
        )(annotations)
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
        block_depth: 3x3 convs per encoder block (the first strided).
        coordinates: append each location's normalised (y, x) to its
            annotation (`GridCoordinates`), so the context says where the
            model looked. See `build_caption_encoder` for the defaults.
        embedding_dim, decoder_units, attention_units: sizes.
        dropout: rate on the embeddings and the deep output.
        doubly_stochastic: λ of the penalty `λ mean_i (1 − Σ_t α_ti)²`
            (eq. 14, averaged rather than summed over the L locations).
        entropy_weight: λ_e of the hard-attention entropy bonus
            `λ_e H(α)` (section 4.1), summed over steps, per token.
        baseline_decay: decay of the "moving_average" baseline, a
            bias-corrected moving average of the batch's mean reward.
        baseline: variance reduction of the hard-attention REINFORCE
            estimator: "moving_average" (the paper's), "self_critical"
            (Rennie et al., 2017: each caption's reward under the
            test-time policy, the most attended location at every step,
            is its baseline; one extra forward pass per step) or
            "learned" (a value head on the encoder's initial state,
            regressed on the reward by squared error without
            back-propagating into the encoder).
        reward: the per-caption reward of hard attention:
            "log_likelihood" (log p(y | s, a), the paper's),
            "token_accuracy" (the fraction of words the teacher-forced
            argmax gets right) or a function `(y, logits, mask) ->
            [batch]` float rewards (registered with Keras to be saved).
        expected_context_probability: probability per batch that hard
            attention trains on the expected context instead of a
            sample (the paper's 0.5).
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
        filters: Sequence[int] = (16, 32, 64, 128),
        block_depth: int = 2,
        coordinates: bool = True,
        embedding_dim: int = 64,
        decoder_units: int = 256,
        attention_units: int = 128,
        dropout: float = 0.2,
        doubly_stochastic: float = 1.0,
        entropy_weight: float = 0.01,
        baseline_decay: float = 0.9,
        baseline: str = "moving_average",
        reward="log_likelihood",
        expected_context_probability: float = 0.5,
        dtype=None,
        **kwargs,
    ):
        vocabulary_size = validation.check_int(
            vocabulary_size, "vocabulary_size", 2
        )
        validation.check_one_of(attention, ATTENTION_MODES, "attention")
        validation.check_one_of(baseline, BASELINES, "baseline")
        if isinstance(reward, dict):
            reward = keras.saving.deserialize_keras_object(reward)
        if not callable(reward):
            validation.check_one_of(reward, REWARDS, "reward")
        validation.check_non_negative_float(entropy_weight, "entropy_weight")
        validation.check_fraction(baseline_decay, "baseline_decay")
        if not isinstance(coordinates, bool):
            raise TypeError(
                "Invalid type for argument `coordinates`. Expected a bool. "
                f"Received: coordinates={coordinates!r}."
            )
        image_shape = tuple(int(d) for d in image_shape)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(
                "Invalid value for argument `image_shape`. Expected a static "
                f"(H, W, C). Received: image_shape={image_shape!r}."
            )

        # === Layers ===
        encoder = build_caption_encoder(
            image_shape,
            filters,
            decoder_units,
            block_depth=block_depth,
            coordinates=coordinates,
            dtype=dtype,
        )
        embedding = keras.layers.Embedding(
            vocabulary_size, embedding_dim, dtype=dtype, name="embedding"
        )
        decoder = ShowAttendTellDecoder(
            decoder_units,
            attention_units,
            attention=attention,
            expected_context_probability=expected_context_probability,
            dtype=dtype,
            name="decoder",
        )
        embedding_dropout = Dropout(dropout, dtype=dtype)
        output_dropout = Dropout(dropout, dtype=dtype)
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
        extra = {}
        value_head = None
        if attention == "hard" and baseline == "learned":
            # b(x) of the learned baseline; the stop keeps its regression
            # out of the encoder.
            value_head = keras.layers.Dense(
                1, dtype="float32", name="reward_value"
            )
            extra["reward_value"] = keras.layers.Reshape(
                (), dtype="float32", name="reward_value_flat"
            )(value_head(ops.stop_gradient(state)))
        super().__init__(
            inputs={"images": images, "caption_in": caption_in},
            outputs={
                **extra,
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
        self.block_depth = int(block_depth)
        self.coordinates = bool(coordinates)
        self.embedding_dim = int(embedding_dim)
        self.decoder_units = int(decoder_units)
        self.attention_units = int(attention_units)
        self.dropout = float(dropout)
        self.doubly_stochastic = float(doubly_stochastic)
        self.entropy_weight = float(entropy_weight)
        self.baseline_decay = float(baseline_decay)
        self.baseline = baseline
        self.reward = reward
        self.expected_context_probability = float(expected_context_probability)
        self.value_head = value_head
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
            "block_depth": self.block_depth,
            "coordinates": self.coordinates,
            "embedding_dim": self.embedding_dim,
            "decoder_units": self.decoder_units,
            "attention_units": self.attention_units,
            "dropout": self.dropout,
            "doubly_stochastic": self.doubly_stochastic,
            "entropy_weight": self.entropy_weight,
            "baseline_decay": self.baseline_decay,
            "baseline": self.baseline,
            "reward": (
                keras.saving.serialize_keras_object(self.reward)
                if callable(self.reward)
                else self.reward
            ),
            "expected_context_probability": (self.expected_context_probability),
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
            # REINFORCE over the sampled locations (eq. 12) with a baseline.
            reward = ops.stop_gradient(
                _caption_reward(self.reward, y, y_pred["logits"], mask)
            )  # [B]
            batch_reward = global_mean(reward)
            if self.baseline == "self_critical":
                greedy = self(x, training=False)
                baseline = ops.stop_gradient(
                    _caption_reward(self.reward, y, greedy["logits"], mask)
                )
            elif self.baseline == "learned":
                value = y_pred["reward_value"]
                baseline = ops.stop_gradient(value)
                loss = loss + replica_share_of_mean(ops.square(value - reward))
            else:
                baseline = self._baseline(batch_reward)
            advantage = reward - baseline
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
