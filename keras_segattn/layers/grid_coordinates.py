"""`GridCoordinates`: CoordConv position channels for flattened feature
grids."""

from __future__ import annotations

import keras
from keras import ops

from keras_segattn import validation


@keras.saving.register_keras_serializable(package="keras_segattn")
class GridCoordinates(keras.layers.Layer):
    """Appends the normalised (y, x) of each location to its annotation.

    CoordConv (Liu et al., "An intriguing failing of convolutional neural
    networks and the CoordConv solution", NeurIPS 2018) on the flattened
    grid: `[B, H·W, D]` becomes `[B, H·W, D + 2]`, row-major as
    `Reshape` flattens it, with `y, x = 2 (i + 0.5) / n − 1` in (−1, 1)
    (cell centres). Convolutions are translation equivariant, so without
    these channels the context `Σ_i α_i a_i` says what was seen but not
    where; captions that depend on positions ("left of", reading order)
    need the where.

    Args:
        grid_shape: (H, W) of the flattened grid.
    """

    def __init__(self, grid_shape, **kwargs):
        super().__init__(**kwargs)
        grid_shape = tuple(int(d) for d in grid_shape)
        if len(grid_shape) != 2 or min(grid_shape) < 1:
            raise ValueError(
                "Invalid value for argument `grid_shape`. Expected (H, W) "
                f"with H, W >= 1. Received: grid_shape={grid_shape!r}."
            )
        self.grid_shape = grid_shape

    def _check(self, annotations_shape):
        height, width = self.grid_shape
        shape = validation.check_rank(annotations_shape, 3, "annotations")
        return validation.check_static_dims(
            shape, {1: height * width}, "annotations"
        )

    def call(self, annotations):
        self._check(annotations.shape)
        height, width = self.grid_shape
        rows = (2.0 * (ops.arange(height, dtype="float32") + 0.5)) / height
        cols = (2.0 * (ops.arange(width, dtype="float32") + 0.5)) / width
        y = ops.repeat(rows - 1.0, width)  # [H·W], row-major
        x = ops.tile(cols - 1.0, [height])
        grid = ops.cast(ops.stack([y, x], axis=-1), annotations.dtype)
        batch = ops.shape(annotations)[0]
        grid = ops.broadcast_to(grid[None], (batch, height * width, 2))
        return ops.concatenate([annotations, grid], axis=-1)

    def compute_output_shape(self, annotations_shape):
        *leading, depth = self._check(annotations_shape)
        return (*leading, None if depth is None else depth + 2)

    def get_config(self):
        return {**super().get_config(), "grid_shape": self.grid_shape}
