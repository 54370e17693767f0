"""Command line: export a `.keras` model as a TF-Serving SavedModel.

    python -m keras_segattn.export model.keras --task segmentation \\
        --output-dir saved_models/pets_fcn --version 1 --label-offset 1 \\
        --inference-size 160x160 --warmup-images sample_data/oxford_pets/images
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

TASKS = ("segmentation",)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected N or HxW with positive ints, got {text!r}"
        )
    return parts[0], parts[1]


def _warmup_images(folder: Path, count: int):
    from PIL import Image

    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES
    )[:count]
    if not files:
        raise SystemExit(f"--warmup-images: no image files in {folder}")
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except OSError as error:
            raise SystemExit(
                f"--warmup-images: cannot read {path}: {error}"
            ) from error
    import numpy as np

    return [np.asarray(image, np.uint8) for image in images]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_segattn.export",
        description="Export a .keras model as a TF-Serving SavedModel "
        "(writes OUTPUT_DIR/VERSION/).",
    )
    parser.add_argument("model", type=Path, help="path of a .keras file")
    parser.add_argument("--task", choices=TASKS, default="segmentation")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument(
        "--label-offset",
        type=int,
        default=0,
        help="added to class ids (1 for pets trimaps)",
    )
    parser.add_argument(
        "--inference-size",
        type=_size,
        default=None,
        help="N or HxW: resize inside the graph to the training size",
    )
    parser.add_argument(
        "--warmup-images",
        type=Path,
        default=None,
        help="folder of sample images for TF Serving warmup requests",
    )
    parser.add_argument("--num-warmup", type=int, default=4)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.model.is_file():
        raise SystemExit(f"model file not found: {args.model}")
    import keras

    import keras_segattn  # noqa: F401  (registers the serializable classes)
    from keras_segattn.export import export_for_serving

    model = keras.saving.load_model(args.model)
    warmup = (
        _warmup_images(args.warmup_images, args.num_warmup)
        if args.warmup_images
        else None
    )
    path = export_for_serving(
        model,
        args.output_dir,
        version=args.version,
        task=args.task,
        label_offset=args.label_offset,
        inference_size=args.inference_size,
        warmup_images=warmup,
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
