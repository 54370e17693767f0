"""Tests for `keras_segattn.layers.MaskHead`."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.layers import MaskHead
from tests.testing import run_layer_checks

F32 = np.float32
SHAPE = (2, 3, 4, 4, 3)  # [B, R, m, m, C]


def _features(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(F32)


def np_conv_same(x, kernel, bias):
    """Stride-1 'same' convolution of one map [H, W, C] (odd kernel)."""
    kh, kw, _, out = kernel.shape
    height, width, _ = x.shape
    padded = np.pad(x, ((kh // 2,) * 2, (kw // 2,) * 2, (0, 0)))
    y = np.zeros((height, width, out))
    for i in range(height):
        for j in range(width):
            patch = padded[i : i + kh, j : j + kw, :]
            y[i, j] = np.einsum("hwc,hwco->o", patch, kernel)
    return y + bias


def np_deconv_2x2_stride_2(x, kernel, bias):
    """`ConvTranspose2d(kernel 2, stride 2)` of one map [H, W, C]: each input
    pixel paints a 2x2 block, out[2i + a, 2j + b] += x[i, j] @ k[a, b].
    Keras's transposed kernel is laid out (kh, kw, out, in)."""
    height, width, _ = x.shape
    y = np.zeros((2 * height, 2 * width, kernel.shape[2]))
    for i in range(height):
        for j in range(width):
            for a in range(2):
                for b in range(2):
                    y[2 * i + a, 2 * j + b] += kernel[a, b] @ x[i, j]
    return y + bias


def np_mask_head(layer, features):
    """torchvision `MaskRCNNHeads` + `MaskRCNNPredictor`, RoI by RoI."""

    def weights(sublayer):
        return [np.asarray(w, "float64") for w in sublayer.weights]

    batch, rois = features.shape[:2]
    out = None
    for b in range(batch):
        for r in range(rois):
            x = np.asarray(features[b, r], "float64")
            for conv in layer.convs:
                x = np.maximum(np_conv_same(x, *weights(conv)), 0.0)
            x = np.maximum(np_deconv_2x2_stride_2(x, *weights(layer.deconv)), 0)
            x = np_conv_same(x, *weights(layer.logits))  # 1x1
            if out is None:
                out = np.zeros((batch, rois, *x.shape))
            out[b, r] = x
    return out


def _bad_init(kwargs, match):
    return (
        {"num_classes": 2, "filters": 4, "num_convs": 1, **kwargs},
        ValueError,
        re.escape(match),
    )


def test_layer_checks(tmp_path):
    run_layer_checks(
        MaskHead,
        {"num_classes": 2, "filters": 4, "num_convs": 2},
        _features(),
        tmp_path=tmp_path,
        expected_output_shape=(2, 3, 8, 8, 3),
        # two 3x3 convs, the transposed conv and the 1x1 logits: kernel, bias
        expected_num_trainable_weights=8,
        reference_fn=np_mask_head,
        atol=1e-5,
        bad_init_kwargs=[
            _bad_init({"num_classes": 0}, "Received: num_classes=0"),
            _bad_init({"filters": 0}, "Received: filters=0"),
            _bad_init({"num_convs": -1}, "Received: num_convs=-1"),
            _bad_init({"num_convs": 1.5}, "Received: num_convs=1.5"),
        ],
        bad_call_inputs=[
            (
                (2, 4, 4, 3),
                ValueError,
                re.escape(
                    "Invalid rank for argument `features`. Expected rank 5. "
                    "Received: features.shape=(2, 4, 4, 3) (rank 4)."
                ),
            ),
            (
                (2, 3, None, 4, 3),
                ValueError,
                re.escape("Received: features.shape=(2, 3, None, 4, 3)."),
            ),
        ],
    )


def test_no_convs_variant(tmp_path):
    # Straight to the upsampling: transposed conv + 1x1 logits only.
    layer = run_layer_checks(
        MaskHead,
        {"num_classes": 1, "filters": 3, "num_convs": 0},
        _features((2, 2, 3, 4, 2), seed=1),
        tmp_path=tmp_path,
        expected_output_shape=(2, 2, 6, 8, 2),
        expected_num_trainable_weights=4,
        reference_fn=np_mask_head,
        run_saved_model=False,  # served in test_layer_checks
    )
    assert layer.convs == []
    assert tuple(layer.deconv.kernel.shape) == (2, 2, 3, 2)  # (kh, kw, out, in)


def test_random_weights_match_reference():
    features = _features((2, 2, 3, 3, 2), seed=2)
    layer = MaskHead(num_classes=2, filters=3, num_convs=1)
    layer.build(features.shape)
    rng = np.random.default_rng(3)
    # Non-zero biases; an asymmetric transposed kernel pins its layout.
    layer.set_weights(
        [rng.normal(0, 0.5, w.shape).astype(F32) for w in layer.get_weights()]
    )
    out = layer(features)
    assert tuple(out.shape) == (2, 2, 6, 6, 3)
    np.testing.assert_allclose(
        np.asarray(out), np_mask_head(layer, features), atol=1e-4, rtol=1e-4
    )


def test_symbolic_unknown_batch_and_mixed_precision():
    out = MaskHead(3, filters=8, num_convs=1)(keras.Input((10, 7, 7, 8)))
    assert tuple(out.shape) == (None, 10, 14, 14, 4)
    layer = MaskHead(2, filters=4, num_convs=1, dtype="mixed_float16")
    out = layer(_features())
    assert out.dtype == "float16"
    assert all(w.dtype == "float32" for w in layer.weights)


def test_bad_shapes_in_build_and_compute_output_shape():
    match = "Received: features.shape=(2, 4, 4, 3)"
    with pytest.raises(ValueError, match=re.escape(match)):
        MaskHead(2, filters=4).build((2, 4, 4, 3))
    with pytest.raises(ValueError, match=re.escape(match)):
        MaskHead(2, filters=4).compute_output_shape((2, 4, 4, 3))
    with pytest.raises(ValueError, match=re.escape(match)):
        MaskHead(2, filters=4)(np.zeros((2, 4, 4, 3), F32))
