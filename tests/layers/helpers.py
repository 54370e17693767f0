"""Inputs shared by the RoI layer tests."""

import numpy as np


def roi_layer_inputs(seed=0):
    """Features [2, 8, 10, 3] and boxes [2, 3, 4] for a 1/8-scale map:
    inside, partly outside, padding (-1) and zero-size boxes."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(2, 8, 10, 3)).astype(np.float32)
    boxes = np.array(
        [
            [
                [2.0, 3.0, 50.0, 40.0],
                [-10.0, 5.0, 30.0, 70.0],
                [-1, -1, -1, -1],
            ],
            [[0.0, 0.0, 80.0, 64.0], [33.0, 21.0, 37.5, 29.0], [5, 5, 5, 5]],
        ],
        np.float32,
    )
    return {"features": features, "boxes": boxes}
