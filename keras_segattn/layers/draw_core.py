"""`DrawCore`: the T-step recurrence of DRAW (Gregor et al., 2015)."""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers._recurrent import scan as _scan
from keras_segattn.layers.draw import DrawRead
from keras_segattn.layers.draw import DrawWrite


def initial_read_params(image_size, read_size: int) -> list[float]:
    """Bias of the read attention: (g̃X, g̃Y, log σ², log δ̃, log γ) for a
    glimpse that starts centred, its grid spanning 60 % of the image and
    each filter blurring over its cell (σ = δ / 2).

    With zero parameters (the paper gives no initialisation) an N×N read
    has stride `(max(A, B) − 1)/(N − 1)`: for the paper's 2×2 MNIST read
    the two filters sit on the image's first and last pixels with σ = 1,
    read only the blank border of MNIST digits, and get no gradient to
    move, so the encoder transmits nothing and the model collapses to the
    mean image (about 206 nats).
    """
    height, width = image_size
    delta_tilde = 0.6 if read_size > 1 else 1.0
    delta = (max(height, width) - 1) / (read_size - 1) * delta_tilde
    sigma = delta / 2.0
    return [0.0, 0.0, 2.0 * math.log(sigma), math.log(delta_tilde), 0.0]


@keras.saving.register_keras_serializable(package="keras_segattn")
class DrawCore(keras.layers.Layer):
    """The T-step DRAW recurrence (eqs. 3-8) with attentive read and write.

    For t = 1..T: `x̂ = x − σ(c_{t−1})`, `r = read(x, x̂, h_dec)` (an
    N_read² glimpse of both), `h_enc = LSTM_enc([r, h_dec])`, `z = μ + σ ε`
    with `(μ, log σ)` linear in `h_enc`, `h_dec = LSTM_dec(z)`,
    `c_t = c_{t−1} + write(h_dec)` (an N_write² patch). The read and write
    parameters are linear maps of the previous / new decoder state.
    Gregor et al., "DRAW: A Recurrent Neural Network For Image
    Generation", ICML 2015; the read and write windows are
    `keras_segattn.layers.DrawRead` and `DrawWrite`, and
    `keras_segattn.models.DRAW` wraps this layer into a trainable model.

    Args:
        image_size: int or (H, W), the image and canvas size.
        steps: int >= 1, T glimpses.
        read_size: int N >= 2 of the read grid.
        write_size: int N >= 2 of the write patch.
        units: int >= 1, LSTM size of the encoder and the decoder.
        latent_dim: int >= 1, size of each z_t.
        **kwargs: base `Layer` arguments.

    Call arguments: images [B, H, W, 1] in [0, 1]; noise [T, B, Z]
    standard normal (drawn by the caller so that the layer is a
    deterministic function of its inputs). Returns (canvas logits
    [B, T, H, W], KL per step [B, T]), both float32 whatever the dtype
    policy.
    """

    def __init__(
        self,
        image_size,
        steps: int = 16,
        read_size: int = 2,
        write_size: int = 5,
        units: int = 256,
        latent_dim: int = 100,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = validation.standardize_size(image_size, "image_size")
        self.steps = validation.check_int(steps, "steps", 1)
        self.read_size = validation.check_int(read_size, "read_size", 2)
        self.write_size = validation.check_int(write_size, "write_size", 2)
        self.units = validation.check_int(units, "units", 1)
        self.latent_dim = validation.check_int(latent_dim, "latent_dim", 1)
        policy = self.dtype_policy
        self.encoder = keras.layers.LSTMCell(units, dtype=policy, name="enc")
        self.decoder = keras.layers.LSTMCell(units, dtype=policy, name="dec")
        self.read = DrawRead(read_size, dtype=policy, name="read")
        self.write = DrawWrite(self.image_size, dtype=policy, name="write")
        self.read_params = keras.layers.Dense(
            5,
            bias_initializer=keras.initializers.Constant(
                initial_read_params(self.image_size, read_size)
            ),
            dtype=policy,
            name="read_att",
        )
        self.write_params = keras.layers.Dense(
            5, dtype=policy, name="write_att"
        )
        self.write_patch = keras.layers.Dense(
            write_size * write_size, dtype=policy, name="write_patch"
        )
        self.posterior = keras.layers.Dense(
            2 * latent_dim, dtype=policy, name="posterior"
        )

    def build(self, images_shape, noise_shape=None):
        units = self.units
        self.encoder.build((None, 2 * self.read_size**2 + units))
        self.decoder.build((None, self.latent_dim))
        for dense in (self.read_params, self.write_params, self.write_patch):
            dense.build((None, units))
        self.posterior.build((None, units))

    def _write(self, h_dec):
        patch = ops.reshape(
            self.write_patch(h_dec), (-1, self.write_size, self.write_size, 1)
        )
        return self.write(patch, self.write_params(h_dec))[..., 0]

    def step(self, carry, x, noise):
        """One glimpse; carry = (canvas, h_enc, c_enc, h_dec, c_dec)."""
        canvas, h_enc, c_enc, h_dec, c_dec = carry
        error = x - ops.sigmoid(canvas)[..., None]
        glimpse = self.read(x, self.read_params(h_dec), error_images=error)
        glimpse = ops.reshape(glimpse, (-1, 2 * self.read_size**2))
        h_enc, (h_enc, c_enc) = self.encoder(
            ops.concatenate([glimpse, h_dec], -1), [h_enc, c_enc]
        )
        stats = ops.cast(self.posterior(h_enc), "float32")
        mu, log_sigma = stats[:, : self.latent_dim], stats[:, self.latent_dim :]
        z = mu + ops.exp(log_sigma) * noise
        kl = 0.5 * ops.sum(
            ops.square(mu) + ops.exp(2 * log_sigma) - 2 * log_sigma - 1, -1
        )
        h_dec, (h_dec, c_dec) = self.decoder(
            ops.cast(z, self.compute_dtype), [h_dec, c_dec]
        )
        canvas = canvas + ops.cast(self._write(h_dec), canvas.dtype)
        return (canvas, h_enc, c_enc, h_dec, c_dec), kl

    def _initial(self, batch):
        zeros = ops.zeros((batch, self.units), self.compute_dtype)
        return (
            ops.zeros((batch, *self.image_size), "float32"),
            zeros,
            zeros,
            zeros,
            zeros,
        )

    def call(self, images, noise):
        images = ops.cast(images, self.compute_dtype)
        batch = ops.shape(images)[0]
        initial = self._initial(batch)

        def body(carry, step_noise):
            state, kl = self.step(carry[0], images, step_noise)
            outputs = (state, kl)
            return outputs, outputs

        (canvases, *_), kls = _scan(
            body,
            (initial, ops.zeros((batch,), "float32")),
            ops.cast(noise, "float32"),
        )
        return ops.transpose(canvases, (1, 0, 2, 3)), ops.transpose(kls)

    def generate(self, noise):
        """Canvas logits [B, T, H, W] drawn from the prior with `noise`."""
        batch = ops.shape(noise)[1]
        carry = self._initial(batch)
        canvases = []
        for t in range(self.steps):  # T is small and static
            canvas, h_enc, c_enc, h_dec, c_dec = carry
            h_dec, (h_dec, c_dec) = self.decoder(
                ops.cast(noise[t], self.compute_dtype), [h_dec, c_dec]
            )
            canvas = canvas + ops.cast(self._write(h_dec), "float32")
            carry = (canvas, h_enc, c_enc, h_dec, c_dec)
            canvases.append(canvas)
        return ops.stack(canvases, axis=1)

    def compute_output_shape(self, images_shape, noise_shape=None):
        batch = tuple(images_shape)[0]
        return (batch, self.steps, *self.image_size), (batch, self.steps)

    def compute_output_spec(self, images, noise):
        canvases, kls = self.compute_output_shape(images.shape)
        return (
            keras.KerasTensor(canvases, "float32"),
            keras.KerasTensor(kls, "float32"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            image_size=self.image_size,
            steps=self.steps,
            read_size=self.read_size,
            write_size=self.write_size,
            units=self.units,
            latent_dim=self.latent_dim,
        )
        return config
