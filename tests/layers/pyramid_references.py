"""NumPy loop references of half-pixel bilinear resizing and sampling, shared
by the MultiScaleEncoder and Hypercolumn tests."""

import math

import numpy as np


def np_bilinear_at(image, y, x):
    """Bilinear value of `image` [H, W, C] at continuous pixel coordinates
    (y, x) (pixel centres at integers), clamped to the border."""
    height, width = image.shape[:2]
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0

    def pixel(r, c):
        return image[min(max(r, 0), height - 1), min(max(c, 0), width - 1)]

    return (
        (1 - ly) * (1 - lx) * pixel(y0, x0)
        + (1 - ly) * lx * pixel(y0, x0 + 1)
        + ly * (1 - lx) * pixel(y0 + 1, x0)
        + ly * lx * pixel(y0 + 1, x0 + 1)
    )


def np_resize_bilinear(images, size):
    """[B, H, W, C] -> [B, h, w, C], half-pixel centres (TF's resize)."""
    images = np.asarray(images, "float64")
    batch, height, width, channels = images.shape
    out_h, out_w = size
    out = np.zeros((batch, out_h, out_w, channels))
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                y = (i + 0.5) * height / out_h - 0.5
                x = (j + 0.5) * width / out_w - 0.5
                out[b, i, j] = np_bilinear_at(images[b], y, x)
    return out


def np_sample_locations(features, locations, grid_size):
    """Per-location bilinear gather: features [B, H_l, W_l, C], locations
    [B, N, 2] of (x, y) in pixels of a `grid_size` (height, width) grid."""
    features = np.asarray(features, "float64")
    batch, height, width, channels = features.shape
    grid_h, grid_w = grid_size
    out = np.zeros((batch, locations.shape[1], channels))
    for b in range(batch):
        for n, (x, y) in enumerate(locations[b]):
            out[b, n] = np_bilinear_at(
                features[b],
                float(y) * height / grid_h - 0.5,
                float(x) * width / grid_w - 0.5,
            )
    return out
