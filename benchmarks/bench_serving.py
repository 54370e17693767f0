"""Serving latency of every committed SavedModel through `serving_default`.

For each `saved_models/<name>/<version>/saved_model.pb` (the newest
version), this loads the SavedModel with `tf.saved_model.load` and calls
its `serving_default` signature as TF Serving runs it: the exported graph,
without XLA (nothing here asks for `jit_compile`). Requests are random
uint8 images at the model's input size (the signature's static size, else
the size the model was trained at: `image_size` in its `metrics.json`,
else 128 x 128) or, for a text signature, Spanish sentences; a "boxes"
input (an instance refiner's) gets random (ymin, xmin, ymax, xmax) boxes
inside those images, every slot a real box. It reports
the first call (loading excluded) and the median latency of `--repeats`
calls after one warm-up, per request and per example, at batch 1 and 32;
each call reads every output back.

Usage:
    python benchmarks/bench_serving.py [--repeats 10] [--json F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _timing import set_process_defaults

set_process_defaults()  # before TensorFlow is imported

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import time_call  # noqa: E402
from _timing import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIZE = 128
SENTENCES = (
    "hola, ¿cómo estás?",
    "el gato duerme en la casa.",
    "mañana vamos a la playa con mis amigos.",
    "no sé dónde está la estación de tren.",
)


def saved_models(root: Path) -> list[tuple[str, Path]]:
    """(name, newest numbered version folder) of each committed model."""
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        versions = [
            p
            for p in folder.iterdir()
            if p.name.isdigit() and (p / "saved_model.pb").is_file()
        ]
        if versions:
            found.append(
                (folder.name, max(versions, key=lambda p: int(p.name)))
            )
    return found


def _trained_size(folder: Path) -> tuple[int, int]:
    metrics = folder / "metrics.json"
    size = None
    if metrics.is_file():
        try:
            size = json.loads(metrics.read_text()).get("image_size")
        except json.JSONDecodeError as error:
            raise ValueError(
                f"Corrupt metrics file {metrics}: {error}"
            ) from None
    if isinstance(size, int):
        return size, size
    if isinstance(size, list) and len(size) == 2:
        return int(size[0]), int(size[1])
    return DEFAULT_SIZE, DEFAULT_SIZE


def _boxes(shape, height: int, width: int, rng):
    """Random (ymin, xmin, ymax, xmax) boxes [*shape[:-1], 4] inside a
    height x width image, sides 10-40 % of the image's."""
    size = np.array([height, width], "float32")
    sides = rng.uniform(0.1, 0.4, (*shape[:-1], 2)) * size
    corner = rng.uniform(0.0, 1.0, sides.shape) * (size - sides)
    return np.concatenate([corner, corner + sides], -1).astype("float32")


def request(spec: tf.TensorSpec, folder: Path, batch: int, rng):
    """A batch of `batch` examples for one signature input."""
    if spec.dtype == tf.string:
        return tf.constant(
            [SENTENCES[i % len(SENTENCES)] for i in range(batch)]
        )
    shape = list(spec.shape)
    height, width = _trained_size(folder)
    if spec.dtype == tf.float32 and spec.name == "boxes":
        return tf.constant(_boxes([batch, *shape[1:]], height, width, rng))
    shape[0] = batch
    shape[1] = shape[1] or height
    shape[2] = shape[2] or width
    if spec.dtype != tf.uint8:
        raise ValueError(
            f"{folder}: unsupported serving input dtype {spec.dtype} "
            "(expected uint8 images, float32 boxes or strings)."
        )
    return tf.constant(rng.integers(0, 256, shape, dtype="uint8"))


def time_model(name, version_dir: Path, batches, repeats, seed=0) -> dict:
    loaded = tf.saved_model.load(str(version_dir))
    serve = loaded.signatures["serving_default"]
    _, specs = serve.structured_input_signature
    rng = np.random.default_rng(seed)
    row = {"model": name, "version": version_dir.name}
    for batch in batches:
        inputs = {
            key: request(spec, version_dir.parent, batch, rng)
            for key, spec in specs.items()
        }
        row["input"] = {k: list(v.shape[1:]) for k, v in inputs.items()}
        first, median = time_call(
            lambda inputs=inputs: serve(**inputs), (), repeats, warmup=1
        )
        row[f"batch {batch}"] = {
            "first s": first,
            "ms": median,
            "ms per example": median / batch,
        }
    del loaded  # kept referenced until here: the signature reads its variables
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--models-dir", type=Path, default=ROOT / "saved_models"
    )
    parser.add_argument(
        "--json", help="also write the rows and settings to this JSON file"
    )
    args = parser.parse_args(argv)
    rows = []
    header = f"{'model':<22} {'input':<16}" + "".join(
        f" {f'batch {b} ms':>12} {'ms/example':>10}" for b in args.batches
    )
    print(header)
    for name, version_dir in saved_models(args.models_dir):
        row = time_model(name, version_dir, args.batches, args.repeats)
        rows.append(row)
        cells = "".join(
            f" {row[f'batch {b}']['ms']:12.1f}"
            f" {row[f'batch {b}']['ms per example']:10.2f}"
            for b in args.batches
        )
        shape = "x".join(str(d) for d in next(iter(row["input"].values())))
        print(f"{name:<22} {shape or 'text':<16}{cells}", flush=True)
    if args.json:
        write_json(args.json, {"repeats": args.repeats, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
