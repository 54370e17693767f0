"""R-CNN -> Fast R-CNN -> Faster R-CNN on MNIST digit scenes, measured.

The lectures' road to Faster R-CNN, on the scenes of
`examples/instance_segmentation.py` (`keras_segattn.data.digit_scenes`:
canvases with 2-5 MNIST digits, disjoint boxes, the digit as class; train
scenes from MNIST training digits, test scenes from the held-out test pool,
rows 50,000+ of `mnist_train.npz`). The three detectors share the backbone
(the package's small VGG cut at stride 8, same widths), the box head, the
RoI sampler, the losses, the post-processing, the training budget (scenes,
epochs, batch size, learning-rate schedule, XLA) and the serving contract:

- `RCNN`: selective-search proposals, each warped out of the image
  (RoIAlign on the image) and run through the CNN: one pass per proposal;
- `FastRCNN`: selective-search proposals, one CNN pass per image, RoIPool;
- `FasterRCNN`: proposals from its own RPN, inside the graph.

Selective search (OpenCV, `fast` mode, one thread) runs once per scene
and is cached (`--cache-dir`, an .npz per split keyed by the scenes'
pixels and the parameters). The script measures box AP50 / AP
(pycocotools) on test-pool scenes through each exported serving graph,
training seconds per epoch, inference ms per image at batch 1 (XLA and
the serving graph, without proposals) and selective search's ms per image
on the CPU, shown separately ("test time excluding / including
proposals"); and the recall of the selective-search proposals at IoU 0.5
and 0.7 for 100 / 300 / 1000 proposals on digit scenes and, with
`--coco-dir`, on COCO-MINI. It writes the tables to
`<output-dir>/results.md`, `results.json` and into `--readme` between the
markers `<!-- rcnn-progression:start -->` and `<!-- rcnn-progression:end
-->`, which it replaces.

Examples:

    # The full run (about half an hour on 2 shared CPU cores)
    python examples/rcnn_progression.py --data-dir ../shared/data/mnist \\
        --coco-dir ../shared/data/coco_mini --readme README.md

    # Seconds-long check on seven-segment digits (no data files); writes
    # the tables into <output-dir>/README.md
    python examples/rcnn_progression.py --smoke --output-dir /tmp/rcnn
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from _cli import ArgumentParser
from _cli import set_process_defaults

MODELS = ("rcnn", "fast_rcnn", "faster_rcnn")
TITLES = {
    "rcnn": "R-CNN",
    "fast_rcnn": "Fast R-CNN",
    "faster_rcnn": "Faster R-CNN",
}
RECALL_COUNTS = (100, 300, 1000)
RECALL_IOUS = (0.5, 0.7)
START_MARKER = "<!-- rcnn-progression:start -->"
END_MARKER = "<!-- rcnn-progression:end -->"
DIGIT_CLASSES = [str(d) for d in range(10)]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with mnist_train.npz (required without --smoke)",
    )
    parser.add_argument(
        "--coco-dir",
        type=Path,
        default=None,
        help="COCO-format folder (instances.json, images/, masks/) for the "
        "proposal recall on COCO-MINI; left out: no COCO row",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/rcnn_progression"),
        help="models, serving exports, results.md and results.json",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="proposal caches (default: <output-dir>/proposals)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="Markdown file whose marked block gets the tables "
        "(default: <output-dir>/README.md)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=list(MODELS),
        help="detectors to train and measure",
    )
    parser.add_argument(
        "--image-size", type=int, default=128, help="side of the scenes"
    )
    parser.add_argument(
        "--num-train", type=int, default=600, help="training scenes"
    )
    parser.add_argument("--num-test", type=int, default=200, help="test scenes")
    parser.add_argument(
        "--epochs", type=int, default=None, help="default: 5 (--smoke: 1)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="batch size")
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=2e-3,
        help="peak Adam learning rate, cosine decay",
    )
    parser.add_argument(
        "--num-proposals",
        type=int,
        default=64,
        help="selective-search proposals per image fed to R-CNN and Fast "
        "R-CNN (padded with -1); also Faster R-CNN's RPN proposals at test",
    )
    parser.add_argument(
        "--mode",
        choices=("fast", "quality"),
        default="fast",
        help="selective-search mode",
    )
    parser.add_argument(
        "--timing-runs",
        type=int,
        default=20,
        help="timed batch-1 calls per model and graph (median reported)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the data and weights"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seven-segment digits, tiny models, a few steps",
    )
    return parser


if __name__ == "__main__":
    # --help and bad flags exit here, before TensorFlow is imported.
    build_parser().parse_args()

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_segattn.data import cached_selective_search_proposals  # noqa: E402
from keras_segattn.data import load_coco_instance_arrays  # noqa: E402
from keras_segattn.data import proposal_recall  # noqa: E402
from keras_segattn.data import selective_search_proposals  # noqa: E402
from keras_segattn.export import export_detector_for_serving  # noqa: E402
from keras_segattn.export import export_proposal_detector_for_serving  # noqa: E402
from keras_segattn.metrics import evaluate_detections  # noqa: E402
from keras_segattn.models import RCNN  # noqa: E402
from keras_segattn.models import FasterRCNN  # noqa: E402
from keras_segattn.models import FastRCNN  # noqa: E402

from _common import cosine_decay  # noqa: E402
from _detection import make_digit_scenes  # noqa: E402


def shared_kwargs(image_size: int, num_proposals: int, smoke: bool) -> dict:
    """What the three detectors share: backbone, box head, sampler,
    post-processing."""
    if smoke:
        backbone = {"filters": (8, 8, 16, 16, 16), "convs_per_stage": 1}
        head = {"box_head_units": 32, "box_batch_size_per_image": 16}
    else:
        backbone = {"filters": (16, 32, 64, 64, 64), "convs_per_stage": 1}
        head = {"box_head_units": 128, "box_batch_size_per_image": 32}
    return {
        "image_shape": (image_size, image_size, 3),
        "backbone_kwargs": backbone,
        "max_detections": 8 if smoke else 20,
        **head,
    }


def build_model(name: str, args, num_classes: int) -> keras.Model:
    kwargs = shared_kwargs(args.image_size, args.num_proposals, args.smoke)
    if name == "rcnn":
        return RCNN(
            num_classes,
            num_proposals=args.num_proposals,
            warp_size=32,
            seed=args.seed,
            **kwargs,
        )
    if name == "fast_rcnn":
        return FastRCNN(
            num_classes,
            num_proposals=args.num_proposals,
            roi_op="pool",
            seed=args.seed,
            **kwargs,
        )
    small = args.smoke
    return FasterRCNN(
        num_classes,
        anchor_sizes=(8.0, 16.0) if small else (16.0, 32.0),
        rpn_pre_nms_top_n_train=64 if small else 600,
        rpn_post_nms_top_n_train=32 if small else 300,
        rpn_pre_nms_top_n_test=48 if small else 300,
        rpn_post_nms_top_n_test=args.num_proposals,
        rpn_batch_size_per_image=32 if small else 128,
        roi_op="pool",
        seed=args.seed,
        **kwargs,
    )


def split_proposals(args, split: str, scenes: dict, max_proposals: int):
    """Cached selective-search proposals of a split's scenes."""
    cache = (
        args.cache_dir / f"digit_scenes_{split}_{args.mode}_{max_proposals}.npz"
    )
    return cached_selective_search_proposals(
        scenes["images"],
        cache,
        mode=args.mode,
        max_proposals=max_proposals,
    )


def recall_rows(name: str, proposals, counts, gt_boxes) -> list[dict]:
    rows = []
    for count in RECALL_COUNTS:
        rows.append(
            {
                "data": name,
                "proposals": count,
                "mean_proposals": float(np.mean(np.minimum(counts, count))),
                **{
                    f"recall@{iou}": proposal_recall(
                        proposals, gt_boxes, iou, count
                    )
                    for iou in RECALL_IOUS
                },
            }
        )
    return rows


def coco_recall(args) -> tuple[list[dict], str]:
    """Proposal recall on COCO-MINI (images resized to 320 x 320)."""
    arrays, _ = load_coco_instance_arrays(
        args.coco_dir, image_size=320, max_instances=100
    )
    proposals, counts = cached_selective_search_proposals(
        arrays["images"],
        args.cache_dir / f"coco_mini_320_{args.mode}_1000.npz",
        mode=args.mode,
        max_proposals=max(RECALL_COUNTS),
    )
    instances = int(np.sum(arrays["classes"] >= 0))
    note = (
        f"{len(arrays['images'])} images resized to 320x320, "
        f"{instances} non-crowd instances"
    )
    return recall_rows("COCO-MINI", proposals, counts, arrays["boxes"]), note


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def model_inputs(name: str, images, proposals):
    if name == "faster_rcnn":
        return images
    return {"images": images, "proposals": proposals}


def train_model(name, args, train, train_proposals) -> tuple:
    model = build_model(name, args, len(DIGIT_CLASSES))
    steps = len(train["images"]) // args.batch_size
    model.compile(
        optimizer=keras.optimizers.Adam(
            cosine_decay(args.learning_rate, steps, args.epochs, alpha=0.01),
            clipnorm=10.0,
        ),
        jit_compile=True,
    )
    if model.jit_compile is not True:
        raise RuntimeError(f"{name}: XLA was not enabled")
    x = model_inputs(name, train["images"].astype("float32"), train_proposals)
    y = {"boxes": train["boxes"], "classes": train["classes"]}
    timer = EpochTimer()
    history = model.fit(
        x,
        y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=True,
        verbose=2,
        callbacks=[timer],
    )
    return model, timer.seconds, history.history["loss"]


def export(name, model, out: Path) -> str:
    if name == "faster_rcnn":
        return export_detector_for_serving(model, out / name / "serving")
    return export_proposal_detector_for_serving(model, out / name / "serving")


def predict_served(name, path, images, proposals) -> dict:
    reloaded = tf.saved_model.load(path)  # keep referenced (tf#34253)
    serve = reloaded.signatures["serving_default"]
    outputs: dict[str, list] = {}
    for start in range(0, len(images), 25):
        rows = slice(start, start + 25)
        kwargs = {"images": tf.constant(images[rows])}
        if name != "faster_rcnn":
            kwargs["proposals"] = tf.constant(proposals[rows])
        for key, value in serve(**kwargs).items():
            outputs.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(value) for key, value in outputs.items()}


def timed_calls(name, model, path, image, proposals) -> dict:
    """Batch-1 callables of one model: the XLA-compiled model and the
    serving graph (both without selective search), warmed up."""
    x = model_inputs(
        name,
        tf.constant(image[None].astype("float32")),
        tf.constant(proposals[None]),
    )
    xla = tf.function(
        lambda inputs: model(inputs, training=False), jit_compile=True
    )
    reloaded = tf.saved_model.load(path)
    serve = reloaded.signatures["serving_default"]
    kwargs = {"images": tf.constant(image[None])}
    if name != "faster_rcnn":
        kwargs["proposals"] = tf.constant(proposals[None])
    calls = {
        "xla_ms": lambda: xla(x)["num_detections"].numpy(),
        "serving_ms": lambda: serve(**kwargs)["num_detections"].numpy(),
        "_keep": reloaded,  # keep the SavedModel referenced (tf#34253)
    }
    for key in ("xla_ms", "serving_ms"):
        calls[key]()  # trace / compile
        calls[key]()
    return calls


def interleaved_timings(calls: dict, images, mode: str, runs: int) -> tuple:
    """Median ms of every model's calls and of selective search, timed in
    turn (round-robin, `runs` rounds) so that a busy machine slows them
    alike; returns (per-model timings, selective-search ms, the load
    averages before and after)."""
    load_before = os.getloadavg()[0]
    times = {(n, k): [] for n, c in calls.items() for k in c if k[0] != "_"}
    search = []
    for round_ in range(runs):
        image = images[round_ % len(images)]
        started = time.perf_counter()
        selective_search_proposals(image, mode, max(RECALL_COUNTS))
        search.append(time.perf_counter() - started)
        for (name, key), values in times.items():
            started = time.perf_counter()
            calls[name][key]()
            values.append(time.perf_counter() - started)
    timings = {name: {} for name in calls}
    for (name, key), values in times.items():
        timings[name][key] = 1000.0 * float(np.median(values))
    search_ms = 1000.0 * float(np.median(search))
    return timings, search_ms, (load_before, os.getloadavg()[0])


def evaluate_model(name, model, args, test, test_proposals) -> dict:
    path = export(name, model, args.output_dir)
    outputs = predict_served(name, path, test["images"], test_proposals)
    coco = evaluate_detections(
        test,
        outputs,
        image_size=test["images"].shape[1:3],
        category_names=DIGIT_CLASSES,
    )
    return {
        "ap50": coco["bbox"]["AP50"],
        "ap": coco["bbox"]["AP"],
        "serving": path,
    }


def format_tables(results: dict) -> str:
    """The Markdown tables of the results (what goes into the README)."""
    setup = results["setup"]
    ss_ms = results["selective_search_ms"]
    lines = [
        f"Digit scenes ({setup['image_size']}x{setup['image_size']}), "
        f"{setup['num_train']} train scenes, {setup['num_test']} test-pool "
        f"scenes ({setup['test_instances']} digits), {setup['epochs']} "
        f"epochs of batch {setup['batch_size']} for every model, the same "
        f"backbone ({setup['backbone']}); {setup['machine']}. Box AP "
        "(pycocotools) through each exported serving graph; ms per image "
        "at batch 1 (median of "
        f"{setup['timing_runs']} calls, every model and selective "
        "search timed in turn), model only; selective search "
        f"({setup['mode']} mode, OpenCV, one thread): "
        f"**{ss_ms:.0f} ms per image** on the CPU, added in the last "
        "column for the models that need it.",
        "",
        "| model | proposals | box AP50 | box AP | train s/epoch | "
        "ms/image XLA | ms/image serving | ms/image incl. proposals |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in results["models"].items():
        proposals = (
            "RPN (in the graph)"
            if name == "faster_rcnn"
            else f"selective search, {setup['num_proposals']} per image"
        )
        total = row["serving_ms"] + (0.0 if name == "faster_rcnn" else ss_ms)
        lines.append(
            f"| {TITLES[name]} | {proposals} | {row['ap50']:.3f} | "
            f"{row['ap']:.3f} | {row['epoch_seconds']:.1f} | "
            f"{row['xla_ms']:.1f} | {row['serving_ms']:.1f} | {total:.1f} |"
        )
    lines += [
        "",
        "Selective-search recall (fraction of ground-truth boxes with a "
        "proposal at IoU >= t among the first k):",
        "",
        "| data | k | mean proposals used | recall IoU 0.5 | recall IoU 0.7 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in results["recall"]:
        lines.append(
            f"| {row['data']} | {row['proposals']} | "
            f"{row['mean_proposals']:.1f} | {row['recall@0.5']:.3f} | "
            f"{row['recall@0.7']:.3f} |"
        )
    lines += ["", *(f"- {note}" for note in results["notes"])]
    return "\n".join(lines) + "\n"


def write_marked_block(path: Path, text: str) -> None:
    """Replaces the block between the markers of `path` with `text` (a
    missing file gets the block; a file without markers, an error)."""
    block = f"{START_MARKER}\n{text}{END_MARKER}"
    if not path.exists():
        path.write_text(block + "\n")
        return
    content = path.read_text()
    start, end = content.find(START_MARKER), content.find(END_MARKER)
    if start < 0 or end < start:
        raise SystemExit(
            f"{path} has no {START_MARKER} ... {END_MARKER} block to replace"
        )
    path.write_text(content[:start] + block + content[end + len(END_MARKER) :])


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.data_dir is None and not args.smoke:
        raise SystemExit("--data-dir (the folder of mnist_train.npz) is needed")
    if args.smoke:
        args.num_train = min(args.num_train, 8)
        args.num_test = min(args.num_test, 4)
        args.batch_size = min(args.batch_size, 4)
        args.num_proposals = min(args.num_proposals, 16)
        args.timing_runs = min(args.timing_runs, 2)
    args.epochs = args.epochs or (1 if args.smoke else 5)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    args.cache_dir = args.cache_dir or out / "proposals"
    readme = args.readme or out / "README.md"
    keras.utils.set_random_seed(args.seed)

    train = make_digit_scenes(args, "train", args.num_train)
    test = make_digit_scenes(args, "test", args.num_test)
    started = time.perf_counter()
    train_boxes, _ = split_proposals(args, "train", train, args.num_proposals)
    test_all, test_counts = split_proposals(
        args, "test", test, max(RECALL_COUNTS)
    )
    print(f"proposals ready in {time.perf_counter() - started:.0f} s")
    test_boxes = test_all[:, : args.num_proposals]
    recall = recall_rows("digit scenes", test_all, test_counts, test["boxes"])
    notes = [
        "Digit-scene recall on the test-pool scenes above; selective "
        "search finds few regions on a black canvas (mean "
        f"{float(np.mean(test_counts)):.1f} per scene), so k = 100, 300 "
        "and 1000 use all of them.",
    ]
    if args.coco_dir is not None:
        rows, note = coco_recall(args)
        recall += rows
        notes.append(f"COCO-MINI recall: {note}.")
    models, calls = {}, {}
    for name in args.models:
        keras.utils.set_random_seed(args.seed)
        model, seconds, losses = train_model(name, args, train, train_boxes)
        row = evaluate_model(name, model, args, test, test_boxes)
        # The first epoch includes XLA compilation: report the others.
        steady = seconds[1:] or seconds
        row.update(
            epoch_seconds=float(np.median(steady)),
            first_epoch_seconds=seconds[0],
            final_loss=float(losses[-1]),
            parameters=int(model.count_params()),
        )
        models[name] = row
        print(name, json.dumps(row))
        calls[name] = timed_calls(
            name, model, row["serving"], test["images"][0], test_boxes[0]
        )
    timings, ss_ms, load = interleaved_timings(
        calls, test["images"], args.mode, args.timing_runs
    )
    for name, row in models.items():
        row.update(timings[name])

    kwargs = shared_kwargs(args.image_size, args.num_proposals, args.smoke)
    filters = "-".join(str(f) for f in kwargs["backbone_kwargs"]["filters"])
    results = {
        "command": "python examples/rcnn_progression.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "setup": {
            "image_size": args.image_size,
            "num_train": len(train["images"]),
            "num_test": len(test["images"]),
            "test_instances": int(np.sum(test["classes"] >= 0)),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "num_proposals": args.num_proposals,
            "mode": args.mode,
            "timing_runs": args.timing_runs,
            "backbone": f"vgg_small {filters} cut at stride 8",
            "machine": f"{os.cpu_count()} CPU cores"
            + (", GPU" if tf.config.list_physical_devices("GPU") else "")
            + f", load average {load[0]:.1f} / {load[1]:.1f} before / "
            "after the timings",
        },
        "selective_search_ms": ss_ms,
        "models": models,
        "recall": recall,
        "notes": notes
        + [
            "Train s/epoch: median over the epochs after the first (which "
            "adds XLA compilation); R-CNN's training runs the CNN on "
            f"{kwargs['box_batch_size_per_image']} warped 32x32 RoIs per "
            "scene, its inference on every proposal.",
            f"Produced by `{'python examples/rcnn_progression.py'} "
            + " ".join(sys.argv[1:] if argv is None else argv)
            + "`.",
        ],
    }
    with open(out / "results.json", "w") as file:
        json.dump(results, file, indent=2)
    tables = format_tables(results)
    (out / "results.md").write_text(tables)
    write_marked_block(readme, tables)
    print(tables)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
