"""`draw_filterbank`: the Gaussian attention filterbanks of DRAW."""

from __future__ import annotations

from keras import ops

from keras_segattn import validation

# Bounds of the normalised centres (g̃X, g̃Y) and of the three log
# parameters: exp(±60) and the squared distances they divide stay inside
# float32, and a centre 1e4 image sizes away already gives all-zero rows.
_MAX_CENTRE = 1.0e4
_MAX_LOG = 60.0


def draw_filterbank(params, image_size, glimpse_size: int, eps: float = 1e-8):
    """N×N grid of Gaussian filters of DRAW (Gregor et al., 2015, §3.2).

    From the five attention parameters `(g̃X, g̃Y, log σ², log δ̃, log γ)`
    (a linear map of the decoder state in the paper, eq. 21), for an image
    of width A and height B:

    - grid centre `gX = (A + 1)/2 · (g̃X + 1)`, `gY = (B + 1)/2 · (g̃Y + 1)`
      (eqs. 22-23), stride `δ = (max(A, B) − 1)/(N − 1) · δ̃` (eq. 24);
    - filter centres `μX_i = gX + (i − N/2 − 0.5) δ` for `i = 1 .. N`
      (eq. 19; the paper's 1-based i, so the grid is symmetric about gX),
      likewise `μY_j`;
    - `F_X[i, a] = exp(−(a − μX_i)² / (2σ²)) / Z_X` over pixel columns
      `a = 1 .. A` (1-based like `i`: then `g̃X = 0` is the image centre
      `(A + 1)/2`; 0-based pixels, as in some ports, shift the grid by
      one), each row normalised to sum to 1 (`Z_X`, plus `eps` against an
      all-underflow row), likewise `F_Y[j, b]` (eqs. 25-26). Column `a`
      of `F_X` multiplies image column `a − 1`.

    The parameters are clamped first, g̃X and g̃Y to [-1e4, 1e4] and the
    three logs to [-60, 60] (zero gradient beyond), so every finite input
    gives finite filterbanks: without it a log σ² below about -87 makes
    the variance 0 and a filter centred on a pixel 0 / 0 = NaN. NaN
    parameters give NaN rows of that batch element only. Gradients are
    finite for moderate parameters (|g̃| <= 10, logs in [-10, 10], the
    range checked by tests/property/test_attention.py); far outside it the
    derivative of an underflowed Gaussian can be 0 * inf = NaN.

    Args:
        params: [B, 5] float, (g̃X, g̃Y, log σ², log δ̃, log γ).
        image_size: int or (height, width) = (B, A) of the image.
        glimpse_size: int N >= 2, filters per axis.
        eps: added to the row sums.

    Returns:
        (F_X [batch, N, A], F_Y [batch, N, B], gamma [batch]); float32
        for float16 params (the exponentials need the range).

    Raises:
        ValueError: if `params` is not [batch, 5], `glimpse_size` < 2 or
            `image_size` is not positive.
        TypeError: if `params` is not floating.
    """
    params = ops.convert_to_tensor(params)
    validation.check_floating(params.dtype, "params")
    validation.check_rank(params, 2, "params")
    validation.check_static_dims(params, {-1: 5}, "params")
    glimpse = validation.check_int(glimpse_size, "glimpse_size", 2)
    height, width = validation.standardize_size(image_size, "image_size")
    # Clamped so that no exponential over- or underflows float32 (a zero
    # variance would give 0 / 0 at a filter centre).
    limits = ops.convert_to_tensor(
        [_MAX_CENTRE, _MAX_CENTRE, _MAX_LOG, _MAX_LOG, _MAX_LOG], "float32"
    )
    params = ops.clip(ops.cast(params, "float32"), -limits, limits)
    gx_tilde, gy_tilde, log_var, log_delta, log_gamma = (
        params[:, i] for i in range(5)
    )
    gx = (width + 1) / 2.0 * (gx_tilde + 1.0)
    gy = (height + 1) / 2.0 * (gy_tilde + 1.0)
    delta = (max(width, height) - 1) / (glimpse - 1) * ops.exp(log_delta)
    variance = ops.exp(log_var)
    offsets = ops.arange(1, glimpse + 1, dtype="float32") - glimpse / 2.0 - 0.5

    def bank(centre, size):
        mu = centre[:, None] + offsets[None, :] * delta[:, None]  # [b, N]
        pixels = ops.arange(1, size + 1, dtype="float32")
        weights = ops.exp(
            -ops.square(pixels[None, None, :] - mu[:, :, None])
            / (2.0 * variance[:, None, None])
        )
        return weights / (ops.sum(weights, axis=-1, keepdims=True) + eps)

    return bank(gx, width), bank(gy, height), ops.exp(log_gamma)
