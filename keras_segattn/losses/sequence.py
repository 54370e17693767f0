"""Token-averaged cross-entropy for sequence models (translation,
captioning), exact under `tf.distribute`."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn.losses.distribution import replica_share_of_mean


@keras.saving.register_keras_serializable(package="keras_segattn")
class TokenCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy averaged over the weighted tokens
    of the global batch.

    On one device it is `keras.losses.SparseCategoricalCrossentropy(
    reduction="mean_with_sample_weight")`: `sum(w * ce) / sum(w)` with the
    token weights `w` of `fit(..., sample_weight=...)` (0 on padding).
    Under `tf.distribute` that Keras loss divides each replica's sum by the
    replica's own weight sum and then by the number of replicas, which
    weights the tokens of a replica with fewer of them more (measured on
    two replicas with unequal padding: a 24% different update). This loss
    divides by the weight sum of the global batch (all-reduced), so the
    replicas' shares add up to the one-device value.

    Args:
        from_logits: bool, whether `y_pred` are logits.
        ignore_class: None or an int id whose tokens get weight 0 (e.g. 0
            for padding) on top of `sample_weight`.
        name, dtype: as `keras.losses.Loss`.

    Inputs: `y_true` int [B, T], `y_pred` [B, T, V], optional
    `sample_weight` [B, T] or [B].
    """

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        name: str = "token_crossentropy",
        dtype=None,
    ):
        super().__init__(
            name=name, reduction="mean_with_sample_weight", dtype=dtype
        )
        self.from_logits = bool(from_logits)
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def call(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(
            y_true, y_pred, from_logits=self.from_logits
        )

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            values = ops.cast(self.call(y_true, y_pred), self.dtype)
            weights = ops.ones_like(values)
            if sample_weight is not None:
                sample_weight = ops.cast(sample_weight, self.dtype)
                while len(sample_weight.shape) < len(values.shape):
                    sample_weight = ops.expand_dims(sample_weight, -1)
                weights = weights * sample_weight
            if self.ignore_class is not None:
                keep = ops.not_equal(
                    ops.cast(y_true, "int32"), self.ignore_class
                )
                weights = weights * ops.cast(keep, self.dtype)
            return replica_share_of_mean(values, weights)

    def get_config(self):
        return {
            "name": self.name,
            "dtype": self.dtype,
            "from_logits": self.from_logits,
            "ignore_class": self.ignore_class,
        }
