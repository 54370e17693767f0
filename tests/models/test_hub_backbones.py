"""keras-hub backbones (`pyramid_outputs`) in FCN and FasterRCNN, offline:
a randomly initialised keras-hub ResNet built from its config."""

import re

import keras
import numpy as np
import pytest

from keras_segattn.models import FCN
from keras_segattn.models import DeconvNet
from keras_segattn.models import FasterRCNN
from keras_segattn.models import get_backbone

keras_hub = pytest.importorskip(
    "keras_hub",
    reason="keras-hub is optional (the `keras-hub` extra; `make install` "
    "installs it with --no-deps beside tensorflow-cpu)",
)

SIZE = 64
NUM_CLASSES = 3


def tiny_resnet():
    """ResNet (v1, basic blocks) with one block per stack; keras-hub
    requires 64 filters in the first stack."""
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=(None, None, 3),
    )


def images(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch, SIZE, SIZE, 3)).astype("float32")


def test_get_backbone_gives_the_pyramid_levels():
    hub = tiny_resnet()
    model, skips = get_backbone(hub, (SIZE, SIZE, 3))
    assert skips == ("P3", "P4")
    outputs = model(images())
    strides = [SIZE // o.shape[1] for o in outputs]
    assert strides == [4, 8, 16, 32]
    # P5 is the backbone's own output on the preprocessed images
    # ("torch": to [0, 1], then ImageNet mean and std).
    x = images()
    mean = np.array([0.485, 0.456, 0.406], "float32")
    std = np.array([0.229, 0.224, 0.225], "float32")
    expected = hub((x / 255.0 - mean) / std)
    np.testing.assert_allclose(outputs[-1], expected, atol=1e-4)
    with pytest.raises(ValueError, match="preprocessing"):
        get_backbone(hub, backbone_kwargs={"preprocessing": "imagenet"})


def test_fcn_forward_and_jit_fit_step(tmp_path):
    hub = tiny_resnet()
    model = FCN(NUM_CLASSES, backbone=hub, image_shape=(SIZE, SIZE, 3))
    probs = model(images())
    assert probs.shape == (2, SIZE, SIZE, NUM_CLASSES)
    np.testing.assert_allclose(np.sum(probs, -1), 1.0, atol=1e-5)
    # The keras-hub weights are trained with the decoder.
    hub_weights = {id(w) for w in hub.trainable_weights}
    assert hub_weights <= {id(w) for w in model.trainable_weights}
    model.compile(
        optimizer="sgd",
        loss="sparse_categorical_crossentropy",
        jit_compile=True,
    )
    assert model.jit_compile is True
    labels = np.random.default_rng(1).integers(0, NUM_CLASSES, (2, SIZE, SIZE))
    # FCN's score layers start at zero, so the first step moves them (the
    # backbone's gradients are zero until they are not).
    scores = [w for w in model.trainable_weights if "score" in w.path]
    before = [np.array(w) for w in scores]
    history = model.fit(images(), labels, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(
        not np.array_equal(b, w) for b, w in zip(before, scores, strict=True)
    )
    # The .keras round trip keeps the keras-hub backbone (safe mode).
    model.save(tmp_path / "fcn.keras")
    restored = keras.saving.load_model(tmp_path / "fcn.keras")
    np.testing.assert_array_equal(restored(images()), model(images()))


def test_deconvnet_decoder_forward_and_jit_fit_step():
    hub = tiny_resnet()
    # 60 px: padded to 64 for the backbone, cropped back.
    model = DeconvNet(
        NUM_CLASSES,
        image_shape=(60, 60, 3),
        filters=(4, 4, 8, 8),
        convs_per_stage=1,
        backbone=hub,
    )
    x = images()[:, :60, :60]
    probs = model(x)
    assert probs.shape == (2, 60, 60, NUM_CLASSES)
    # Each decoder stage concatenates its pyramid level at its size.
    for block, size in (("4", 4), ("3", 8), ("2", 16)):
        layer = model.get_layer(f"decoder_block{block}_concat")
        assert tuple(layer.output.shape[1:3]) == (size, size)
    model.compile(
        optimizer="sgd",
        loss="sparse_categorical_crossentropy",
        jit_compile=True,
    )
    assert model.jit_compile is True
    labels = np.random.default_rng(2).integers(0, NUM_CLASSES, (2, 60, 60))
    before = [np.array(w) for w in hub.trainable_weights]
    history = model.fit(x, labels, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # No zero-initialised score here: the backbone moves in the first step.
    assert any(
        not np.array_equal(b, w)
        for b, w in zip(before, hub.trainable_weights, strict=True)
    )
    with pytest.raises(TypeError, match="keras_hub.models.Backbone"):
        DeconvNet(NUM_CLASSES, backbone="vgg_small")
    with pytest.raises(ValueError, match="decoder widths at P2-P5"):
        DeconvNet(NUM_CLASSES, filters=(4, 8), backbone=hub)


def test_faster_rcnn_fpn_forward_and_jit_fit_step():
    model = FasterRCNN(
        NUM_CLASSES,
        backbone=tiny_resnet(),
        fpn=True,
        fpn_filters=8,
        image_shape=(SIZE, SIZE, 3),
        anchor_sizes=None,
        rpn_pre_nms_top_n_train=64,
        rpn_pre_nms_top_n_test=48,
        rpn_post_nms_top_n_train=32,
        rpn_post_nms_top_n_test=16,
        rpn_batch_size_per_image=32,
        box_batch_size_per_image=16,
        box_head_units=16,
        max_detections=4,
        seed=1,
    )
    boxes = np.array(
        [[[4, 4, 30, 30], [-1, -1, -1, -1]], [[20, 10, 60, 50], [2, 2, 9, 9]]],
        "float32",
    )
    targets = {"boxes": boxes, "labels": np.array([[1, -1], [2, 0]], "int32")}
    model.compile(optimizer="sgd", jit_compile=True)
    assert model.jit_compile is True
    history = model.fit(images(), targets, epochs=1, verbose=0)
    assert all(np.isfinite(v[0]) for v in history.history.values())
    # The FPN reads P2-P5 of the keras-hub backbone (strides 4 to 32).
    assert [tuple(o.shape) for o in model.backbone.outputs] == [
        (None, 16, 16, 64),
        (None, 8, 8, 8),
        (None, 4, 4, 8),
        (None, 2, 2, 8),
    ]
    assert model.anchor_sizes == tuple((16.0 * 2**i,) for i in range(5))


def test_backbone_without_pyramid_outputs_is_refused():
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(4, 3, strides=32)(inputs)
    plain = keras_hub.models.Backbone(inputs=inputs, outputs=outputs)
    with pytest.raises(
        ValueError, match=re.escape("with pyramid_outputs=None")
    ):
        FCN(NUM_CLASSES, backbone=plain, image_shape=(SIZE, SIZE, 3))
