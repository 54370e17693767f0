"""Runs example `main`s in one process whose CPU is split into logical
devices first (pytest's own process has initialised TF's devices already).

    python tests/examples/distributed_runner.py --logical-cpus 2 \\
        --output-dir OUT [--only NAME ...] -- EXTRA_FLAGS

Each example trains its smoke run with `--strategy mirrored` (plus the
extra flags) into OUT/<name>; a line `RESULT <name> <rc>` per example.
"""

import argparse
import os
import sys
import traceback
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# name: the smoke argv, before --output-dir (cheapest variants).
SMOKE_ARGV = {
    # translate first: after several other examples in the same process its
    # export fails tracing `model.encode` (an autograph cache clash of the
    # shared process, not of the strategy: alone it passes).
    "translate": ["train", "--smoke", "--epochs", "1"],
    "caption_digits": ["--smoke", "--modes", "soft"],
    "char_rnn": ["--smoke"],
    "draw_mnist": ["--smoke"],
    "graves_window": ["--smoke"],
    "instance_segmentation": ["train", "--smoke"],
    "segmentation": ["train", "--smoke"],
    "stn_cluttered_mnist": ["--smoke", "--models", "st_cnn"],
    "stn_mnist_addition": ["--smoke"],
    "overfeat_digits": ["--smoke"],
    "yolo_digits": ["train", "--smoke"],
    "localization": ["train", "--smoke"],
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logical-cpus", type=int, default=2)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--only", nargs="+", default=list(SMOKE_ARGV))
    parser.add_argument("extra", nargs="*")
    args = parser.parse_args()

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus
    )
    from tests.examples.helpers import load_example

    failures = 0
    for name in args.only:
        argv = [
            *SMOKE_ARGV[name],
            "--strategy",
            "mirrored",
            "--output-dir",
            str(args.output_dir / name),
            *args.extra,
        ]
        try:
            rc = load_example(name).main(argv)
        except BaseException:  # noqa: BLE001 - report and go on
            traceback.print_exc()
            rc = "error"
        print(f"RESULT {name} {rc}", flush=True)
        failures += rc != 0
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
