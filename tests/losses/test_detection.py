"""Tests for `keras_segattn.losses.detection` against NumPy loops of
torchvision's formulas (torchvision/models/detection/rpn.py
`RegionProposalNetwork.compute_loss`, roi_heads.py `fastrcnn_loss` and
`maskrcnn_loss`)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.losses import fast_rcnn_loss
from keras_segattn.losses import mask_rcnn_loss
from keras_segattn.losses import rpn_loss
from keras_segattn.losses import smooth_l1

F32 = np.float32
BETA = 1.0 / 9.0


def np_smooth_l1(x, beta=BETA):
    """`F.smooth_l1_loss(input, target, beta, reduction="none")` of
    `x = input - target`, one element at a time."""
    x = np.asarray(x, "float64")
    out = np.zeros(x.shape)
    for index, value in np.ndenumerate(x):
        n = abs(value)
        out[index] = 0.5 * n**2 / beta if n < beta else n - 0.5 * beta
    return out


def np_bce_with_logits(logit, target):
    """`F.binary_cross_entropy_with_logits` of one element."""
    logit, target = float(logit), float(target)
    return max(logit, 0.0) - logit * target + math.log1p(math.exp(-abs(logit)))


def np_cross_entropy(logits, label):
    logits = np.asarray(logits, "float64")
    top = logits.max()
    return top + math.log(np.sum(np.exp(logits - top))) - logits[label]


def np_rpn_loss(objectness, deltas, indices, labels, targets):
    """The sampled anchors of all images concatenated, as torchvision:
    mean BCE over them; positives' smooth L1 summed / their count."""
    bce, box, sampled = 0.0, 0.0, 0
    for b in range(len(labels)):
        for s in range(labels.shape[1]):
            if labels[b, s] < 0:
                continue
            sampled += 1
            i = indices[b, s]
            bce += np_bce_with_logits(objectness[b, i], labels[b, s] == 1)
            if labels[b, s] == 1:
                box += np_smooth_l1(deltas[b, i] - targets[b, s]).sum()
    sampled = max(sampled, 1)
    return bce / sampled, box / sampled


def np_fast_rcnn_loss(class_logits, box_deltas, labels, targets):
    ce, box, sampled = 0.0, 0.0, 0
    for b in range(len(labels)):
        for r in range(labels.shape[1]):
            label = labels[b, r]
            if label < 0:
                continue
            sampled += 1
            ce += np_cross_entropy(class_logits[b, r], label)
            if label > 0:
                predicted = box_deltas[b, r, 4 * label : 4 * label + 4]
                box += np_smooth_l1(predicted - targets[b, r]).sum()
    sampled = max(sampled, 1)
    return ce / sampled, box / sampled


def np_mask_rcnn_loss(mask_logits, labels, mask_targets):
    total, pixels = 0.0, 0
    for b in range(len(labels)):
        for p in range(labels.shape[1]):
            label = labels[b, p]
            if label <= 0:
                continue
            for index, target in np.ndenumerate(mask_targets[b, p]):
                total += np_bce_with_logits(
                    mask_logits[b, p][index][label], target
                )
                pixels += 1
    return total / max(pixels, 1)


def _rpn_inputs(seed=0):
    rng = np.random.default_rng(seed)
    num_anchors, num_samples = 12, 6
    objectness = rng.normal(0, 2, (2, num_anchors)).astype(F32)
    deltas = rng.normal(0, 0.3, (2, num_anchors, 4)).astype(F32)
    indices = np.stack(
        [rng.permutation(num_anchors)[:num_samples] for _ in range(2)]
    ).astype("int32")
    labels = np.array([[1, 1, 0, 0, 0, -1], [1, 0, 0, -1, -1, -1]], "int32")
    indices[labels < 0] = 0
    targets = rng.normal(0, 0.3, (2, num_samples, 4)).astype(F32)
    return objectness, deltas, indices, labels, targets


def _fast_rcnn_inputs(seed=0, num_classes=3):
    rng = np.random.default_rng(seed)
    rois = 5
    logits = rng.normal(0, 2, (2, rois, num_classes + 1)).astype(F32)
    deltas = rng.normal(0, 0.3, (2, rois, 4 * (num_classes + 1))).astype(F32)
    labels = np.array([[2, 3, 0, 0, -1], [1, 0, -1, -1, -1]], "int32")
    targets = rng.normal(0, 0.3, (2, rois, 4)).astype(F32)
    return logits, deltas, labels, targets


def _mask_inputs(seed=0, num_classes=2):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (2, 3, 4, 4, num_classes + 1)).astype(F32)
    labels = np.array([[2, 1, 0], [1, -1, -1]], "int32")
    targets = (rng.uniform(size=(2, 3, 4, 4)) > 0.5).astype(F32)
    targets[0, 1, 0, 0] = 0.3  # soft RoIAlign values are allowed
    return logits, labels, targets


def test_smooth_l1_matches_torchvision():
    x = np.array([-2.0, -0.2, -0.1, -1e-3, 0.0, 0.05, BETA, 0.5, 3.0], F32)
    np.testing.assert_allclose(
        np.asarray(smooth_l1(x)), np_smooth_l1(x), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(
        np.asarray(smooth_l1(x, beta=1.0)), np_smooth_l1(x, 1.0), rtol=1e-6
    )
    # By hand: 0.5 * 0.05^2 * 9 and 3 - 1 / 18.
    np.testing.assert_allclose(
        np.asarray(smooth_l1(np.array([0.05, 3.0], F32))),
        [0.01125, 3.0 - 1.0 / 18.0],
        rtol=1e-6,
    )
    assert tuple(smooth_l1(np.zeros((2, 3, 4), F32)).shape) == (2, 3, 4)


@pytest.mark.parametrize("seed", [0, 1])
def test_rpn_loss_matches_numpy(seed):
    inputs = _rpn_inputs(seed)
    losses = rpn_loss(*inputs)
    for got, want in zip(losses, np_rpn_loss(*inputs), strict=True):
        assert got.dtype == "float32" and tuple(got.shape) == ()
        np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)


def test_rpn_loss_hand_computed():
    objectness = np.zeros((1, 3), F32)
    deltas = np.zeros((1, 3, 4), F32)
    indices = np.array([[2, 0, 0]], "int32")
    labels = np.array([[1, 0, -1]], "int32")
    targets = np.array([[[0.1, 0, 0, 0.5], [9, 9, 9, 9], [9, 9, 9, 9]]], F32)
    objectness_loss, box_loss = rpn_loss(
        objectness, deltas, indices, labels, targets
    )
    # BCE(0, .) = log 2 on both sampled anchors; the positive's smooth L1:
    # 0.5 * 0.01 * 9 + (0.5 - 1 / 18), over 2 sampled anchors.
    np.testing.assert_allclose(float(objectness_loss), math.log(2), rtol=1e-6)
    np.testing.assert_allclose(
        float(box_loss), (0.045 + 0.5 - 1 / 18) / 2, rtol=1e-5
    )


def test_fast_rcnn_loss_matches_numpy():
    inputs = _fast_rcnn_inputs()
    losses = fast_rcnn_loss(*inputs)
    for got, want in zip(losses, np_fast_rcnn_loss(*inputs), strict=True):
        assert got.dtype == "float32" and tuple(got.shape) == ()
        np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)


def test_fast_rcnn_loss_hand_computed():
    logits = np.zeros((1, 3, 3), F32)  # K = 2
    deltas = np.zeros((1, 3, 12), F32)
    deltas[0, 0, 8:12] = [0.0, 0.0, 1.0, 0.0]  # class 2's deltas of RoI 0
    deltas[0, 0, 4:8] = 100.0  # another class's: not in the loss
    labels = np.array([[2, 0, -1]], "int32")
    targets = np.array([[[0, 0, 0.5, 0], [5, 5, 5, 5], [5, 5, 5, 5]]], F32)
    classifier, box = fast_rcnn_loss(logits, deltas, labels, targets)
    # Uniform logits: log 3 per sampled RoI; smooth L1 of 0.5: 0.5 - 1/18,
    # over 2 sampled RoIs.
    np.testing.assert_allclose(float(classifier), math.log(3), rtol=1e-6)
    np.testing.assert_allclose(float(box), (0.5 - 1 / 18) / 2, rtol=1e-5)


def test_mask_rcnn_loss_matches_numpy():
    inputs = _mask_inputs()
    loss = mask_rcnn_loss(*inputs)
    assert loss.dtype == "float32" and tuple(loss.shape) == ()
    np.testing.assert_allclose(
        float(loss), np_mask_rcnn_loss(*inputs), rtol=1e-5, atol=1e-6
    )


def test_mask_rcnn_loss_hand_computed():
    logits = np.zeros((1, 2, 1, 2, 3), F32)
    logits[0, 0, 0, :, 1] = [2.0, -2.0]  # class 1's channel of RoI 0
    logits[0, 0, 0, :, 2] = 50.0  # another class's: not in the loss
    logits[0, 1] = 50.0  # a background RoI: not in the loss
    labels = np.array([[1, 0]], "int32")
    targets = np.array([[[[1.0, 1.0]], [[0.0, 0.0]]]], F32)
    # Mean over RoI 0's two pixels: softplus(-2) and softplus(2).
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(2.0))) / 2
    np.testing.assert_allclose(
        float(mask_rcnn_loss(logits, labels, targets)), expected, rtol=1e-6
    )


def test_no_samples_give_zero_losses():
    objectness, deltas, indices, _, targets = _rpn_inputs()
    empty = -np.ones((2, 6), "int32")
    for loss in rpn_loss(objectness, deltas, indices, empty, targets):
        assert float(loss) == 0.0
    logits, box_deltas, _, box_targets = _fast_rcnn_inputs()
    for loss in fast_rcnn_loss(
        logits, box_deltas, -np.ones((2, 5), "int32"), box_targets
    ):
        assert float(loss) == 0.0
    mask_logits, _, mask_targets = _mask_inputs()
    # Background and empty slots only: no positive mask pixel.
    labels = np.array([[0, -1, 0], [-1, -1, 0]], "int32")
    assert float(mask_rcnn_loss(mask_logits, labels, mask_targets)) == 0.0


def test_float16_inputs_give_float32_losses():
    objectness, deltas, indices, labels, targets = _rpn_inputs()
    half = rpn_loss(
        objectness.astype("float16"),
        deltas.astype("float16"),
        indices,
        labels,
        targets,
    )
    full = rpn_loss(
        objectness.astype("float16").astype(F32),
        deltas.astype("float16").astype(F32),
        indices,
        labels,
        targets,
    )
    for h, f in zip(half, full, strict=True):
        assert h.dtype == "float32"
        np.testing.assert_allclose(float(h), float(f), rtol=1e-6)
    logits, box_deltas, box_labels, box_targets = _fast_rcnn_inputs()
    for loss in fast_rcnn_loss(
        logits.astype("float16"),
        box_deltas.astype("float16"),
        box_labels,
        box_targets,
    ):
        assert loss.dtype == "float32"
    mask_logits, mask_labels, mask_targets = _mask_inputs()
    loss = mask_rcnn_loss(
        mask_logits.astype("float16"), mask_labels, mask_targets
    )
    assert loss.dtype == "float32"


def _finite_nonzero_gradients(fn, *tensors):
    tensors = [tf.constant(t) for t in tensors]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        losses = fn(*tensors)
        total = tf.add_n(
            list(losses) if isinstance(losses, tuple) else [losses]
        )
    for g in tape.gradient(total, tensors):
        assert g is not None
        g = np.asarray(tf.convert_to_tensor(g))
        assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_gradients_are_finite():
    objectness, deltas, indices, labels, targets = _rpn_inputs()
    _finite_nonzero_gradients(
        lambda o, d: rpn_loss(o, d, indices, labels, targets),
        objectness,
        deltas,
    )
    logits, box_deltas, box_labels, box_targets = _fast_rcnn_inputs()
    _finite_nonzero_gradients(
        lambda c, d: fast_rcnn_loss(c, d, box_labels, box_targets),
        logits,
        box_deltas,
    )
    mask_logits, mask_labels, mask_targets = _mask_inputs()
    _finite_nonzero_gradients(
        lambda m: mask_rcnn_loss(m, mask_labels, mask_targets), mask_logits
    )


def test_compiled_with_xla_and_an_unknown_batch():
    inputs = _fast_rcnn_inputs()
    spec = [
        tf.TensorSpec((None, *np.shape(x)[1:]), tf.as_dtype(x.dtype))
        for x in inputs
    ]
    compiled = tf.function(
        fast_rcnn_loss, jit_compile=True, input_signature=spec
    )
    for got, want in zip(
        compiled(*inputs), np_fast_rcnn_loss(*inputs), strict=True
    ):
        np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)
    inputs = _rpn_inputs()
    spec = [
        tf.TensorSpec((None, *np.shape(x)[1:]), tf.as_dtype(x.dtype))
        for x in inputs
    ]
    compiled = tf.function(rpn_loss, jit_compile=True, input_signature=spec)
    for got, want in zip(compiled(*inputs), np_rpn_loss(*inputs), strict=True):
        np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)
    inputs = _mask_inputs()
    spec = [
        tf.TensorSpec((None, *np.shape(x)[1:]), tf.as_dtype(x.dtype))
        for x in inputs
    ]
    compiled = tf.function(
        mask_rcnn_loss, jit_compile=True, input_signature=spec
    )
    np.testing.assert_allclose(
        float(compiled(*inputs)), np_mask_rcnn_loss(*inputs), rtol=1e-5
    )


def test_large_logits_stay_exact():
    # Saturated logits: the losses use the stable log-sigmoid / log-softmax
    # forms, as torchvision's `*_with_logits` functions.
    objectness, deltas, indices, labels, targets = _rpn_inputs(2)
    objectness = objectness * 30.0
    for got, want in zip(
        rpn_loss(objectness, deltas, indices, labels, targets),
        np_rpn_loss(objectness, deltas, indices, labels, targets),
        strict=True,
    ):
        np.testing.assert_allclose(float(got), want, rtol=1e-5)
    logits, box_deltas, box_labels, box_targets = _fast_rcnn_inputs(2)
    logits = logits * 30.0
    np.testing.assert_allclose(
        float(fast_rcnn_loss(logits, box_deltas, box_labels, box_targets)[0]),
        np_fast_rcnn_loss(logits, box_deltas, box_labels, box_targets)[0],
        rtol=1e-5,
    )
    mask_logits, mask_labels, mask_targets = _mask_inputs(2)
    mask_logits = mask_logits * 30.0
    np.testing.assert_allclose(
        float(mask_rcnn_loss(mask_logits, mask_labels, mask_targets)),
        np_mask_rcnn_loss(mask_logits, mask_labels, mask_targets),
        rtol=1e-5,
    )
