"""DRAW: a recurrent VAE that reads and writes with attention (Gregor et
al., 2015).

`DRAW` is a functional model from binarised images to the canvas after
each of T steps (logits) and the per-step KL terms; its `compute_loss`
(called by Keras's `train_step` inside `fit`) is the negative variational
bound in nats: `L^x + L^z` with `L^x = −log D(x | c_T)` (Bernoulli, summed
over pixels) and `L^z = Σ_t KL(Q(z_t | h_enc_t) || N(0, I))` (eq. 11).
`generate` draws images from the prior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.layers._recurrent import scan as _scan
from keras_segattn.layers.draw import DrawRead
from keras_segattn.layers.draw import DrawWrite
from keras_segattn.models._config import ConstructorConfigMixin


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

    Call arguments: images [B, H, W, 1] in [0, 1]; noise [T, B, Z]
    standard normal (drawn by the caller so that the layer is a
    deterministic function of its inputs). Returns (canvas logits
    [B, T, H, W], KL per step [B, T]).
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


@keras.saving.register_keras_serializable(package="keras_segattn")
class DRAW(ConstructorConfigMixin, keras.Model):
    """DRAW with attention on binary images; train with `fit(x)`.

    Args:
        image_shape: (H, W, 1).
        steps: T glimpses.
        read_size, write_size: N of the read and write grids.
        units: LSTM size of encoder and decoder.
        latent_dim: size of each z_t.
        seed: for the reparameterisation noise.

    Inputs: images [B, H, W, 1] with values in {0, 1} (binarised).
    Outputs: `{"canvases": logits [B, T, H, W], "kl": [B, T]}`.
    `compute_loss` returns the negative bound `L^x + L^z` in nats per
    image (mean over the batch); `reconstruction` and `kl` metrics show
    the two terms.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (28, 28, 1),
        steps: int = 16,
        read_size: int = 2,
        write_size: int = 5,
        units: int = 256,
        latent_dim: int = 100,
        seed=None,
        dtype=None,
        **kwargs,
    ):
        image_shape = tuple(int(d) for d in image_shape)
        if len(image_shape) != 3 or image_shape[-1] != 1:
            raise ValueError(
                "Invalid value for argument `image_shape`. Expected "
                f"(H, W, 1). Received: image_shape={image_shape!r}."
            )
        core = DrawCore(
            image_shape[:2],
            steps,
            read_size,
            write_size,
            units,
            latent_dim,
            dtype=dtype,
            name="draw_core",
        )
        images = keras.Input(image_shape, name="images")
        noise = _StandardNormal(steps, latent_dim, seed=seed, name="noise")(
            images
        )
        canvases, kl = core(images, noise)
        super().__init__(
            inputs=images,
            outputs={
                "canvases": keras.layers.Identity(name="canvases")(canvases),
                "kl": keras.layers.Identity(name="kl")(kl),
            },
            **kwargs,
        )
        self.image_shape = image_shape
        self.steps, self.read_size, self.write_size = (
            steps,
            read_size,
            write_size,
        )
        self.units, self.latent_dim, self.seed = units, latent_dim, seed
        self.core = core
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    def _constructor_config(self):
        return {
            "image_shape": self.image_shape,
            "steps": self.steps,
            "read_size": self.read_size,
            "write_size": self.write_size,
            "units": self.units,
            "latent_dim": self.latent_dim,
            "seed": self.seed,
        }

    def negative_bound(self, images, outputs):
        """Per-image `L^x + L^z` (nats) and its two terms."""
        x = ops.reshape(
            ops.cast(images, "float32"), (-1, *self.image_shape[:2])
        )
        logits = outputs["canvases"][:, -1]
        reconstruction = ops.sum(
            keras.losses.binary_crossentropy(
                x[..., None], logits[..., None], from_logits=True
            ),
            axis=(1, 2),
        )
        kl = ops.sum(outputs["kl"], axis=-1)
        return reconstruction + kl, reconstruction, kl

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        total, reconstruction, kl = self.negative_bound(x, y_pred)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return ops.mean(total)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()

    def generate(self, count: int, seed=None):
        """Canvas probabilities [count, T, H, W] sampled from the prior."""
        noise = keras.random.normal(
            (self.steps, count, self.latent_dim), seed=seed
        )
        return ops.sigmoid(self.core.generate(noise))


@keras.saving.register_keras_serializable(package="keras_segattn")
class _StandardNormal(keras.layers.Layer):
    """ε ~ N(0, I) [T, B, Z] for a batch, from a seed generator."""

    def __init__(self, steps, latent_dim, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.steps, self.latent_dim, self.seed = steps, latent_dim, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images):
        batch = ops.shape(images)[0]
        return keras.random.normal(
            (self.steps, batch, self.latent_dim), seed=self.seed_generator
        )

    def compute_output_shape(self, images_shape):
        return (self.steps, images_shape[0], self.latent_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            steps=self.steps, latent_dim=self.latent_dim, seed=self.seed
        )
        return config
