"""Train-step time of each flagship model, with and without XLA.

For FCN-8s, DeconvNet, Mask R-CNN, the ST-CNN, RNNsearch and the
show-attend-tell captioner, in small configurations on one synthetic
batch, this compiles the model with `jit_compile=False` and with
`jit_compile=True` (checked: Keras must not fall back) and times
`train_on_batch`, which runs what `fit` runs per step: the forward pass,
the loss, the gradient and the optimizer update (Adam), and returns the
loss (so every call is synchronous). It reports the first call (tracing,
plus XLA compilation) and the median of `--steps` calls after one more.

Configurations (batch, input):
- FCN-8s: `fcn8s_small`, 8 x 128 x 128 x 3, 4 classes;
- DeconvNet: `deconvnet_small`, 8 x 128 x 128 x 3, 4 classes;
- Mask R-CNN: `FasterRCNN(mask_head=True)` of `bench_distribute.py`
  (small backbone), 8 x 64 x 64 x 3 digit scenes;
- ST-CNN: `examples/stn_cluttered_mnist.py`'s affine ST-CNN,
  32 x 40 x 40 x 1;
- RNNsearch: `Seq2SeqTranslator` (vocabularies 2,000, embeddings 64,
  128 units), 32 sentences of 16 tokens;
- captioner: `ShowAttendTellCaptioner` (soft attention, filters
  (8, 16, 16), 32 units), 16 x 84 x 84 x 1, captions of 8 tokens.

Usage:
    python benchmarks/bench_train_step.py [--steps 5] [--models ...] [--json F]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _timing import set_process_defaults

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _timing import time_call  # noqa: E402
from _timing import write_json  # noqa: E402
from bench_distribute import BUILDERS as DISTRIBUTE_BUILDERS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _segmentation(preset):
    def build(rng):
        from keras_segattn.models import build_segmentation_model

        model = build_segmentation_model(preset, 4, image_shape=(128, 128, 3))
        images = rng.uniform(0, 255, (8, 128, 128, 3)).astype("float32")
        masks = rng.integers(0, 4, (8, 128, 128)).astype("int32")
        loss = keras.losses.SparseCategoricalCrossentropy()
        return model, loss, images, masks

    return build


def _mask_rcnn(rng):
    return DISTRIBUTE_BUILDERS["mask_rcnn"](8, rng)


def _st_cnn(rng):
    sys.path.insert(0, str(ROOT / "examples"))
    from stn_cluttered_mnist import build_st_cnn

    model, _ = build_st_cnn("affine")
    images = rng.uniform(0, 255, (32, 40, 40, 1)).astype("float32")
    labels = rng.integers(0, 10, (32,)).astype("int32")
    return model, "sparse_categorical_crossentropy", images, labels


def _rnnsearch(rng):
    from keras_segattn.losses import TokenCrossentropy
    from keras_segattn.models import Seq2SeqTranslator

    model = Seq2SeqTranslator(
        2000,
        2000,
        embedding_dim=64,
        encoder_units=128,
        decoder_units=128,
        attention_units=128,
        readout_units=64,
    )
    x = {
        "source": rng.integers(1, 2000, (32, 16)).astype("int32"),
        "target_in": rng.integers(1, 2000, (32, 16)).astype("int32"),
    }
    y = np.roll(x["target_in"], -1, axis=1)
    return model, TokenCrossentropy(from_logits=True), x, y


def _captioner(rng):
    from keras_segattn.models import ShowAttendTellCaptioner

    model = ShowAttendTellCaptioner(
        40,
        image_shape=(84, 84, 1),
        attention="soft",
        filters=(8, 16, 16),
        embedding_dim=16,
        decoder_units=32,
        attention_units=16,
    )
    x = {
        "images": rng.uniform(0, 255, (16, 84, 84, 1)).astype("float32"),
        "caption_in": rng.integers(4, 40, (16, 8)).astype("int32"),
    }
    y = np.roll(x["caption_in"], -1, axis=1)
    return model, None, x, y


MODELS = {
    "FCN-8s": _segmentation("fcn8s_small"),
    "DeconvNet": _segmentation("deconvnet_small"),
    "Mask R-CNN": _mask_rcnn,
    "ST-CNN": _st_cnn,
    "RNNsearch": _rnnsearch,
    "captioner": _captioner,
}


def time_train_step(name, jit_compile, steps, seed=0) -> dict:
    keras.utils.set_random_seed(seed)
    model, loss, x, y = MODELS[name](np.random.default_rng(seed))
    model.compile(optimizer="adam", loss=loss, jit_compile=jit_compile)
    if model.jit_compile is not jit_compile:
        raise RuntimeError(
            f"{name}: asked for jit_compile={jit_compile}, Keras resolved "
            f"it to {model.jit_compile}."
        )
    first, median = time_call(model.train_on_batch, (x, y), steps, warmup=1)
    return {"first s": first, "ms": median}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed (5)")
    parser.add_argument(
        "--models", nargs="+", default=list(MODELS), choices=list(MODELS)
    )
    parser.add_argument(
        "--json", help="also write the rows and settings to this JSON file"
    )
    args = parser.parse_args(argv)
    rows = []
    print(
        f"{'model':<11} {'no XLA ms':>10} {'XLA ms':>8} {'XLA/no':>7} "
        f"{'1st no XLA s':>12} {'1st XLA s':>10}"
    )
    for name in args.models:
        graph = time_train_step(name, False, args.steps)
        xla = time_train_step(name, True, args.steps)
        row = {"model": name, "no_xla": graph, "xla": xla}
        rows.append(row)
        print(
            f"{name:<11} {graph['ms']:10.1f} {xla['ms']:8.1f} "
            f"{xla['ms'] / graph['ms']:6.2f}x {graph['first s']:12.1f} "
            f"{xla['first s']:10.1f}",
            flush=True,
        )
    if args.json:
        write_json(args.json, {"steps": args.steps, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
