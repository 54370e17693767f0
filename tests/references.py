"""Independent NumPy loop references shared by the op, layer and model tests.

Each function spells out the published semantics with explicit loops and
never calls the code under test.
"""

import numpy as np


def np_upsample_filt(size):
    """FCN's `upsample_filt` (fcn.berkeleyvision.org surgery.py), as loops."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    filt = np.zeros((size, size), "float64")
    for i in range(size):
        for j in range(size):
            filt[i, j] = (1 - abs(i - center) / factor) * (
                1 - abs(j - center) / factor
            )
    return filt


def np_bilinear_kernel(factor, channels):
    """The Conv2DTranspose kernel [k, k, C, C]: `upsample_filt` per channel."""
    size = 2 * factor - factor % 2
    filt = np_upsample_filt(size)
    kernel = np.zeros((size, size, channels, channels), "float64")
    for c in range(channels):
        kernel[:, :, c, c] = filt
    return kernel


def np_max_pool_with_argmax(x, pool_size, padding="valid"):
    """Loop reference: window max and its row-major local index, ties first.

    "valid" visits whole windows only (floor); "same" is ceil mode
    (`torch.nn.MaxPool2d(k, k, ceil_mode=True)`): the last row and column
    of windows may hang over the bottom and right, and only the positions
    inside the input are visited, so padding never wins.
    """
    kh, kw = pool_size
    batch, height, width, channels = x.shape
    if padding == "same":
        out_h, out_w = -(-height // kh), -(-width // kw)
    else:
        out_h, out_w = height // kh, width // kw
    shape = (batch, out_h, out_w, channels)
    pooled = np.zeros(shape, x.dtype)
    indices = np.zeros(shape, "int32")
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                for c in range(channels):
                    best, best_index = None, 0
                    for di in range(kh):
                        for dj in range(kw):
                            row, col = i * kh + di, j * kw + dj
                            if row >= height or col >= width:
                                continue  # outside the input: never wins
                            v = x[b, row, col, c]
                            if best is None or v > best:  # strict: ties first
                                best, best_index = v, di * kw + dj
                    pooled[b, i, j, c] = best
                    indices[b, i, j, c] = best_index
    return pooled, indices


def np_max_unpool(x, indices, pool_size, output_size=None):
    """Loop reference: each value at its local window position, else 0.

    `output_size` (H, W) is the pooling's input size: positions at or past
    row H or column W (the padding of ceil mode) are dropped.
    """
    kh, kw = pool_size
    batch, height, width, channels = x.shape
    if output_size is None:
        output_size = (height * kh, width * kw)
    out_h, out_w = output_size
    out = np.zeros((batch, out_h, out_w, channels), x.dtype)
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                for c in range(channels):
                    index = int(indices[b, i, j, c])
                    if 0 <= index < kh * kw:
                        di, dj = divmod(index, kw)
                        row, col = i * kh + di, j * kw + dj
                        if row < out_h and col < out_w:
                            out[b, row, col, c] = x[b, i, j, c]
    return out


def np_roi_rows(boxes, num_images):
    """Batched [B, N, 4] or flat [K, 5] boxes -> flat float32 [K, 5] rows of
    (batch index, x1, y1, x2, y2), torchvision's RoI format."""
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim == 2:
        return boxes
    index = np.repeat(np.arange(num_images), boxes.shape[1])
    return np.concatenate(
        [index[:, None].astype(np.float32), boxes.reshape(-1, 4)], 1
    )


def np_conv_same(x, kernel, bias):
    """Stride-1 'same' convolution [B, H, W, C] (odd kernel), loops."""
    kh, kw, _, out = kernel.shape
    batch, height, width, _ = x.shape
    padded = np.pad(x, ((0, 0), (kh // 2,) * 2, (kw // 2,) * 2, (0, 0)))
    y = np.zeros((batch, height, width, out))
    for i in range(height):
        for j in range(width):
            patch = padded[:, i : i + kh, j : j + kw, :]
            y[:, i, j] = np.einsum("bhwc,hwco->bo", patch, kernel)
    return y + bias
