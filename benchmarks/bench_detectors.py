"""YOLO v1 beside Faster R-CNN / Mask R-CNN on the digit scenes.

For each committed detector (`saved_models/digits_yolo`,
`saved_models/digits_mask_rcnn`, `saved_models/digits_mask_rcnn_fpn`) this
prints, in one run on the same 128 x 128 test-pool-like scenes:

- box AP50 and AP from the model's `metrics.json` (pycocotools on the same
  1,000 test-pool scenes, computed through the exported `serving_default`
  by the example's `evaluate`);
- the parameter count;
- inference ms per image at batch 1 and batch 32, through the serving
  graph (the SavedModel's `serving_default`, uint8 in, no XLA) and through
  the Keras model compiled with XLA (`tf.function(jit_compile=True)` of
  `model(images)`): the trained `model.keras` when it is there, else the
  same architecture built from the example's constructor arguments (the
  cost does not depend on the weights: every shape is static).

Median of `--repeats` calls after one warm-up (tracing and compilation
excluded); each call returns the detections, what a client pays for.

Usage:
    python benchmarks/bench_detectors.py --repeats 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from _timing import set_process_defaults

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_segattn.data import make_synthetic_digit_scenes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

DETECTORS = {
    "YOLO v1": "digits_yolo",
    "Mask R-CNN": "digits_mask_rcnn",
    "Mask R-CNN + FPN": "digits_mask_rcnn_fpn",
}


def _keras_model(directory: Path, name: str):
    """The trained Keras model, or the example's architecture untrained."""
    path = directory / "model.keras"
    if path.is_file():
        return keras.saving.load_model(path), "trained"
    if name == "digits_yolo":
        import yolo_digits

        from keras_segattn.models import YOLO

        return YOLO(10, **yolo_digits.model_kwargs(128, smoke=False)), "built"
    import instance_segmentation

    from keras_segattn.models import FasterRCNN

    kwargs = instance_segmentation.model_kwargs(
        128, smoke=False, fpn=name.endswith("fpn")
    )
    return FasterRCNN(10, **kwargs), "built"


def _median_ms(fn, images, repeats: int) -> float:
    """Median ms per image of `fn(images)` (outputs fetched)."""
    tf.nest.map_structure(np.asarray, fn(images))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(np.asarray, fn(images))
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / len(images)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed calls per row (10)"
    )
    parser.add_argument(
        "--saved-models",
        type=Path,
        default=ROOT / "saved_models",
        help="folder holding the detector folders (saved_models/)",
    )
    args = parser.parse_args(argv)
    scenes = make_synthetic_digit_scenes(32, seed=0, image_size=128)
    images = scenes["images"].astype("uint8")
    rows = []
    for label, name in DETECTORS.items():
        directory = args.saved_models / name
        if not (directory / "1").is_dir():
            print(f"{label}: {directory / '1'} missing, skipped")
            continue
        metrics = json.loads((directory / "metrics.json").read_text())
        reloaded = tf.saved_model.load(str(directory / "1"))  # keep a ref
        serve = reloaded.signatures["serving_default"]

        def served(x, serve=serve):
            return serve(images=tf.constant(x))

        model, source = _keras_model(directory, name)
        xla = tf.function(
            lambda x, model=model: model(x, training=False), jit_compile=True
        )

        def compiled(x, xla=xla):
            return xla(tf.constant(x, tf.float32))

        timings = {}
        for batch in (1, 32):
            timings[f"serving b{batch}"] = _median_ms(
                served, images[:batch], args.repeats
            )
            timings[f"XLA b{batch}"] = _median_ms(
                compiled, images[:batch], args.repeats
            )
        rows.append(
            (
                label,
                metrics["box"]["AP50"],
                metrics["box"]["AP"],
                model.count_params(),
                source,
                timings,
            )
        )
    keys = ["serving b1", "serving b32", "XLA b1", "XLA b32"]
    print(
        "| detector | box AP50 | box AP | parameters | "
        + " | ".join(f"{k} ms/img" for k in keys)
        + " |"
    )
    print("|---" * (4 + len(keys)) + "|")
    for label, ap50, ap, params, source, timings in rows:
        cells = " | ".join(f"{timings[k]:.1f}" for k in keys)
        note = "" if source == "trained" else " (XLA: same architecture)"
        print(
            f"| {label}{note} | {ap50:.3f} | {ap:.3f} | {params:,} | {cells} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
