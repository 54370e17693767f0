"""Fits each model family on one device and under `MirroredStrategy` on two
logical CPUs, and prints what `tests/distribute/test_mirrored.py` checks.

Run as `python -m tests.distribute._worker FAMILY [FAMILY ...]` (the
tests start it in a fresh process: logical devices must be configured
before TensorFlow initialises its devices, which an earlier test in the
same process has already done). It prints one line `RESULT <json>` per
family.

Each comparison builds a model from one seed, copies its weights into a
twin built under `MirroredStrategy(["/cpu:0", "/cpu:1"])`, and fits both
for `STEPS` SGD steps on the same global batches. Where a model draws
noise, the draw is replaced by a deterministic function of each example
(the same example gets the same noise on either replica and on one
device): DRAW's ε, the hard captioner's locations and the detector's
sampling scores. Dropout is 0, and batch norm is synchronised
(`synchronized=True`) so that each replica normalises with the global
batch statistics, as one device does: neither is what this checks.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _CPU,
    [tf.config.LogicalDeviceConfiguration()] * 2,
)

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

DEVICES = ["/cpu:0", "/cpu:1"]
BATCH = 4  # global batch: two examples per replica
STEPS = 2
LEARNING_RATE = 0.1
_STRATEGY = []


def strategy():
    """One MirroredStrategy per process: a second one reuses collective
    instance keys, and its all-reduces abort with "Shape mismatch in the
    collective instance 100" against the first one's."""
    if not _STRATEGY:
        _STRATEGY.append(tf.distribute.MirroredStrategy(DEVICES))
    return _STRATEGY[0]


# === Comparison ===


def _synchronize_batch_norm(model):
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def _fit(model, x, y, sample_weight, jit_compile):
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss=getattr(model, "_test_loss", None),
        jit_compile=jit_compile,
    )
    history = model.fit(
        x,
        y,
        sample_weight=sample_weight,
        batch_size=BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    return {k: float(v[-1]) for k, v in history.history.items()}


def compare(build, x, y=None, sample_weight=None, state=(), jit_compile=False):
    """Fits `build()` on one device and under MirroredStrategy from the
    same initial weights; returns the update ratio and differences.

    `state` names extra model attributes (variables) to compare.
    """
    keras.utils.set_random_seed(0)
    single = build()
    _synchronize_batch_norm(single)
    initial = single.get_weights()
    single_logs = _fit(single, x, y, sample_weight, jit_compile=False)

    with strategy().scope():
        keras.utils.set_random_seed(0)
        mirrored = build()
        _synchronize_batch_norm(mirrored)
        mirrored.set_weights(initial)
        mirrored_logs = _fit(mirrored, x, y, sample_weight, jit_compile)

    start = dict(zip(map(id, single.weights), initial, strict=True))
    deltas_single, deltas_mirrored = [], []
    for a, b in zip(
        single.trainable_weights, mirrored.trainable_weights, strict=True
    ):
        before = start[id(a)]
        deltas_single.append((a.numpy() - before).ravel())
        deltas_mirrored.append((b.numpy() - before).ravel())
    ds = np.concatenate(deltas_single).astype("float64")
    dm = np.concatenate(deltas_mirrored).astype("float64")
    norm_s, norm_m = np.linalg.norm(ds), np.linalg.norm(dm)
    result = {
        "ratio": norm_m / norm_s,
        "cosine": float(ds @ dm / (norm_s * norm_m)),
        "relative_error": float(np.linalg.norm(dm - ds) / norm_s),
        "update_norm": float(norm_s),
        "single_logs": single_logs,
        "mirrored_logs": mirrored_logs,
        "jit_compile": mirrored.jit_compile,
        "state": {
            name: [
                float(ops.convert_to_numpy(getattr(single, name))),
                float(ops.convert_to_numpy(getattr(mirrored, name))),
            ]
            for name in state
        },
    }
    return result


# === Families ===


def helpers():
    """`keras_segattn.losses.distribution` in the replicas of `strategy.run`:
    replica 0 holds values [1, 2] with weights [1, 0], replica 1 values
    [3, 4] with weights [1, 1]; the global weighted mean is 8 / 3."""
    from keras_segattn.losses import distribution

    data = {0: ([1.0, 2.0], [1.0, 0.0]), 1: ([3.0, 4.0], [1.0, 1.0])}

    def inputs(context):
        values, weights = data[context.replica_id_in_sync_group]
        return tf.constant(values), tf.constant(weights)

    def replica_fn(values, weights):
        with tf.GradientTape() as tape:
            tape.watch(values)
            share = distribution.replica_share_of_mean(values, weights)
        return {
            "share": share,
            "share_gradient": tape.gradient(share, values),
            "global_mean": distribution.global_mean(values, weights),
            "count": distribution.sum_over_replicas(ops.sum(weights)),
            "scaled": distribution.scale_loss_for_distribution(
                tf.constant(3.0)
            ),
            "unscaled": distribution.unscale_loss_for_distribution(
                tf.constant(3.0)
            ),
            "replicas": tf.constant(distribution.num_replicas_in_sync()),
        }

    distributed = strategy().experimental_distribute_values_from_function(
        inputs
    )

    @tf.function
    def step(values, weights):
        return strategy().run(replica_fn, args=(values, weights))

    outputs = step(*distributed)
    result = {
        name: [
            np.asarray(v).tolist()
            for v in strategy().experimental_local_results(value)
        ]
        for name, value in outputs.items()
    }
    with strategy().scope():  # cross-replica context: the value itself
        result["cross_replica_sum"] = float(
            distribution.sum_over_replicas(tf.constant(5.0))
        )
    return result


def _fcn_case(variant):
    from keras_segattn.models import FCN

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (BATCH * STEPS, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 3, (BATCH * STEPS, 16, 16)).astype("int32")

    def build():
        model = FCN(
            3,
            variant=variant,
            dropout=0.0,
            backbone_kwargs={"filters": (4, 4, 8, 8, 8), "convs_per_stage": 1},
        )
        model._test_loss = keras.losses.SparseCategoricalCrossentropy()
        return model

    return build, x, y


def fcn():
    """The control: a Keras loss, scaled by Keras."""
    return compare(*_fcn_case("8s"))


def fcn_class_weights():
    """`segmentation_loss(class_weights=...)` (the package's loss) with
    void pixels only in the first replica's examples: it must divide by
    the global non-void count, not each replica's (Keras's
    `ignore_class` does the latter)."""
    from keras_segattn.losses import segmentation_loss

    build_plain, x, y = _fcn_case("8s")
    y = y.copy()
    for step in range(STEPS):  # the first replica's half of each batch
        y[step * BATCH : step * BATCH + BATCH // 2, :12] = 3

    def build():
        model = build_plain()
        model._test_loss = segmentation_loss(
            void_label=3, class_weights=[0.5, 1.0, 3.0]
        )
        return model

    return compare(build, x, y)


def fcn_jit():
    """`jit_compile=True` inside MirroredStrategy: whether Keras keeps it,
    and whether the first step compiles (then it must match one device)
    or raises (the error is reported for the test to check)."""
    build, x, y = _fcn_case("32s")
    with strategy().scope():
        model = build()
        model.compile(
            optimizer=keras.optimizers.SGD(LEARNING_RATE),
            loss=model._test_loss,
            jit_compile=True,
        )
    result = {"jit_compile_after_compile": model.jit_compile}
    try:
        model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0)
    except Exception as error:
        return {
            **result,
            "compiled": False,
            "error_type": type(error).__name__,
            "error": str(error)[-2000:],
        }
    return {**result, "compiled": True, **compare(build, x, y, True)}


def _deterministic_noise(x, shape_tail, scale=1.0):
    """A fixed function of each example: [B, *shape_tail] in (-scale,
    scale), the same for an example on any replica."""
    x = ops.reshape(ops.cast(x, "float32"), (ops.shape(x)[0], -1))
    pattern = ops.sin(ops.arange(x.shape[-1], dtype="float32") * 0.37)
    per_example = ops.sum(x * pattern, -1)
    size = int(np.prod(shape_tail))
    phases = ops.arange(size, dtype="float32") * 1.7
    values = ops.sin(per_example[:, None] * 0.05 + phases[None, :])
    return scale * ops.reshape(values, (-1, *shape_tail))


def draw():
    from keras_segattn.models import draw as draw_module

    def noise(self, images):  # ε [T, B, Z], fixed per example
        values = _deterministic_noise(images, (self.steps, self.latent_dim))
        return ops.transpose(values, (1, 0, 2))

    draw_module._StandardNormal.call = noise
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(BATCH * STEPS, 12, 12, 1)) > 0.6).astype("float32")

    def build():
        return draw_module.DRAW(
            image_shape=(12, 12, 1),
            steps=3,
            units=8,
            latent_dim=4,
            write_size=3,
            seed=0,
        )

    return compare(build, x)


def _caption_data():
    """Captions of unequal lengths, so the replicas hold different numbers
    of tokens (the first replica's two examples are shorter)."""
    rng = np.random.default_rng(0)
    count, steps = BATCH * STEPS, 5
    x = {
        "images": rng.uniform(0, 255, (count, 16, 16, 1)).astype("float32"),
        "caption_in": rng.integers(4, 12, (count, steps)).astype("int32"),
    }
    x["caption_in"][:, 0] = 2
    y = np.roll(x["caption_in"], -1, axis=1)
    y[:, -1] = 3
    for start in range(0, count, BATCH):
        y[start, 2:] = 0
        y[start + 1, 3:] = 0
    return x, y


def _captioner(attention, **options):
    from keras_segattn.models import ShowAttendTellCaptioner

    return ShowAttendTellCaptioner(
        12,
        attention=attention,
        image_shape=(16, 16, 1),
        filters=(4, 6),
        embedding_dim=6,
        decoder_units=8,
        attention_units=5,
        dropout=0.0,
        **options,
    )


def captioner_soft():
    x, y = _caption_data()
    return compare(lambda: _captioner("soft"), x, y)


def captioner_hard(**options):
    from keras_segattn.layers.show_attend_tell_decoder import (
        ShowAttendTellDecoder,
    )

    call = getattr(
        ShowAttendTellDecoder, "_unfixed_call", ShowAttendTellDecoder.call
    )
    ShowAttendTellDecoder._unfixed_call = call

    # `training` must be a named parameter: Keras passes it only to calls
    # whose signature names it (with **kwargs alone the layer never
    # sampled, and REINFORCE went untested).
    def fixed_call(
        self,
        caption_embeddings,
        annotations,
        initial_state,
        noise=None,
        use_expected=None,
        training=None,
    ):
        kwargs = {
            "noise": noise,
            "use_expected": use_expected,
            "training": training,
        }
        if training:
            # Locations from the examples' own embeddings, in [0, 1).
            steps = ops.shape(caption_embeddings)[1]
            score = ops.mean(ops.cast(caption_embeddings, "float32"), -1)
            kwargs["noise"] = ops.stop_gradient(
                0.5
                + 0.49
                * ops.sin(
                    37.0 * score + ops.arange(steps, dtype="float32") * 1.3
                )
            )
            kwargs["use_expected"] = False
        return call(
            self, caption_embeddings, annotations, initial_state, **kwargs
        )

    ShowAttendTellDecoder.call = fixed_call
    x, y = _caption_data()
    return compare(
        lambda: _captioner("hard", **options),
        x,
        y,
        state=("reward_average", "reward_updates", "reward_baseline"),
    )


def captioner_hard_self_critical():
    """The greedy pass's rewards as baselines, per example."""
    return captioner_hard(baseline="self_critical")


def captioner_hard_learned():
    """The value head's squared error as a share of the global mean."""
    return captioner_hard(baseline="learned", reward="token_accuracy")


def translator(loss=None):
    """Token-weighted cross-entropy with `TokenCrossentropy` (or `loss()`,
    e.g. Keras's `reduction="mean_with_sample_weight"`)."""
    from keras_segattn.losses import TokenCrossentropy
    from keras_segattn.models import Seq2SeqTranslator

    if loss is None:

        def loss():
            return TokenCrossentropy(from_logits=True)

    rng = np.random.default_rng(0)
    count = BATCH * STEPS
    source = rng.integers(1, 11, (count, 6)).astype("int32")
    target = rng.integers(4, 9, (count, 5)).astype("int32")
    target[:, 0] = 2
    target_out = np.roll(target, -1, axis=1)
    weights = np.ones(target_out.shape, "float32")
    for start in range(0, count, BATCH):  # the first replica's are shorter
        source[start, 3:] = 0
        weights[start, 2:] = 0.0
        weights[start + 1, 3:] = 0.0

    def build():
        model = Seq2SeqTranslator(
            11,
            9,
            embedding_dim=6,
            encoder_units=5,
            decoder_units=7,
            attention_units=4,
            readout_units=3,
            dropout=0.0,
        )
        model._test_loss = loss()
        return model

    return compare(
        build,
        {"source": source, "target_in": target},
        target_out,
        sample_weight=weights,
    )


def _detection_scenes():
    """Fixed sampling scores (see `_FixedRandom`) and the scenes the
    detector families fit: (images, targets with masks)."""
    import importlib

    # The module: `keras_segattn.ops.sample_balanced` is also the function.
    sampling = importlib.import_module("keras_segattn.ops.sample_balanced")

    class _FixedRandom:
        """`ops._random` for `sample_balanced`: scores that depend on the
        candidate's index only, so each image samples the same subset on
        any replica (still a subset: the counts stay fixed)."""

        @staticmethod
        def uniform(shape, seed=None, dtype=None):
            scores = 0.5 + 0.49 * ops.sin(
                ops.arange(shape[1], dtype="float32") * 2.3
            )
            return ops.broadcast_to(scores[None, :], shape)

    sampling._random = _FixedRandom
    size, max_gt = 32, 3
    rng = np.random.default_rng(0)
    count = BATCH * STEPS
    images = np.zeros((count, size, size, 3), "float32")
    boxes = np.full((count, max_gt, 4), -1.0, "float32")
    classes = np.full((count, max_gt), -1, "int32")
    masks = np.zeros((count, max_gt, size, size), "float32")
    for b in range(count):
        corners = [(2, 2), (17, 17)] if b % 4 == 0 else [(3, 16)]
        for i, (y0, x0) in enumerate(corners):
            side = int(rng.integers(9, 13))
            label = int(rng.integers(0, 3))
            images[b, y0 : y0 + side, x0 : x0 + side, label] = 255.0
            boxes[b, i] = [y0, x0, y0 + side, x0 + side]
            classes[b, i] = label
            masks[b, i, y0 : y0 + side, x0 : x0 + side] = 1.0
    return images, {"boxes": boxes, "classes": classes, "masks": masks}


def _plain_backbone(size):
    backbone_input = keras.Input((size, size, 3), name="images")
    h = keras.layers.Rescaling(1 / 255)(backbone_input)
    for i, width in enumerate((8, 8, 16)):
        h = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D(2, name=f"pool{i}")(h)
    return keras.Model(backbone_input, h, name="plain_backbone")


def faster_rcnn():
    from keras_segattn.models.faster_rcnn import FasterRCNN

    images, targets = _detection_scenes()
    size = images.shape[1]

    def build():
        return FasterRCNN(
            3,
            backbone=_plain_backbone(size),
            image_shape=(size, size, 3),
            anchor_sizes=(8.0, 16.0),
            rpn_pre_nms_top_n_train=64,
            rpn_pre_nms_top_n_test=48,
            rpn_post_nms_top_n_train=32,
            rpn_post_nms_top_n_test=16,
            rpn_batch_size_per_image=32,
            box_batch_size_per_image=16,
            box_head_units=16,
            max_detections=6,
            mask_head=True,
            mask_roi_output_size=7,
            mask_head_filters=4,
            mask_head_convs=1,
            seed=1,
        )

    return compare(build, images, targets)


def fast_rcnn():
    """Fast R-CNN on given proposals: the ground truth and jittered copies
    (the RoI sampler draws from them with the fixed scores)."""
    from keras_segattn.models.fast_rcnn import FastRCNN

    images, targets = _detection_scenes()
    size = images.shape[1]
    boxes = targets["boxes"]
    valid = boxes[..., :1] >= 0
    proposals = np.concatenate(
        [boxes, np.where(valid, boxes + [1, -1, 2, 1], -1.0)], axis=1
    ).astype("float32")
    x = {"images": images, "proposals": proposals}
    y = {"boxes": boxes, "classes": targets["classes"]}

    def build():
        return FastRCNN(
            3,
            backbone=_plain_backbone(size),
            image_shape=(size, size, 3),
            num_proposals=proposals.shape[1],
            box_batch_size_per_image=8,
            box_head_units=16,
            max_detections=6,
            seed=1,
        )

    return compare(build, x, y)


FAMILIES = {
    name: globals()[name]
    for name in (
        "helpers",
        "fcn_class_weights",
        "fcn",
        "fcn_jit",
        "draw",
        "captioner_soft",
        "captioner_hard",
        "captioner_hard_self_critical",
        "captioner_hard_learned",
        "translator",
        "faster_rcnn",
        "fast_rcnn",
    )
}


def main(names):
    for name in names:
        start = time.perf_counter()
        try:
            result = FAMILIES[name]()
        except Exception:
            result = {"crashed": traceback.format_exc()[-4000:]}
        result["seconds"] = round(time.perf_counter() - start, 1)
        print("RESULT", json.dumps({"family": name, **result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
