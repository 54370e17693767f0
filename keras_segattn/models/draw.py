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

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn.layers.draw_core import DrawCore
from keras_segattn.losses.distribution import replica_share_of_mean
from keras_segattn.models._config import ConstructorConfigMixin
from keras_segattn.ops import _random


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
    image (mean over the batch; under `tf.distribute` each replica's
    share of the global batch mean); `reconstruction` and `kl` metrics
    show the two terms.
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
        # Per-example terms: the trackers' sums and counts add up over the
        # replicas to the global batch mean.
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        # This replica's share of the global batch mean (the mean itself on
        # one device): Keras sums the replicas' gradients.
        return replica_share_of_mean(total)

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
        return _random.normal(
            (self.steps, batch, self.latent_dim), self.seed_generator
        )

    def compute_output_shape(self, images_shape):
        return (self.steps, images_shape[0], self.latent_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            steps=self.steps, latent_dim=self.latent_dim, seed=self.seed
        )
        return config
