"""Recovers the Keras models of the committed SavedModels (no retraining).

The models in `saved_models/<name>/<version>/` were committed as TF-Serving
SavedModels only. For each, this script

1. rebuilds the architecture with the builder arguments its example used
   (the example's own builder functions and defaults; the commands in
   `saved_models/README.md` and each folder's metrics.json);
2. reads the SavedModel's variables by name from its checkpoint
   (`keras_segattn.models.pretrained.read_saved_model_variables`) and maps
   every Keras variable to exactly one of them: by name, else (a name that a
   Keras counter numbered differently in the training process, such as
   `seed_generator_6`) by the name without its numeric suffixes and the
   shape, where that pairing is unique. Every SavedModel variable must be
   used exactly once;
3. runs the rebuilt model through the package's own serving function and
   compares it with the SavedModel's `serving_default` on real samples
   (`sample_data/`, `--data-dir`): floats to `--atol`, integers and strings
   exactly;
4. only then writes `config.json` and `metadata.json` beside the SavedModel
   (the weights stay in the SavedModel's variables; metadata.json lists, in
   the Keras model's variable order, the SavedModel variable of each), and
   checks that `load_pretrained(name)` gives the same outputs again.

Usage:

    python tools/recover_pretrained.py                 # every model
    python tools/recover_pretrained.py pets_fcn --check-only
    python tools/recover_pretrained.py --data-dir ../shared/data
    python tools/recover_pretrained.py stn_cluttered_mnist caption_digits \\
        --reexport --data-dir ../shared/data

`--data-dir` is the folder holding `mnist/` (the digit scenes and caption
canvases are drawn from its test pool); without it those models are
compared on the package's synthetic digits.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = (
    "pets_fcn",
    "camvid_fcn",
    "stn_cluttered_mnist",
    "nmt_spa_eng",
    "caption_digits",
    "digits_mask_rcnn",
    "digits_mask_rcnn_fpn",
    "digits_yolo",
    "pets_localization",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"models to recover, of {', '.join(NAMES)} (default: all)",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=ROOT / "saved_models",
        help="folder of the committed models",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding mnist/ for real digit scenes and canvases "
        "(default: synthetic digits)",
    )
    parser.add_argument(
        "--version", type=int, default=1, help="SavedModel version folder"
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=1e-5,
        help="largest float difference from serving_default accepted "
        "(relative for values beyond 1)",
    )
    parser.add_argument(
        "--reexport",
        action="store_true",
        help="re-export the SavedModel from the recovered Keras model with "
        "the current signatures and serving graph (the image models: "
        "stn_cluttered_mnist, caption_digits, the digit detectors, "
        "pets_localization), after checking it answers as the committed "
        "one; then recover again from the new variables (with "
        "--check-only: only compare, for models whose weights are kept in "
        "model.weights.h5)",
    )
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="compare load_pretrained(name) with serving_default; write "
        "nothing",
    )
    return parser


def load_example(name: str):
    """Imports `examples/<name>.py` (examples/ is not a package)."""
    if str(ROOT / "examples") not in sys.path:
        sys.path.insert(0, str(ROOT / "examples"))
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------- samples


def _read_images(folder: Path, count: int, channels: int = 3) -> list:
    import tensorflow as tf

    files = sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))[
        :count
    ]
    return [
        tf.io.decode_image(p.read_bytes(), channels=channels).numpy()
        for p in files
    ]


def _digit_scenes(args, count: int = 4):
    from keras_segattn.data import digit_scenes

    if args.data_dir is None:
        scenes = digit_scenes.make_synthetic_digit_scenes(
            count, seed=2, image_size=128
        )
    else:
        scenes = digit_scenes.load_digit_scene_arrays(
            args.data_dir / "mnist", "test", count, seed=2, image_size=128
        )
    return [scenes["images"]]


def _caption_canvases(args, count: int = 4):
    from keras_segattn.data import digit_captions
    from keras_segattn.data import mnist

    if args.data_dir is None:
        images, _ = digit_captions.make_synthetic_digit_captions(count, seed=2)
    else:
        digits, labels = mnist.load_mnist_arrays(
            args.data_dir / "mnist", "test"
        )
        images, _ = digit_captions.make_digit_caption_arrays(
            digits, labels, count, max_shift=2, seed=2
        )
    return [images]


# --------------------------------------------------------------- recipes
# Each recipe: build() -> Keras model; serve(model) -> fn(input) -> dict,
# the package's serving function that the export wraps; samples(args) ->
# list of inputs of `serving_default`; input: the signature's input name;
# metadata: what metadata.json says besides the metrics.


def _segmentation(dataset, label_offset):
    # What the model is, from its metrics.json: the classes (those of its
    # per-class IoU), the training size and the FCN's encoder (models
    # trained before the `--backbone` flag used the VGG default).
    directory = ROOT / "saved_models" / f"{dataset}_fcn"
    metrics = json.loads((directory / "metrics.json").read_text("utf-8"))
    classes = list(metrics["per_class_iou"])
    num_classes = len(classes)
    image_size = tuple(metrics["image_size"])
    backbone = metrics.get("backbone", "vgg_small")
    # The test-time augmentation its export averages over (none before the
    # flags existed).
    augmentation = metrics.get("test_time_augmentation", {})
    scales = tuple(augmentation.get("scales", (1.0,)))
    flip = bool(augmentation.get("flip", False))

    def build():
        from keras_segattn import models

        overrides = {"variant": "8s"}
        if backbone != "vgg_small":
            overrides.update(backbone=backbone, backbone_kwargs={})
        return models.build_segmentation_model(
            "fcn8s_small", num_classes, **overrides
        )

    def serve(model):
        from keras_segattn.export import make_segmentation_serving_fn

        return make_segmentation_serving_fn(
            model,
            label_offset=label_offset,
            inference_size=image_size,
            test_time_scales=scales,
            test_time_flip=flip,
        )

    def samples(args):
        folder = {
            "pets": ROOT / "sample_data/oxford_pets/images",
            "camvid": ROOT / "sample_data/camvid/val/images",
        }[dataset]
        return [image[None] for image in _read_images(folder, 2)]

    return {
        "build": build,
        "serve": serve,
        "samples": samples,
        "input": "images",
        "metadata": {
            "task": "semantic_segmentation",
            "classes": classes,
            "label_offset": label_offset,
            "input": "float32 images [batch, height, width, 3], 0..255",
            "input_size": list(image_size),
            "output": f"probabilities [batch, height, width, {num_classes}]",
            "test_time_augmentation": {"scales": list(scales), "flip": flip},
        },
    }


def _stn():
    example = load_example("stn_cluttered_mnist")

    def build():
        # The inspection model (dict of probabilities, transformed_images,
        # theta) is what was exported; it shares every layer with the
        # training model `build_st_cnn(...)[0]`.
        return example.build_st_cnn("affine", width=32)[1]

    def serve(model):
        from keras_segattn.export import make_classifier_serving_fn

        return make_classifier_serving_fn(model, (40, 40, 1))

    def samples(args):
        import numpy as np

        # The archive's X_valid rows (floats 0..1), as the example reads
        # them, in uint8 for serving_default.
        with np.load(ROOT / "sample_data/cluttered_mnist/sample.npz") as f:
            images = f["X_valid"][:4].reshape(-1, 40, 40, 1) * 255.0
        return [np.clip(np.rint(images), 0, 255).astype(np.uint8)]

    def export(model, export_dir, warmup):
        from keras_segattn.export import export_classifier_for_serving

        return export_classifier_for_serving(
            model, export_dir, warmup_images=warmup
        )

    return {
        "build": build,
        "serve": serve,
        "samples": samples,
        "export": export,
        "input": "images",
        "metrics": ("st_cnn",),
        "metadata": {
            "task": "image_classification",
            "classes": [str(i) for i in range(10)],
            "input": "float32 images [batch, 40, 40, 1], 0..255",
            "input_size": [40, 40],
            "output": "dict: probabilities [batch, 10], transformed_images "
            "[batch, 24, 24, 1], theta [batch, 6]",
        },
    }


def _translator():
    def vocabularies(directory):
        path = directory / "vocabularies.json"
        return json.loads(path.read_text("utf-8"))

    def build():
        from keras_segattn.models import Seq2SeqTranslator

        # examples/translate.py train defaults (the command had only
        # --epochs 10); 10,000 source and 7,000 target words.
        return Seq2SeqTranslator(
            10000,
            7000,
            embedding_dim=128,
            encoder_units=256,
            decoder_units=256,
            attention_units=256,
            readout_units=192,
            dropout=0.2,
            attention=True,
        )

    def serve(model):
        from keras_segattn.export import TranslationServingModule

        words = vocabularies(ROOT / "saved_models" / "nmt_spa_eng")
        module = TranslationServingModule(
            model,
            words["source"],
            words["target"],
            words["display"],
            max_output_length=50,
            beam_width=4,
        )
        return module.translate

    def samples(args):
        import numpy as np

        return [
            np.array(["Hola.", "¿Dónde está la estación de tren?"], object),
            np.array(["Tengo hambre."], object),
        ]

    return {
        "build": build,
        "serve": serve,
        "samples": samples,
        "input": "text",
        "metrics": (),
        "metadata": {
            "task": "translation",
            "source_language": "spa",
            "target_language": "eng",
            "vocabularies": "vocabularies.json",
            "input": "dict: source_tokens int32 [batch, s], target_tokens "
            "int32 [batch, t] (ids of vocabularies.json; the SavedModel "
            "tokenises text)",
            "output": "next-token probabilities [batch, t, 7000]",
        },
    }


def _captioner(attention="soft"):
    # caption_digits_hard (issue 19) and the retrained caption_digits ship
    # config.json + model.weights.h5: `build` is only the recovery of the
    # first caption_digits export, whose SavedModel held the weights.
    example = load_example("caption_digits")

    def build():
        from keras_segattn.models import ShowAttendTellCaptioner

        # examples/caption_digits.py train_mode, full size, soft attention
        # (the first attention mode trained is the one exported).
        return ShowAttendTellCaptioner(
            len(example.DIGITS),
            image_shape=(84, 84, 1),
            attention=attention,
            filters=(32, 64, 64),
            block_depth=1,
            coordinates=False,
            embedding_dim=64,
            decoder_units=192,
            attention_units=96,
        )

    def serve(model):
        from keras_segattn.export import CaptioningServingModule

        module = CaptioningServingModule(
            model,
            list(example.DIGITS.vocabulary),
            max_output_length=example.DIGITS.max_length,
        )
        return module.caption

    def export(model, export_dir, warmup):
        from keras_segattn.export import export_captioner_for_serving

        return export_captioner_for_serving(
            model,
            export_dir,
            list(example.DIGITS.vocabulary),
            max_output_length=example.DIGITS.max_length,
            warmup_images=warmup,
        )

    return {
        "build": build,
        "serve": serve,
        "samples": _caption_canvases,
        "export": export,
        "input": "images",
        "metrics": ("results", attention),
        "metadata": {
            "task": "image_captioning",
            "vocabulary": list(example.DIGITS.vocabulary),
            "input": "float32 images [batch, 84, 84, 1], 0..255",
            "input_size": [84, 84],
        },
    }


def _export_detector(model, export_dir, warmup):
    from keras_segattn.export import export_detector_for_serving

    return export_detector_for_serving(model, export_dir, warmup_images=warmup)


def _mask_rcnn(fpn: bool):
    # The fine-tuned digits_mask_rcnn_fpn (issue 17) ships config.json +
    # model.weights.h5: for it `build` only recovers the first export.
    example = load_example("instance_segmentation")

    def build():
        from keras_segattn.models import FasterRCNN

        return FasterRCNN(
            len(example.DIGIT_CLASSES),
            seed=0,
            **example.model_kwargs(128, False, fpn=fpn),
        )

    def serve(model):
        from keras_segattn.export import make_detection_serving_fn

        return make_detection_serving_fn(model)

    return {
        "build": build,
        "serve": serve,
        "samples": _digit_scenes,
        "input": "images",
        "export": _export_detector,
        "metrics": ("box", "mask"),
        "metadata": {
            "task": "instance_segmentation",
            "classes": list(example.DIGIT_CLASSES),
            "input": "float32 images [batch, 128, 128, 3], 0..255",
            "input_size": [128, 128],
            "bounding_box_format": "yxyx",
        },
    }


def _yolo():
    example = load_example("yolo_digits")

    def build():
        from keras_segattn.models import YOLO

        return YOLO(
            len(example.DIGIT_CLASSES), **example.model_kwargs(128, False)
        )

    def serve(model):
        from keras_segattn.export import make_detection_serving_fn

        return make_detection_serving_fn(model)

    return {
        "build": build,
        "serve": serve,
        "samples": _digit_scenes,
        "input": "images",
        "export": _export_detector,
        "metrics": ("box",),
        "metadata": {
            "task": "object_detection",
            "classes": list(example.DIGIT_CLASSES),
            "input": "float32 images [batch, 128, 128, 3], 0..255",
            "input_size": [128, 128],
            "bounding_box_format": "yxyx",
        },
    }


def _localizer():
    example = load_example("localization")
    training = json.loads(
        (ROOT / "saved_models/pets_localization/training.json").read_text()
    )
    classes = training["class_names"]

    def build():
        from keras_segattn.models import build_classifier_localizer

        return build_classifier_localizer(
            len(classes), **example.model_kwargs(128, False)
        )

    def serve(model):
        from keras_segattn.export import make_localization_serving_fn

        return make_localization_serving_fn(model)

    def samples(args):
        folder = ROOT / "sample_data/oxford_pets/images"
        return [image[None] for image in _read_images(folder, 2)]

    def export(model, export_dir, warmup):
        from keras_segattn.export import export_localizer_for_serving

        return export_localizer_for_serving(
            model, export_dir, warmup_images=warmup
        )

    return {
        "build": build,
        "serve": serve,
        "samples": samples,
        "input": "images",
        "export": export,
        "metadata": {
            "task": "classification_and_localization",
            "classes": classes,
            "input": "float32 images [batch, 128, 128, 3], 0..255",
            "input_size": [128, 128],
            "output": "dict: classes [batch, 3] probabilities, boxes "
            "[batch, 4] (ymin, xmin, ymax, xmax) in 0..1",
        },
    }


def recipe(name: str) -> dict:
    if name == "pets_fcn":
        return _segmentation("pets", label_offset=1)
    if name == "camvid_fcn":
        return _segmentation("camvid", label_offset=0)
    return {
        "stn_cluttered_mnist": _stn,
        "nmt_spa_eng": _translator,
        "caption_digits": _captioner,
        "caption_digits_hard": lambda: _captioner("hard"),
        "digits_mask_rcnn": lambda: _mask_rcnn(False),
        "digits_mask_rcnn_fpn": lambda: _mask_rcnn(True),
        "digits_yolo": _yolo,
        "pets_localization": _localizer,
    }[name]()


# --------------------------------------------------------------- matching


def _stem(name: str) -> str:
    """`seed_generator_6/seed_generator_state` -> without numeric suffixes."""
    return "/".join(re.sub(r"_\d+$", "", part) for part in name.split("/"))


def _counters(name: str) -> tuple:
    """The numeric suffixes of `name` (none counts as 0), in order."""
    return tuple(
        int(m.group(1)) if (m := re.search(r"_(\d+)$", part)) else 0
        for part in name.split("/")
    )


def match_variables(model, saved: dict) -> list[str | None]:
    """The SavedModel variable of each of `model.variables`, in order.

    By name; then, for what is left, by (name without numeric suffixes,
    shape): k Keras and k SavedModel variables sharing it are paired in the
    order of their suffixes, which Keras's name counters hand out in
    creation order (two Dropout layers' `seed_generator` and
    `seed_generator_1` were `seed_generator_2` and `_3` in a process that
    had built two before).

    Last, a variable left is paired with the SavedModel variable of the
    same name whose path holds its layer's name, where that is unique
    both ways. A random-number state (`.../seed_generator_state`) left
    unpaired on either side maps to None: it keeps its built value (it
    draws training-time samples only).

    Raises:
        ValueError: unless every other Keras and SavedModel variable is
            paired exactly once with the same shape.
    """
    variables = model.variables
    names = [v.value.name.removesuffix(":0") for v in variables]
    result: list[str | None] = [None] * len(variables)
    used = set()
    for i, (v, n) in enumerate(zip(variables, names, strict=True)):
        if n in saved and saved[n].shape == tuple(v.shape) and n not in used:
            result[i] = n
            used.add(n)
    groups: dict = {}
    for i, r in enumerate(result):
        if r is None:
            key = (_stem(names[i]), tuple(variables[i].shape))
            groups.setdefault(key, ([], []))[0].append(i)
    for n in saved:
        key = (_stem(n), tuple(saved[n].shape))
        if n not in used and key in groups:
            groups[key][1].append(n)
    for left, candidates in groups.values():
        if len(left) == len(candidates):
            left.sort(key=lambda i: _counters(names[i]))
            candidates.sort(key=_counters)
            for i, n in zip(left, candidates, strict=True):
                result[i] = n
                used.add(n)

    # A layer that now builds its sublayers in its own name scope
    # (`rpn_head/rpn_conv/kernel`, was `rpn_conv/kernel`; Keras's
    # `mask_head/mask_conv1/kernel`, was `mask_conv1/conv2d/kernel`): the
    # same variable of the same layer, where that pairing is unique.
    def layer_and_variable(name):
        parts = name.split("/")
        return (parts[-2] if len(parts) > 1 else "", parts[-1])

    pairs: dict = {}
    for i, r in enumerate(result):
        if r is not None:
            continue
        layer, variable = layer_and_variable(names[i])
        shape = tuple(variables[i].shape)
        pairs[i] = [
            n
            for n in saved
            if n not in used
            and n.split("/")[-1] == variable
            and layer in n.split("/")[:-1]
            and tuple(saved[n].shape) == shape
        ]
    chosen = [c[0] for c in pairs.values() if len(c) == 1]
    for i, candidates in pairs.items():
        if len(candidates) == 1 and chosen.count(candidates[0]) == 1:
            result[i] = candidates[0]
            used.add(candidates[0])
    # Random-number states (Keras SeedGenerator) are no weights: a model
    # whose sampling layers now have a generator each keeps the built ones.
    missing = [
        names[i]
        for i, r in enumerate(result)
        if r is None and not names[i].endswith("/seed_generator_state")
    ]
    free = [
        n
        for n in saved
        if n not in used and not n.endswith("/seed_generator_state")
    ]
    if missing or free:
        raise ValueError(
            f"Cannot pair the variables: Keras variables without a "
            f"SavedModel variable: {missing}; SavedModel variables without "
            f"a Keras variable: {free}."
        )
    return result


# --------------------------------------------------------------- compare


def compare(expected: dict, actual: dict, atol: float) -> float:
    """Largest float difference, relative where |value| > 1; raises
    AssertionError on any mismatch (integers and strings exactly)."""
    import numpy as np

    if set(expected) != set(actual):
        raise AssertionError(
            f"outputs differ: {sorted(expected)} vs {sorted(actual)}"
        )
    worst = 0.0
    for key in expected:
        e, a = np.asarray(expected[key]), np.asarray(actual[key])
        if e.shape != a.shape:
            raise AssertionError(f"{key}: shape {e.shape} vs {a.shape}")
        if e.dtype.kind == "f":
            # Relative to the size of the values: boxes in request pixels
            # (hundreds) differ by float32 rounding (1e-5) between graphs.
            scale = np.maximum(1.0, np.abs(e))
            diff = float(np.max(np.abs(e - a) / scale)) if e.size else 0.0
            worst = max(worst, diff)
            if not diff <= atol:
                raise AssertionError(
                    f"{key}: max |difference| / max(1, |value|) {diff:.3g}"
                )
        elif not np.array_equal(e, a):
            raise AssertionError(f"{key}: values differ")
    return worst


def run_against_saved_model(saved_model, serve, samples, input_name, atol):
    import tensorflow as tf

    signature = saved_model.signatures["serving_default"]
    worst = 0.0
    for sample in samples:
        expected = signature(**{input_name: tf.constant(sample)})
        actual = serve(tf.constant(sample))
        worst = max(
            worst,
            compare(
                {k: v.numpy() for k, v in expected.items()},
                {k: v.numpy() for k, v in actual.items()},
                atol,
            ),
        )
    return worst


def _numbers(tree: dict) -> dict:
    """The numeric entries of `tree` (one level, per-class dicts kept)."""
    return {
        k: v
        for k, v in tree.items()
        if (isinstance(v, int | float) and not isinstance(v, bool))
        or (k.startswith("per_class") and isinstance(v, dict))
    }


def _metrics(directory: Path, path: tuple = ()) -> dict:
    """What metrics.json / training.json say, as metadata: the numbers at
    the top of metrics.json, or under `path` (("box", "mask"): each)."""
    metrics = json.loads((directory / "metrics.json").read_text("utf-8"))
    if not path:
        numbers = _numbers(metrics)
    elif path[0] in ("box", "mask"):
        numbers = {k: _numbers(metrics[k]) for k in path}
    else:
        tree = metrics
        for key in path:
            tree = tree[key]
        numbers = _numbers(tree)
    training = directory / "training.json"
    training = (
        json.loads(training.read_text("utf-8")) if training.is_file() else {}
    )
    command = (
        metrics.get("train_command")
        or training.get("command")
        or metrics.get("training", {}).get("command")
        or metrics.get("command")
    )
    return {
        "metrics": numbers,
        "metrics_file": "metrics.json",
        "training_command": command,
    }


def recover(name: str, args) -> dict:
    import keras
    import tensorflow as tf

    from keras_segattn.models import load_pretrained
    from keras_segattn.models import pretrained

    directory = args.models_dir / name
    serving = directory / str(args.version)
    spec = recipe(name)
    saved_model = tf.saved_model.load(str(serving))  # keep referenced
    samples = spec["samples"](args)
    report = {"name": name}
    if not args.check_only:
        keras.utils.clear_session()
        model = spec["build"]()
        saved = pretrained.read_saved_model_variables(serving)
        names = match_variables(model, saved)
        pretrained.assign_weights(model, saved, names, str(serving))
        report["variables"] = len(names)
        report["renamed"] = sum(
            n is not None and n != v.value.name.removesuffix(":0")
            for n, v in zip(names, model.variables, strict=True)
        )
        report["kept_as_built"] = [
            v.path
            for n, v in zip(names, model.variables, strict=True)
            if n is None
        ]
        report["rebuilt_max_abs_diff"] = run_against_saved_model(
            saved_model, spec["serve"](model), samples, spec["input"], args.atol
        )
        config = keras.saving.serialize_keras_object(model)
        (directory / pretrained.CONFIG_FILE).write_text(
            json.dumps(config, indent=1) + "\n", "utf-8"
        )
        metadata = {
            "name": name,
            **spec["metadata"],
            **_metrics(directory, spec.get("metrics", ())),
            "saved_model": str(args.version),
            "weights": {
                "format": "saved_model",
                "path": str(args.version),
                "variables": names,
            },
        }
        (directory / pretrained.METADATA_FILE).write_text(
            json.dumps(metadata, indent=2) + "\n", "utf-8"
        )
    keras.utils.clear_session()
    loaded = load_pretrained(name, args.models_dir)
    report["loaded_max_abs_diff"] = run_against_saved_model(
        saved_model, spec["serve"](loaded), samples, spec["input"], args.atol
    )
    return report


def _warmup_images(path: Path) -> list | None:
    """The images of a SavedModel's TF Serving warmup requests, if any."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    records = path / "assets.extra" / "tf_serving_warmup_requests"
    if not records.is_file():
        return None
    images = []
    for record in tf.data.TFRecordDataset(str(records)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        tensor = log.predict_log.request.inputs["images"]
        images.extend(tf.make_ndarray(tensor))
    return images


def reexport(name: str, args) -> dict:
    """Re-exports `name` from `load_pretrained(name)` with the current
    signatures (`serving_image_bytes`), into the same version folder.

    The new export is first written to a hidden temporary folder and
    compared: its `serving_default` must equal the committed one's on the
    samples, and its `serving_image_bytes` (PNG of the same images) its
    `serving_default`. Only then is `<version>/` replaced (atomically, by
    the exporter) and keeping the same warmup requests.
    """
    import tempfile

    import tensorflow as tf

    from keras_segattn.models import load_pretrained

    spec = recipe(name)
    directory = args.models_dir / name
    old_path = directory / str(args.version)
    old = tf.saved_model.load(str(old_path))  # keep referenced
    model = load_pretrained(name, args.models_dir)
    samples = spec["samples"](args)
    warmup = _warmup_images(old_path)
    report = {"name": name, "reexported": str(old_path)}
    with tempfile.TemporaryDirectory(prefix=".reexport-", dir=directory) as tmp:
        new = tf.saved_model.load(spec["export"](model, tmp, warmup))
        default = new.signatures["serving_default"]
        by_bytes = new.signatures["serving_image_bytes"]
        report["new_vs_old_max_abs_diff"] = run_against_saved_model(
            old,
            lambda x: default(**{spec["input"]: x}),
            samples,
            spec["input"],
            args.atol,
        )
        worst = 0.0
        for sample in samples:
            png = tf.stack([tf.io.encode_png(image) for image in sample])
            worst = max(
                worst,
                compare(
                    {k: v.numpy() for k, v in default(images=sample).items()},
                    {
                        k: v.numpy()
                        for k, v in by_bytes(image_bytes=png).items()
                    },
                    args.atol,
                ),
            )
        report["bytes_vs_default_max_abs_diff"] = worst
    spec["export"](model, directory, warmup)
    return report


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(NAMES))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(NAMES)}")
    args.names = args.names or list(NAMES)
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    failures = 0
    for name in args.names:
        try:
            if args.reexport:
                if "export" not in recipe(name):
                    parser.error(f"--reexport: no exporter for {name}")
                print(json.dumps(reexport(name, args)), flush=True)
            print(json.dumps(recover(name, args)), flush=True)
        except (AssertionError, ValueError) as error:
            failures += 1
            print(f"{name}: NOT recovered: {error}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
