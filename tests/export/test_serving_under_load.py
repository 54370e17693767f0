"""Serving under load: the committed SavedModels called from several threads
with good and malformed requests mixed (issue 21).

Every good answer must equal the single-threaded one, every malformed
request must fail with `InvalidArgumentError` naming the input (shape
errors name it; a dtype mismatch is refused by TensorFlow's signature
binding, which names the input's position, `input #0`, and the expected
dtype: each signature here has exactly one input), and the process's
resident memory must stay flat once warm.
"""

import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import export_for_serving
from keras_segattn.export import export_localizer_for_serving

SAVED_MODELS = Path(__file__).resolve().parents[2] / "saved_models"
THREADS = 4
ROUNDS = 4  # one warm-up round, then three measured ones
REQUESTS_PER_MODEL = 12  # per round: 5 models x 12 x 4 rounds = 240
# Bound on RSS growth over the three rounds after the warm-up: a leak of
# one buffer per request (a 224x224x3 float32 image is 0.6 MB, ~180
# requests) would exceed it; allocator noise stays far below.
MAX_RSS_GROWTH_MB = 48


def _images(shape, seed):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.integers(0, 256, shape, dtype=np.uint8))


# name: (input name, good requests, malformed requests and the text their
# error must contain).
CASES = {
    "pets_fcn": (
        "images",
        [_images((1, 48, 40, 3), s) for s in range(3)],
        [
            (tf.zeros((1, 8, 8, 3), tf.float32), "expected to be a uint8"),
            (tf.zeros((8, 8, 3), tf.uint8), "Shape of tensor images"),
            (tf.zeros((1, 8, 8, 4), tf.uint8), "Shape of tensor images"),
        ],
    ),
    "stn_cluttered_mnist": (
        "images",
        [_images((2, 40, 40, 1), s) for s in range(3)],
        [
            (tf.zeros((1, 40, 40, 1), tf.float32), "expected to be a uint8"),
            (tf.zeros((40, 40, 1), tf.uint8), "Shape of tensor images"),
            (tf.zeros((1, 40, 40, 3), tf.uint8), "Shape of tensor images"),
            (tf.zeros((1, 20, 20, 1), tf.uint8), "Shape of tensor images"),
        ],
    ),
    "digits_yolo": (
        "images",
        [_images((1, 64, 64, 3), s) for s in range(3)],
        [
            (tf.zeros((1, 8, 8, 3), tf.float32), "expected to be a uint8"),
            (tf.zeros((8, 8, 3), tf.uint8), "Shape of tensor images"),
            (tf.zeros((1, 8, 8, 1), tf.uint8), "Shape of tensor images"),
        ],
    ),
    "caption_digits": (
        "images",
        [_images((1, 84, 84, 1), s) for s in range(3)],
        [
            (tf.zeros((1, 84, 84, 1), tf.float32), "expected to be a uint8"),
            (tf.zeros((84, 84, 1), tf.uint8), "Shape of tensor images"),
            (tf.zeros((1, 84, 84, 3), tf.uint8), "Shape of tensor images"),
        ],
    ),
    "nmt_spa_eng": (
        "text",
        [
            tf.constant(["hola.", "¿dónde está el gato?"]),
            tf.constant(["tengo hambre."]),
            tf.constant(["me gusta leer libros en la biblioteca."]),
        ],
        [
            (tf.zeros((2,), tf.int32), "expected to be a string"),
            (tf.constant([["hola."]]), "Shape of tensor text"),
            (tf.constant("hola."), "Shape of tensor text"),
        ],
    ),
}


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")  # pragma: no cover


def _numpy(outputs):
    return {key: value.numpy() for key, value in outputs.items()}


def _assert_same(actual, expected, label):
    assert actual.keys() == expected.keys(), label
    for key, value in expected.items():
        # Exact: the same graph on the same input gives the same numbers
        # whatever the other threads run.
        np.testing.assert_array_equal(actual[key], value, err_msg=label)


@pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads /proc for RSS"
)
def test_committed_models_under_concurrent_mixed_requests():
    loaded = {}  # keep the loaded objects referenced (tensorflow#34253)
    signatures, expected = {}, {}
    for name, (key, good, _) in CASES.items():
        loaded[name] = tf.saved_model.load(str(SAVED_MODELS / name / "1"))
        signatures[name] = loaded[name].signatures["serving_default"]
        # Single-threaded answers, computed before any concurrency.
        expected[name] = [
            _numpy(signatures[name](**{key: request})) for request in good
        ]

    def call(job):
        name, kind, index = job
        key, good, bad = CASES[name]
        signature = signatures[name]
        if kind == "good":
            outputs = _numpy(signature(**{key: good[index]}))
            _assert_same(outputs, expected[name][index], f"{name} #{index}")
            return "good"
        request, message = bad[index]
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            signature(**{key: request})
        assert message in str(error.value), (name, index, str(error.value))
        return "refused"

    rng = random.Random(0)
    counts = {"good": 0, "refused": 0}
    rss = []
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in range(ROUNDS):
            jobs = []
            for name, (_, good, bad) in CASES.items():
                for i in range(REQUESTS_PER_MODEL):
                    if i % 3 == 2:  # one request in three is malformed
                        jobs.append((name, "bad", rng.randrange(len(bad))))
                    else:
                        jobs.append((name, "good", rng.randrange(len(good))))
            rng.shuffle(jobs)
            for result in pool.map(call, jobs):
                counts[result] += 1
            rss.append(_rss_mb())
    assert counts == {
        "good": ROUNDS * len(CASES) * 8,
        "refused": ROUNDS * len(CASES) * 4,
    }
    print(f"RSS after each round (MB): {[round(r, 1) for r in rss]}")
    growth = rss[-1] - rss[0]
    assert growth < MAX_RSS_GROWTH_MB, f"RSS after each round (MB): {rss}"


def _tiny_segmenter():
    images = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(2, 1)(keras.layers.Rescaling(1 / 255)(images))
    return keras.Model(images, keras.layers.Softmax(dtype="float32")(x))


def _tiny_localizer():
    images = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(images)
    return keras.Model(
        images,
        {
            "classes": keras.layers.Dense(2, activation="softmax")(x),
            "boxes": keras.layers.Dense(4, activation="sigmoid")(x),
        },
    )


@pytest.mark.parametrize(
    "export, make_model",
    [
        (export_for_serving, _tiny_segmenter),
        (export_localizer_for_serving, _tiny_localizer),
    ],
)
@pytest.mark.parametrize("shape", [(1, 0, 0, 3), (2, 5, 0, 3)])
def test_empty_images_are_refused_by_name(tmp_path, export, make_model, shape):
    # An image of zero height or width reached the resize kernel before
    # ("input image must be of non-zero size", no input named).
    path = export(make_model(), tmp_path)
    reloaded = tf.saved_model.load(path)
    signature = reloaded.signatures["serving_default"]
    message = re.escape("`images` needs a height and a width of at least 1")
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        signature(images=tf.zeros(shape, tf.uint8))
    # An empty batch stays a valid request with empty answers.
    outputs = signature(images=tf.zeros((0, 7, 7, 3), tf.uint8))
    assert all(value.shape[0] == 0 for value in outputs.values())
