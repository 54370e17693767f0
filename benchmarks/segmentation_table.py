"""Every segmentation model of the package, trained under one budget.

Trains FCN-32s, FCN-16s, FCN-8s, DeconvNet / SegNet, the multi-scale
network (Farabet et al.), recurrent refinement (Pinheiro and Collobert)
and the hypercolumn network (Hariharan et al.) on Oxford-IIIT pets and
CamVid under the same budget (train steps, batch size, image size, AdamW
with cosine decay, flip/scale augmentation of the loaders, seed, one
XLA-compiled `train_on_batch` per step), and measures for each:

- validation mean IoU and pixel accuracy (`metrics.segmentation_metrics`,
  void pixels skipped) on the held-out split, resized to the training
  size;
- parameters;
- ms per train step with and without XLA: `train_on_batch` (forward,
  loss, gradient, optimizer update) on one training batch, median of
  `--timed-steps` calls after one warm-up call, as
  `bench_train_step.py` times it (`_timing.time_call`); the XLA time is
  the trained model's own compiled step, the other a recompile with
  `jit_compile=False`;
- export size: the bytes of the SavedModel written by
  `export.export_for_serving` (the segmentation serving contract) into a
  temporary folder.

It writes the tables (with the machine, date, load average and budget) to
`--output` (default benchmarks/SEGMENTATION.md) and between the
`<!-- segmentation-table:begin -->` and `<!-- segmentation-table:end -->`
markers of `--readme` (default README.md). Nothing in them is typed by
hand: rerun to refresh.

`--quick` trains 2 steps of tiny versions of the models on the embedded
samples (sample_data/) resized to 32x32; about 15 s of CPU per model and
dataset, mostly XLA compilation (3-4 minutes for all 14 on 2 cores). It
writes only where `--output` / `--readme` say.

Usage:
    python benchmarks/segmentation_table.py [--steps 120] [--batch-size 4]
        [--pets-size 128] [--camvid-size 96x128] [--models ...]
    python benchmarks/segmentation_table.py --quick --output /tmp/t.md \\
        --readme /tmp/README.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
for _folder in (HERE, ROOT / "examples"):  # _timing, report; the examples
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from _timing import set_process_defaults  # noqa: E402

set_process_defaults()  # before TensorFlow is imported

import keras  # noqa: E402
from _timing import time_call  # noqa: E402
from _timing import write_json  # noqa: E402
from report import _cpu_model  # noqa: E402
from report import _table  # noqa: E402
from report import _utc  # noqa: E402
from report import _utc_now  # noqa: E402
from report import _versions  # noqa: E402
from report import update_readme  # noqa: E402
from segmentation import DATASETS  # noqa: E402
from segmentation import _image_size  # noqa: E402

from keras_segattn import export  # noqa: E402
from keras_segattn import losses  # noqa: E402
from keras_segattn import metrics  # noqa: E402
from keras_segattn import models  # noqa: E402

from _common import cosine_decay  # noqa: E402

BEGIN = "<!-- segmentation-table:begin -->"
END = "<!-- segmentation-table:end -->"
DATASET_TITLES = {"pets": "Oxford-IIIT pets", "camvid": "CamVid"}
# The tiny widths of --quick (a VGG of one 3x3 convolution per block).
_TINY_VGG = {"filters": (4, 8, 8, 16, 16), "convs_per_stage": 1}


def _fcn(variant):
    def build(num_classes, image_shape, quick):
        preset = "fcn8s_tiny" if quick else f"fcn{variant}_small"
        return models.build_segmentation_model(
            preset, num_classes, variant=variant, image_shape=image_shape
        )

    return build


def _deconvnet(num_classes, image_shape, quick):
    preset = "deconvnet_tiny" if quick else "deconvnet_small"
    return models.build_segmentation_model(
        preset, num_classes, image_shape=image_shape
    )


def _multi_scale(num_classes, image_shape, quick):
    kwargs = {"filters": (4, 8, 8)} if quick else {}
    return models.build_multi_scale_segmenter(
        num_classes, image_shape=image_shape, **kwargs
    )


def _recurrent_refinement(num_classes, image_shape, quick):
    kwargs = {"steps": 2, "filters": (4, 8)} if quick else {}
    return models.build_recurrent_refinement_segmenter(
        num_classes, image_shape=image_shape, **kwargs
    )


def _hypercolumn(num_classes, image_shape, quick):
    kwargs = {"backbone_kwargs": _TINY_VGG, "head_filters": 8} if quick else {}
    return models.build_hypercolumn_segmenter(
        num_classes, image_shape=image_shape, **kwargs
    )


# name: (row label, configuration, builder(num_classes, image_shape,
# quick) -> the training model). The configurations are the package's
# presets / defaults (not --quick's tiny ones).
MODELS = {
    "fcn32s": ("FCN-32s", "`fcn32s_small`", _fcn("32s")),
    "fcn16s": ("FCN-16s", "`fcn16s_small`", _fcn("16s")),
    "fcn8s": ("FCN-8s", "`fcn8s_small`", _fcn("8s")),
    "deconvnet": ("DeconvNet / SegNet", "`deconvnet_small`", _deconvnet),
    "multi_scale": (
        "Multi-scale (Farabet)",
        "`build_multi_scale_segmenter` defaults: scales 1, ½, ¼, "
        "filters 16-32-64",
        _multi_scale,
    ),
    "recurrent_refinement": (
        "Recurrent refinement (Pinheiro)",
        "`build_recurrent_refinement_segmenter` defaults: 3 steps, "
        "filters 16-32-32, loss on every step",
        _recurrent_refinement,
    ),
    "hypercolumn": (
        "Hypercolumn (Hariharan)",
        "`build_hypercolumn_segmenter` defaults: `vgg_small`, pool2-4, "
        "64-wide head",
        _hypercolumn,
    ),
}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1, got {text!r}"
        )
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=list(MODELS),
        default=list(MODELS),
        metavar="MODEL",
        help=f"models to train, of {', '.join(MODELS)} (default: all)",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=list(DATASET_TITLES),
        default=list(DATASET_TITLES),
        help="datasets (default: both)",
    )
    parser.add_argument(
        "--pets-dir",
        type=Path,
        default=None,
        help="Oxford-IIIT pets folder (default: ../shared/data/oxford_pets "
        "next to the checkout; --quick: sample_data/oxford_pets)",
    )
    parser.add_argument(
        "--camvid-dir",
        type=Path,
        default=None,
        help="CamVid folder (default: ../shared/data/camvid next to the "
        "checkout; --quick: sample_data/camvid)",
    )
    parser.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="train steps per model and dataset (default 120; --quick 2)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="batch size (default 4; --quick 2)",
    )
    parser.add_argument(
        "--pets-size",
        type=_image_size,
        default=None,
        help="pets training size, N or HxW (default 128; --quick 32)",
    )
    parser.add_argument(
        "--camvid-size",
        type=_image_size,
        default=None,
        help="CamVid training size, N or HxW (default 96x128; --quick 32)",
    )
    parser.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=2e-3,
        help="peak AdamW learning rate, cosine decay to 2%% (default 2e-3)",
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=1e-4,
        help="AdamW weight decay (default 1e-4)",
    )
    parser.add_argument(
        "--timed-steps",
        type=_positive_int,
        default=None,
        help="timed train steps, after one warm-up (default 3; --quick 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (0)")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="Markdown report (default benchmarks/SEGMENTATION.md; "
        "--quick: none)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="README whose table markers are replaced (default README.md; "
        "--quick: none)",
    )
    parser.add_argument(
        "--no-readme", action="store_true", help="leave the README alone"
    )
    parser.add_argument(
        "--json", type=Path, help="also write the rows and settings here"
    )
    parser.add_argument(
        "--command",
        default=None,
        help="the command named in the report (default: this one)",
    )
    parser.add_argument(
        "--from-json",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="train nothing: render the tables from the rows that runs with "
        "the same budget wrote with --json (e.g. one run per dataset)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 steps of tiny models on the embedded samples at 32x32",
    )
    return parser


def _resolve(args, parser) -> None:
    """Fills the defaults that depend on --quick and checks the paths
    before anything is trained."""
    quick = args.quick
    defaults = {
        "steps": 2 if quick else 120,
        "batch_size": 2 if quick else 4,
        "pets_size": (32, 32) if quick else (128, 128),
        "camvid_size": (32, 32) if quick else (96, 128),
        "timed_steps": 1 if quick else 3,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    samples = ROOT / "sample_data"
    if args.pets_dir is None:
        args.pets_dir = (
            samples / "oxford_pets" if quick else SHARED_DATA / "oxford_pets"
        )
    if args.camvid_dir is None:
        args.camvid_dir = (
            samples / "camvid" if quick else SHARED_DATA / "camvid"
        )
    for dataset in args.datasets:
        folder = getattr(args, f"{dataset}_dir")
        if not folder.is_dir():
            parser.error(
                f"--{dataset}-dir: {folder} is not a folder (expected the "
                f"{DATASET_TITLES[dataset]} layout of ../shared/data)"
            )
    if not quick:
        args.output = args.output or HERE / "SEGMENTATION.md"
        if args.readme is None and not args.no_readme:
            args.readme = ROOT / "README.md"
    if args.no_readme:
        args.readme = None
    if args.readme is not None:
        try:
            text = args.readme.read_text()
        except OSError as error:
            parser.error(f"--readme: cannot read {args.readme}: {error}")
        if BEGIN not in text or END not in text:
            parser.error(
                f"--readme: {args.readme} has no {BEGIN} ... {END} markers "
                "to replace"
            )
    if args.output is not None and not args.output.parent.is_dir():
        parser.error(f"--output: {args.output.parent} is not a folder")
    args.models = list(dict.fromkeys(args.models))
    # The tables keep the canonical order (pets, CamVid).
    args.datasets = [d for d in DATASET_TITLES if d in args.datasets]


def _datasets(args, dataset):
    """(train, validation) of float images 0..255 and int masks."""
    spec = DATASETS[dataset]
    data_dir = getattr(args, f"{dataset}_dir")
    size = getattr(args, f"{dataset}_size")
    train_split, val_split = spec["splits"]
    train = spec["loader"](
        data_dir,
        train_split,
        image_size=size,
        batch_size=args.batch_size,
        training=True,
        seed=args.seed,
        cache=True,
    )
    val = spec["loader"](
        data_dir,
        val_split,
        image_size=size,
        batch_size=args.batch_size,
        training=False,
        drop_remainder=False,
        cache=True,
    )
    return train, val


def _targets(model, masks):
    """`masks` for every output of `model` (one loss per refinement step)."""
    if isinstance(model.output, dict):
        return {name: masks for name in model.output}
    return masks


def _compile(model, loss, args, jit_compile):
    schedule = cosine_decay(args.learning_rate, args.steps, 1, alpha=0.02)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay)
    if isinstance(model.output, dict):
        loss = {name: loss for name in model.output}
    model.compile(optimizer=optimizer, loss=loss, jit_compile=jit_compile)
    if model.jit_compile is not jit_compile:
        raise RuntimeError(
            f"{model.name}: asked for jit_compile={jit_compile}, Keras "
            f"resolved it to {model.jit_compile}."
        )


def _folder_bytes(folder) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def measure(name, dataset, args, train_ds, val_ds) -> dict:
    """Trains model `name` on `dataset` and returns its row."""
    spec = DATASETS[dataset]
    size = getattr(args, f"{dataset}_size")
    num_classes, void = spec["num_classes"], spec["void_label"]
    keras.utils.set_random_seed(args.seed)
    model = MODELS[name][2](num_classes, (*size, 3), args.quick)
    loss = losses.segmentation_loss(void_label=void)
    _compile(model, loss, args, jit_compile=True)
    # One `train_on_batch` per step runs what `fit` runs per step, and the
    # XLA timing below reuses the compiled step instead of compiling again.
    start = time.perf_counter()
    for images, masks in train_ds.repeat().take(args.steps):
        model.train_on_batch(images, _targets(model, masks))
    train_s = time.perf_counter() - start

    # A separate single-output view (shared weights) to evaluate and
    # export: compiling `model` itself would replace its XLA train step.
    inference = models.recurrent_refinement_inference_model(model)
    inference.compile(
        loss=loss,
        metrics=metrics.segmentation_metrics(num_classes, void_label=void),
        jit_compile=False,
    )
    results = inference.evaluate(val_ds, return_dict=True, verbose=0)
    with tempfile.TemporaryDirectory() as folder:
        path = export.export_for_serving(
            inference,
            folder,
            version=1,
            label_offset=spec["label_offset"],
            inference_size=size,
        )
        export_bytes = _folder_bytes(path)

    # Timing last: the timed steps train the model further.
    batch = (images, _targets(model, masks))
    _, xla_ms = time_call(
        model.train_on_batch, batch, args.timed_steps, warmup=1
    )
    _compile(model, loss, args, jit_compile=False)
    _, no_xla_ms = time_call(
        model.train_on_batch, batch, args.timed_steps, warmup=1
    )
    return {
        "model": name,
        "dataset": dataset,
        "mean_iou": float(results["mean_iou"]),
        "pixel_accuracy": float(results["pixel_accuracy"]),
        "parameters": int(model.count_params()),
        "no_xla_ms": no_xla_ms,
        "xla_ms": xla_ms,
        "export_bytes": export_bytes,
        "train_s": train_s,
    }


def _dataset_table(rows, dataset) -> list[str]:
    header = [
        "model",
        "val mean IoU",
        "val pixel accuracy",
        "parameters",
        "ms/step no XLA",
        "ms/step XLA",
        "export MB",
        "train s",
    ]
    body = [
        [
            MODELS[r["model"]][0],
            f"{r['mean_iou']:.3f}",
            f"{r['pixel_accuracy']:.3f}",
            f"{r['parameters']:,}",
            f"{r['no_xla_ms']:,.1f}",
            f"{r['xla_ms']:,.1f}",
            f"{r['export_bytes'] / 1e6:.2f}",
            f"{r['train_s']:.0f}",
        ]
        for r in rows
        if r["dataset"] == dataset
    ]
    return _table(header, body)


def _load_text(runs) -> str:
    """The load averages of the runs, and whether the machine was loaded."""
    cores = runs[0]["cores"]
    parts, loaded = [], False
    for run in runs:
        titles = " and ".join(DATASET_TITLES[d] for d in run["datasets"])
        if run.get("load_start") is None:
            parts.append(f"{titles} run: load average not recorded")
            continue
        parts.append(
            f"{titles} run: load average {run['load_start']:.1f} at start "
            f"and {run['load_end']:.1f} at end"
        )
        loaded |= max(run["load_start"], run["load_end"]) > cores
    note = " (a shared, loaded machine: times are noisy)" if loaded else ""
    return "; ".join(parts) + note


def _caption(args, runs) -> str:
    sizes = ", ".join(
        f"{DATASET_TITLES[d]} {'×'.join(map(str, getattr(args, f'{d}_size')))}"
        for d in args.datasets
    )
    data = ", ".join(
        f"{DATASET_TITLES[d]} from `{getattr(args, f'{d}_dir')}`"
        for d in args.datasets
    )
    tiny = " **--quick: tiny models, not the presets below.**"
    return (
        f"Budget, the same for every model: {args.steps} train steps of "
        f"batch {args.batch_size} at {sizes} px (each dataset's train "
        "split, loader flip/scale augmentation), AdamW (peak learning rate "
        f"{args.learning_rate:g}, cosine decay, weight decay "
        f"{args.weight_decay:g}), XLA, seed {args.seed}; data: {data}. "
        "Validation mean IoU and pixel accuracy on the held-out split "
        "resized to the training size, void pixels skipped. ms/step: "
        "`train_on_batch` (forward, loss, gradient, AdamW update), median "
        f"of {args.timed_steps} after a warm-up, {runs[0]['cpu']}, "
        f"{runs[0]['cores']} cores; {_load_text(runs)}. Export MB: the "
        "SavedModel written by `export_for_serving`. "
        "Parameters, times and export size are for each dataset's class "
        "count. train s: wall time of the training, XLA compilation "
        "included." + (tiny if args.quick else "")
    )


def _generated_by(runs, command) -> str:
    if len(runs) == 1 and runs[0].get("command") == command:
        return f"Generated by `{command}` on {runs[0]['date']}"
    sources = "; ".join(
        f"`{run['command']}` on {run['date']}"
        if run.get("command")
        else f"a run whose command was not recorded (rows written "
        f"{run['date']})"
        for run in runs
    )
    return f"Generated by `{command}` from the rows of {sources}"


def render(rows, args, runs, command) -> tuple[str, str]:
    """(report file text, README block) of `rows`, measured by `runs`
    (one machine dict per run) and rendered by `command`."""
    tables = []
    for dataset in args.datasets:
        tables += [
            "",
            f"**{DATASET_TITLES[dataset]}**",
            "",
            *_dataset_table(rows, dataset),
        ]
        measured = {r["model"] for r in rows if r["dataset"] == dataset}
        missing = [MODELS[n][0] for n in args.models if n not in measured]
        if missing:
            tables += [
                "",
                f"No {DATASET_TITLES[dataset]} row (not measured): "
                + ", ".join(missing)
                + ".",
            ]
    configs = _table(
        ["model", "configuration"],
        [[MODELS[n][0], MODELS[n][1]] for n in args.models],
    )
    caption = _caption(args, runs)
    machine = runs[0]
    report = [
        "# Segmentation models under one budget",
        "",
        f"{_generated_by(runs, command)} "
        "(benchmarks/segmentation_table.py), "
        f"{machine['cpu']}, {machine['cores']} cores, "
        f"{machine['platform']}; {machine['versions']}. Do not edit: "
        "rerun to refresh.",
        "",
        caption,
        *tables,
        "",
        "Configurations:",
        "",
        *configs,
        "",
    ]
    readme = [
        BEGIN,
        f"{_generated_by(runs, command)} (copied into "
        "`benchmarks/SEGMENTATION.md` with the configurations); do not edit "
        "by hand. " + caption,
        *tables,
        END,
    ]
    return "\n".join(report), "\n".join(readme)


# The settings that make a budget: runs merged by --from-json must agree.
BUDGET_KEYS = (
    "steps",
    "batch_size",
    "pets_size",
    "camvid_size",
    "learning_rate",
    "weight_decay",
    "timed_steps",
    "seed",
    "quick",
)


def _read_runs(paths, parser):
    """(settings, rows, runs) of the --json files `paths`; exits with an
    error naming the file on an unreadable file, another budget or a
    repeated row."""
    settings, rows, runs, seen = None, [], [], set()
    for path in paths:
        try:
            payload = json.loads(path.read_text())
            budget = {k: payload["settings"][k] for k in BUDGET_KEYS}
            keys = [(r["dataset"], r["model"]) for r in payload["rows"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(
                f"--from-json: cannot read the rows of {path}: {error!r}"
            )
        if settings is None:
            settings, first, first_budget = payload["settings"], path, budget
        elif budget != first_budget:
            parser.error(
                f"--from-json: {path} has another budget than {first}: "
                f"{budget} != {first_budget}"
            )
        for key in keys:
            if key in seen or key[1] not in MODELS:
                parser.error(
                    f"--from-json: {path} repeats or has an unknown row {key}"
                )
            seen.add(key)
        rows += payload["rows"]
        machine = payload.get("machine") or {
            "date": _utc(path.stat().st_mtime),
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "versions": _versions(),
        }
        datasets = {dataset for dataset, _ in keys}
        machine["datasets"] = [d for d in DATASET_TITLES if d in datasets]
        runs.append(machine)
    args = argparse.Namespace(**settings)
    for key in ("pets_size", "camvid_size"):
        setattr(args, key, tuple(getattr(args, key)))
    names = {model for _, model in seen}
    args.models = [n for n in MODELS if n in names]
    datasets = {dataset for dataset, _ in seen}
    args.datasets = [d for d in DATASET_TITLES if d in datasets]
    return args, rows, runs


def _write(report, block, args) -> None:
    print(report)
    if args.output is not None:
        args.output.write_text(report)
        print(f"wrote {args.output}")
    if args.readme is not None:
        update_readme(args.readme, block, begin=BEGIN, end=END)
        print(f"updated the segmentation table in {args.readme}")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _resolve(args, parser)
    command = args.command or " ".join(
        ["python benchmarks/segmentation_table.py"]
        + (sys.argv[1:] if argv is None else list(argv))
    )
    if args.from_json:
        settings, rows, runs = _read_runs(args.from_json, parser)
        _write(*render(rows, settings, runs, command), args)
        return 0
    machine = {
        "datasets": args.datasets,
        "command": command,
        "date": _utc_now(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": _versions(),
        "load_start": os.getloadavg()[0],
    }
    rows = []
    for dataset in args.datasets:
        train_ds, val_ds = _datasets(args, dataset)
        for name in args.models:
            row = measure(name, dataset, args, train_ds, val_ds)
            rows.append(row)
            print(
                f"{dataset:<7} {name:<21} mIoU {row['mean_iou']:.3f} "
                f"acc {row['pixel_accuracy']:.3f} "
                f"params {row['parameters']:>10,} "
                f"no XLA {row['no_xla_ms']:8.1f} ms XLA {row['xla_ms']:8.1f}"
                f" ms export {row['export_bytes'] / 1e6:6.2f} MB "
                f"train {row['train_s']:5.0f} s",
                flush=True,
            )
            machine["load_end"] = os.getloadavg()[0]
            if args.json:
                write_json(
                    args.json,
                    {
                        "settings": _settings(args),
                        "machine": machine,
                        "rows": rows,
                    },
                )
    machine["load_end"] = os.getloadavg()[0]
    _write(*render(rows, args, [machine], command), args)
    return 0


def _settings(args) -> dict:
    """The settings of a run, JSON-ready."""
    return {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
    }


if __name__ == "__main__":
    raise SystemExit(main())
