"""`GravesWindowAttention`: the soft window of Graves (2013), section 5.1."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation

# Bound of (α̂, β̂, κ̂) before the exponentials: exp(60) ~ 1e26.
_MAX_LOG = 60.0


@keras.saving.register_keras_serializable(package="keras_segattn")
class GravesWindowAttention(keras.layers.Layer):
    """A mixture of K Gaussians sliding monotonically along a sequence.

    Graves, "Generating Sequences With Recurrent Neural Networks", 2013,
    eqs. 46-51 (handwriting synthesis): from the RNN state `h_t` a `Dense`
    emits `(α̂, β̂, κ̂)` [B, 3K]; then `α = exp(α̂)` (importance),
    `β = exp(β̂)` (width), `κ_t = κ_{t−1} + exp(κ̂)` (location, which can
    only move forward),
    `φ(t, u) = Σ_k α_k exp(−β_k (κ_k − u)²)` over positions `u = 1 .. U`
    (the paper's 1-based positions) and the window
    `w_t = Σ_u φ(t, u) c_u`. Padding positions (`mask` false) get φ = 0
    and are ignored even if they hold NaN; an all-masked sequence gives a
    zero window. `(α̂, β̂, κ̂)` are clamped to [-60, 60] before the
    exponentials (zero gradient beyond), so a finite state never gives
    infinite weights or an `inf · 0` NaN. Integer inputs are refused.

    Call it once per time step from a recurrent loop, feeding back `kappa`.

    Args:
        num_mixtures: int K > 0.
        **kwargs: base `Layer` arguments.

    Call arguments:
        state: [B, H], the RNN state `h_t`.
        kappa: [B, K], the previous locations `κ_{t−1}` (zeros at t = 1).
        sequence: [B, U, D], the conditioning sequence `c` (one-hot
            characters in the paper, any features here).
        mask: optional bool [B, U], true on real positions; defaults to
            the Keras mask of `sequence`.

    Returns:
        (window [B, D], kappa [B, K], phi [B, U]); `phi` float32.
    """

    def __init__(self, num_mixtures: int, **kwargs):
        super().__init__(**kwargs)
        self.num_mixtures = validation.check_int(
            num_mixtures, "num_mixtures", 1
        )
        self.params = keras.layers.Dense(
            3 * self.num_mixtures, dtype=self.dtype_policy, name="params"
        )

    def _check(self, state_shape, kappa_shape, sequence_shape):
        state_shape = validation.check_rank(state_shape, 2, "state")
        validation.check_rank(kappa_shape, 2, "kappa")
        validation.check_static_dims(
            kappa_shape, {-1: self.num_mixtures}, "kappa"
        )
        sequence_shape = validation.check_rank(sequence_shape, 3, "sequence")
        if state_shape[-1] is None:
            raise ValueError(
                "Invalid shape for argument `state`. Expected a known last "
                f"dimension. Received: state.shape={state_shape}."
            )
        return state_shape, sequence_shape

    def build(self, state_shape, kappa_shape, sequence_shape):
        state_shape, _ = self._check(state_shape, kappa_shape, sequence_shape)
        self.params.build(state_shape)

    def call(self, state, kappa, sequence, mask=None, sequence_mask=None):
        _, sequence_shape = self._check(
            state.shape, kappa.shape, sequence.shape
        )
        if mask is None:
            mask = sequence_mask
        for name, x in (("state", state), ("kappa", kappa)):
            validation.check_floating(x.dtype, name)
        validation.check_floating(sequence.dtype, "sequence")
        # Clamped before the exponentials, so that no finite state gives
        # inf weights or an inf * 0 = NaN exponent.
        params = ops.clip(
            ops.cast(self.params(state), "float32"), -_MAX_LOG, _MAX_LOG
        )
        k = self.num_mixtures
        alpha = ops.exp(params[:, :k])
        beta = ops.exp(params[:, k : 2 * k])
        kappa = ops.cast(kappa, "float32") + ops.exp(params[:, 2 * k :])
        length = ops.shape(sequence)[1]
        positions = ops.arange(1, length + 1, dtype="float32")
        phi = ops.sum(
            alpha[:, :, None]
            * ops.exp(
                -beta[:, :, None]
                * ops.square(kappa[:, :, None] - positions[None, None, :])
            ),
            axis=1,
        )  # [B, U]
        sequence = ops.cast(sequence, "float32")
        if mask is not None:  # select: 0 * NaN padding would be NaN
            mask = ops.cast(mask, "bool")
            phi = ops.where(mask, phi, 0.0)
            sequence = ops.where(mask[..., None], sequence, 0.0)
        window = ops.einsum("bu,bud->bd", phi, sequence)
        return ops.cast(window, self.compute_dtype), kappa, phi

    def compute_output_shape(self, state_shape, kappa_shape, sequence_shape):
        _, sequence_shape = self._check(
            state_shape, kappa_shape, sequence_shape
        )
        batch = tuple(state_shape)[0]
        return (
            (batch, sequence_shape[-1]),
            (batch, self.num_mixtures),
            (batch, sequence_shape[1]),
        )

    def compute_output_spec(self, state, kappa, sequence, **kwargs):
        window, kappa_shape, phi = self.compute_output_shape(
            state.shape, kappa.shape, sequence.shape
        )
        return (
            keras.KerasTensor(window, self.compute_dtype),
            keras.KerasTensor(kappa_shape, "float32"),
            keras.KerasTensor(phi, "float32"),
        )

    def compute_mask(self, *args, **kwargs):
        return None

    def get_config(self):
        config = super().get_config()
        config["num_mixtures"] = self.num_mixtures
        return config
