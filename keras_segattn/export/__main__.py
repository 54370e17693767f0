"""Command line: export a `.keras` model as a TF-Serving SavedModel.

    python -m keras_segattn.export model.keras --task segmentation \\
        --output-dir saved_models/pets_fcn --version 1 --label-offset 1 \\
        --inference-size 160x160 --warmup-images sample_data/oxford_pets/images

    python -m keras_segattn.export st_cnn.keras --task classification \\
        --output-dir saved_models/stn_cluttered_mnist

    python -m keras_segattn.export saved_models/digits_mask_rcnn/model.keras \\
        --task detection --output-dir saved_models/digits_mask_rcnn

    python -m keras_segattn.export saved_models/nmt_spa_eng/model.keras \\
        --task translation --vocabularies saved_models/nmt_spa_eng/\\
vocabularies.json --output-dir saved_models/nmt_spa_eng \\
        --warmup-text sentences.txt

    python -m keras_segattn.export model.keras --format onnx --output-dir DIR
    python -m keras_segattn.export model.keras --format litert --output-dir DIR
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

TASKS = ("segmentation", "classification", "detection", "translation")
FORMATS = ("saved_model", "onnx", "litert")
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


def _warmup_images(folder: Path, count: int, channels=3, size=None):
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
                image = image.convert("RGB" if channels == 3 else "L")
                if size is not None:
                    image = image.resize((size[1], size[0]))
                images.append(image)
        except OSError as error:
            raise SystemExit(
                f"--warmup-images: cannot read {path}: {error}"
            ) from error
    import numpy as np

    return [
        np.asarray(image, np.uint8).reshape(image.size[1], image.size[0], -1)
        for image in images
    ]


def _warmup_text(path: Path, count: int) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise SystemExit(
            f"--warmup-text: cannot read {path}: {error}"
        ) from error
    sentences = [line.strip() for line in lines if line.strip()][:count]
    if not sentences:
        raise SystemExit(f"--warmup-text: no sentences in {path}")
    return sentences


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_segattn.export",
        description="Export a .keras model as a TF-Serving SavedModel "
        "(writes OUTPUT_DIR/VERSION/).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", type=Path, help="path of a .keras file")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="saved_model",
        help="saved_model: TF Serving SavedModel in OUTPUT_DIR/VERSION/; "
        "onnx: OUTPUT_DIR/model.onnx (tf2onnx, `onnx` extra); litert: "
        "OUTPUT_DIR/model.tflite (`litert` extra). onnx and litert convert "
        "the model's float32 graph (images in 0..255, dynamic batch) and "
        "ignore the serving flags",
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        default="segmentation",
        help="model family, which fixes the serving signatures",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        required=True,
        help="model folder; the SavedModel goes to OUTPUT_DIR/VERSION/",
    )
    parser.add_argument(
        "--version", type=int, default=1, help="TF Serving version number"
    )
    parser.add_argument(
        "--label-offset",
        type=int,
        default=0,
        help="added to class ids (segmentation: 1 for pets trimaps; "
        "detection: 1 for the TF OD API's 1-based label-map ids)",
    )
    parser.add_argument(
        "--inference-size",
        type=_size,
        default=None,
        help="N or HxW: resize inside the graph to the training size",
    )
    parser.add_argument(
        "--test-time-scales",
        type=float,
        nargs="+",
        default=[1.0],
        help="segmentation: multiples of the inference size the model sees "
        "each image at, probabilities averaged (multi-scale inference), "
        "e.g. 0.75 1 1.25 (default: 1)",
    )
    parser.add_argument(
        "--test-time-flip",
        action="store_true",
        help="segmentation: also average over horizontally flipped images",
    )
    parser.add_argument(
        "--warmup-images",
        type=Path,
        default=None,
        help="folder of sample images for TF Serving warmup requests",
    )
    parser.add_argument(
        "--num-warmup",
        type=int,
        default=4,
        help="warmup requests written from --warmup-images",
    )
    translation = parser.add_argument_group("translation")
    translation.add_argument(
        "--vocabularies",
        type=Path,
        help="JSON with 'source', 'target' (and optional 'display') "
        "vocabularies, as examples/translate.py writes it",
    )
    translation.add_argument(
        "--max-output-length",
        type=int,
        default=50,
        help="longest translation decoded, in tokens",
    )
    translation.add_argument(
        "--beam-width",
        type=int,
        default=4,
        help="beam width of the beam-search signature",
    )
    translation.add_argument(
        "--length-penalty",
        type=float,
        default=0.6,
        help="beam search length-penalty exponent (GNMT's alpha)",
    )
    translation.add_argument(
        "--warmup-text",
        type=Path,
        help="text file, one source sentence per line, for warmup requests",
    )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.model.is_file():
        raise SystemExit(f"model file not found: {args.model}")
    import keras

    import keras_segattn  # noqa: F401  (registers the serializable classes)
    from keras_segattn.export import export_for_serving

    model = keras.saving.load_model(args.model)
    if args.format != "saved_model":
        from keras_segattn.export import export_litert
        from keras_segattn.export import export_onnx

        export = export_onnx if args.format == "onnx" else export_litert
        try:
            path = export(model, args.output_dir)
        except (ImportError, ValueError) as error:
            raise SystemExit(f"--format {args.format}: {error}") from error
    elif args.task == "translation":
        path = _export_translation(model, args)
    elif args.task in ("classification", "detection"):
        from keras_segattn.export import export_classifier_for_serving
        from keras_segattn.export import export_detector_for_serving

        _, height, width, channels = model.inputs[0].shape
        warmup = (
            _warmup_images(
                args.warmup_images, args.num_warmup, channels, (height, width)
            )
            if args.warmup_images
            else None
        )
        if args.task == "classification":
            path = export_classifier_for_serving(
                model,
                args.output_dir,
                version=args.version,
                warmup_images=warmup,
            )
        else:
            path = export_detector_for_serving(
                model,
                args.output_dir,
                version=args.version,
                label_offset=args.label_offset,
                warmup_images=warmup,
            )
    else:
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
            test_time_scales=args.test_time_scales,
            test_time_flip=args.test_time_flip,
        )
    print(path)
    return 0


def _export_translation(model, args) -> str:
    import json

    from keras_segattn.export import export_translator_for_serving

    if args.vocabularies is None:
        raise SystemExit("--task translation needs --vocabularies")
    try:
        vocabularies = json.loads(args.vocabularies.read_text("utf-8"))
        source, target = vocabularies["source"], vocabularies["target"]
    except (OSError, ValueError, KeyError) as error:
        raise SystemExit(
            f"--vocabularies: cannot read {args.vocabularies} as JSON with "
            f"'source' and 'target' lists: {error!r}"
        ) from error
    warmup = (
        _warmup_text(args.warmup_text, args.num_warmup)
        if args.warmup_text
        else None
    )
    return export_translator_for_serving(
        model,
        args.output_dir,
        source,
        target,
        vocabularies.get("display"),
        version=args.version,
        max_output_length=args.max_output_length,
        beam_width=args.beam_width,
        length_penalty=args.length_penalty,
        warmup_sentences=warmup,
    )


if __name__ == "__main__":
    sys.exit(main())
