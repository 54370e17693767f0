"""`BahdanauAttention`: additive attention with query/key projections."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation


@keras.saving.register_keras_serializable(package="keras_segattn")
class BahdanauAttention(keras.layers.Layer):
    """Additive (Bahdanau) attention: `score = vᵀ tanh(W1 k_s + W2 q)`.

    Bahdanau, Cho & Bengio, "Neural Machine Translation by Jointly Learning
    to Align and Translate", ICLR 2015, appendix A.1.2: the alignment model
    `e_ij = vᵀ tanh(W s_{i-1} + U h_j)` with learned `W` (here `W2`, applied
    to the query `s_{i-1}`), `U` (here `W1`, applied to the keys `h_j`) and
    `v`. `keras.layers.AdditiveAttention` lacks `W1`, `W2` and `v`; this
    layer has them.

    With `normalize=True` it is the weight-normalised variant of
    TF-Addons' `BahdanauAttention(normalize=True)` (Salimans & Kingma,
    2016): `v = g · v / ‖v‖` with a learned scalar `g` (initialised to
    `sqrt(1 / units)`) and a learned bias `b` inside the tanh:
    `score = (g v / ‖v‖)ᵀ tanh(W1 k_s + W2 q + b)`.

    The weights are a softmax over the value positions `s` with masked
    positions removed: `weights = softmax(score)` where `mask` is true, 0
    elsewhere; a fully masked row gives zero weights and a zero context
    (never NaN). The context is `Σ_s weights_s · value_s`. Scores are
    bounded (`|score| <= ‖v‖₁`), so finite inputs of any size give finite
    weights; a NaN in the query or in a key or value at an unmasked
    position makes the context row NaN, while NaN or infinite keys and
    values at masked positions are ignored (the context is exactly that
    of the unmasked positions). Integer inputs are refused (embed token
    ids first).

    Decoders call the layer once per generated token with the same keys:
    `precompute_keys(key)` returns `W1 k` once per sequence and
    `attend(query, value, processed_key, mask)` reuses it; `call` is
    `attend(query, value, precompute_keys(key))`.

    Args:
        units: int > 0, size of the hidden alignment layer (`n'` in the
            paper, 1000 there).
        normalize: bool, weight-normalise `v` and add the bias `b`.
        kernel_initializer: initializer of `W1`, `W2` and `v`.
        kernel_regularizer: optional regularizer of `W1`, `W2` and `v`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        query: [B, Dq] (one decoder step) or [B, Tq, Dq] (all steps at
            once, as with teacher forcing).
        value: [B, Tv, Dv], the annotations to average.
        key: [B, Tv, Dk] to score against; defaults to `value`.
        mask: optional bool [B, Tv], true where `value` is real (false on
            padding). When omitted, the Keras mask of `value` is used (an
            `Embedding(mask_zero=True)` or `Masking` upstream); Keras fills
            `value_mask` with it, an explicit `mask` wins.
        return_attention_scores: also return the weights.
        training: unused (no dropout), accepted for Keras.

    Returns:
        context [B, Dv] or [B, Tq, Dv]; with `return_attention_scores`, the
        tuple (context, weights) with weights [B, Tv] or [B, Tq, Tv]. The
        weights are float32 under a mixed policy (the softmax runs in
        float32), the context has the compute dtype.

    Raises:
        TypeError: when called, if `query`, `value` or `key` is not
            floating.
        ValueError: in `__init__` if `units` is not a positive int; when
            called, if `query` is not rank 2 or 3, `value`/`key` not rank 3,
            `mask` not rank 2, or static batch sizes, `Tv` (between `value`,
            `key` and `mask`) or feature sizes (`query`/`key` against the
            built weights) disagree.

    Example:

    >>> attention = BahdanauAttention(units=8)
    >>> query = np.zeros((2, 5), "float32")      # decoder state
    >>> value = np.ones((2, 7, 6), "float32")    # encoder annotations
    >>> context, weights = attention(query, value,
    ...                              return_attention_scores=True)
    >>> context.shape, weights.shape
    (TensorShape([2, 6]), TensorShape([2, 7]))
    """

    def __init__(
        self,
        units: int,
        normalize: bool = False,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = validation.check_positive_int(units, "units")
        if not isinstance(normalize, bool):
            raise TypeError(
                "Invalid type for argument `normalize`. Expected a bool. "
                f"Received: normalize={normalize!r} "
                f"(of type {type(normalize).__name__})."
            )
        self.normalize = normalize
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.supports_masking = True

    # === Shape checks ===

    def _check_shapes(self, query_shape, value_shape, key_shape, mask_shape):
        query_shape = validation.check_rank(query_shape, (2, 3), "query")
        value_shape = validation.check_rank(value_shape, 3, "value")
        if key_shape is None:
            key_shape = value_shape
        key_shape = validation.check_rank(key_shape, 3, "key")
        shapes = {"query": query_shape, "value": value_shape, "key": key_shape}
        if mask_shape is not None:
            shapes["mask"] = validation.check_rank(mask_shape, 2, "mask")
        _check_equal_dims(shapes, 0, "batch size")
        _check_equal_dims(
            {k: s for k, s in shapes.items() if k != "query"},
            1,
            "number of value positions Tv",
        )
        return query_shape, key_shape

    def build(self, query_shape, value_shape, key_shape=None):
        query_shape, key_shape = self._check_shapes(
            query_shape, value_shape, key_shape, None
        )
        for shape, name in ((query_shape, "query"), (key_shape, "key")):
            if shape[-1] is None:
                raise ValueError(
                    f"Invalid shape for argument `{name}`. Expected a known "
                    f"last (feature) dimension. Received: {name}.shape="
                    f"{shape}."
                )
        weight = dict(
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.key_kernel = self.add_weight(
            name="key_kernel", shape=(key_shape[-1], self.units), **weight
        )  # W1
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(query_shape[-1], self.units), **weight
        )  # W2
        self.score_vector = self.add_weight(
            name="score_vector", shape=(self.units,), **weight
        )  # v
        if self.normalize:
            self.score_scale = self.add_weight(
                name="score_scale",
                shape=(),
                initializer=keras.initializers.Constant(
                    (1.0 / self.units) ** 0.5
                ),
            )  # g
            self.score_bias = self.add_weight(
                name="score_bias", shape=(self.units,), initializer="zeros"
            )  # b

    # === Computation ===

    def precompute_keys(self, key):
        """Returns `W1 · key`, [B, Tv, units]: compute once per sequence."""
        validation.check_rank(key, 3, "key")
        validation.check_static_dims(key, {-1: self.key_kernel.shape[0]}, "key")
        key = ops.cast(key, self.compute_dtype)
        return ops.matmul(key, ops.cast(self.key_kernel, self.compute_dtype))

    def attend(self, query, value, processed_key, mask=None):
        """Context and weights from keys that `precompute_keys` projected.

        Args:
            query: [B, Dq] or [B, Tq, Dq].
            value: [B, Tv, Dv].
            processed_key: [B, Tv, units], from `precompute_keys`.
            mask: optional bool [B, Tv].

        Returns:
            (context, weights) as documented on the class.
        """
        self._check_shapes(*(_shape(x) for x in (query, value, None, mask)))
        _check_floating(query=query, value=value)
        validation.check_rank(processed_key, 3, "processed_key")
        validation.check_static_dims(
            query, {-1: self.query_kernel.shape[0]}, "query"
        )
        dtype = self.compute_dtype
        query = ops.cast(query, dtype)
        processed_query = ops.matmul(query, ops.cast(self.query_kernel, dtype))
        single_step = len(query.shape) == 2
        # [B, Tq, 1, units] + [B, 1, Tv, units] (Tq = 1 for one step).
        if single_step:
            processed_query = processed_query[:, None, :]
        hidden = processed_query[:, :, None, :] + processed_key[:, None]
        vector = ops.cast(self.score_vector, dtype)
        if self.normalize:
            hidden = hidden + ops.cast(self.score_bias, dtype)
            norm = ops.sqrt(ops.sum(ops.square(self.score_vector)))
            vector = ops.cast(
                self.score_scale * self.score_vector / norm, dtype
            )
        scores = ops.sum(ops.tanh(hidden) * vector, axis=-1)  # [B, Tq, Tv]
        weights = _masked_softmax(scores, mask)
        value = ops.cast(value, dtype)
        if mask is not None:  # a zero weight does not zero a NaN value
            value = ops.where(ops.cast(mask, "bool")[..., None], value, 0.0)
        context = ops.einsum("bqs,bsd->bqd", ops.cast(weights, dtype), value)
        if single_step:
            return context[:, 0], weights[:, 0]
        return context, weights

    def call(
        self,
        query,
        value,
        key=None,
        mask=None,
        return_attention_scores=False,
        training=None,
        value_mask=None,
    ):
        if mask is None:
            mask = value_mask
        self._check_shapes(*(_shape(x) for x in (query, value, key, mask)))
        _check_floating(query=query, value=value, key=key)
        processed_key = self.precompute_keys(value if key is None else key)
        context, weights = self.attend(query, value, processed_key, mask)
        if return_attention_scores:
            return context, weights
        return context

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        """The context shape (call with `return_attention_scores=True` for
        the weights, [B, Tv] or [B, Tq, Tv], too)."""
        query_shape, _ = self._check_shapes(
            query_shape, value_shape, key_shape, None
        )
        return (*query_shape[:-1], tuple(value_shape)[-1])

    def compute_output_spec(
        self,
        query,
        value,
        key=None,
        mask=None,
        return_attention_scores=False,
        training=None,
        value_mask=None,
    ):
        context = keras.KerasTensor(
            self.compute_output_shape(
                *(_shape(x) for x in (query, value, key))
            ),
            self.compute_dtype,
        )
        if not return_attention_scores:
            return context
        weights = (*query.shape[:-1], value.shape[1])
        return context, keras.KerasTensor(weights, "float32")

    def compute_mask(self, query, value=None, key=None, mask=None, **kwargs):
        # The context has one row per query step: it inherits no mask
        # from the value positions it averages over.
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "normalize": self.normalize,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
            }
        )
        return config


def _shape(x):
    """The static shape of an optional tensor (None stays None)."""
    return None if x is None else x.shape


def _check_floating(**tensors) -> None:
    """Raises `TypeError` naming the first given tensor that is not
    floating (integer ids must go through an `Embedding` first)."""
    for name, x in tensors.items():
        if x is not None:
            validation.check_floating(ops.convert_to_tensor(x).dtype, name)


def _check_equal_dims(shapes: dict, axis: int, what: str) -> None:
    """Raises if known sizes along `axis` of the named shapes differ."""
    known = {
        name: shape[axis]
        for name, shape in shapes.items()
        if shape is not None and shape[axis] is not None
    }
    if len(set(known.values())) > 1:
        received = ", ".join(f"{name}.shape={shapes[name]}" for name in known)
        raise ValueError(
            f"Mismatched {what} between arguments {', '.join(known)}. "
            f"Expected the same size on axis {axis}. Received: {received}."
        )


def _masked_softmax(scores, mask):
    """Softmax over the last axis in float32; masked entries get weight 0.

    A row with no true entry gets all-zero weights instead of NaN.
    """
    scores = ops.cast(scores, "float32")
    if mask is not None:
        mask = ops.cast(mask, "bool")[:, None, :]  # [B, 1, Tv]
        scores = ops.where(mask, scores, ops.full_like(scores, -1e9))
    # Written out: `ops.softmax` warns when Tv is 1 (a one-word sentence).
    # `initial` lets keras.ops reduce an empty batch (refused eagerly
    # without one); it changes no result.
    maximum = ops.max(scores, axis=-1, keepdims=True, initial=-3.0e38)
    exp = ops.exp(scores - maximum)
    weights = exp / ops.sum(exp, axis=-1, keepdims=True)
    if mask is None:
        return weights
    return weights * ops.cast(mask, "float32")
