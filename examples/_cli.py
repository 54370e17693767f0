"""Command-line pieces the example scripts share, importable without
TensorFlow: `python examples/<name>.py --help` parses its arguments with
these before the script imports keras, TensorFlow or keras_segattn.

The scripts build their parser first and, when run as a script, parse
`sys.argv` before their heavy imports:

    if __name__ == "__main__":
        build_parser().parse_args()  # --help and bad flags exit here

`main(argv)` parses again, so importing a script (the tests) and calling
`main` works as before.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# keras_segattn.distribute.STRATEGIES, repeated here because importing
# keras_segattn loads TensorFlow (tests/examples/test_cli.py keeps the two
# equal).
STRATEGIES = ("default", "mirrored", "multi-worker", "tpu")

# Environment variables the scripts set before TensorFlow is imported,
# unless the environment sets them already:
# - Keras on TensorFlow, without TensorFlow's C++ info logs;
# - TensorFlow's pooling (BFC) allocator for CPU memory instead of
#   malloc. An XLA step takes its temporaries as one buffer per call (85 MB
#   for RoIPool's training path at 64 boxes per image), which malloc maps
#   fresh, so every call faults all its pages in again; the pool keeps
#   them. On the 2-core CPU VM of benchmarks/REPORT.md: that RoIPool step
#   64 -> 18 ms, grid_sample at B16 128x128x32 151 -> 43 ms, the FCN-8s
#   XLA train step ~25 % faster; no effect on GPU memory.
PROCESS_DEFAULTS = {
    "KERAS_BACKEND": "tensorflow",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_CPU_ALLOCATOR_USE_BFC": "true",
}


def set_process_defaults() -> None:
    """Sets `PROCESS_DEFAULTS` the environment leaves unset; call it before
    TensorFlow is imported (its allocator reads the setting once)."""
    for name, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(name, value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks (the scripts' docstrings) and
    appends `(default: ...)` to every option that has a default its help
    does not already state (as `argparse.ArgumentDefaultsHelpFormatter`,
    without repeating a default written by hand or printing `None`)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            "%(default)" in text
            or "default" in text.lower()
            or action.default in (None, argparse.SUPPRESS)
            or (  # store_true / store_false flags
                action.nargs == 0
                and not isinstance(action, argparse.BooleanOptionalAction)
            )
        ):
            return text
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` with `HelpFormatter` by default, which its
    sub-command parsers inherit (`add_subparsers` makes them of this
    class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _backup_freq(text: str):
    if text == "epoch":
        return "epoch"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"expected 'epoch' or a positive number of batches, got {text!r}"
        )
    return value


def _tf_config(text: str) -> dict:
    # Only when the flag is given: keras_segattn loads TensorFlow.
    from keras_segattn import distribute

    try:
        return distribute.parse_tf_config(text)
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_distribution_arguments(parser) -> None:
    """Adds `--strategy`, `--tf-config`, `--logical-cpus`, `--backup-dir`
    and `--backup-freq` to `parser` (in their own help group)."""
    group = parser.add_argument_group(
        "distribution and fault tolerance",
        "--batch-size is the global batch: each of the strategy's replicas "
        "gets batch-size / replicas examples (it must divide evenly).",
    )
    group.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="default",
        help="tf.distribute strategy that builds and trains the model: "
        "default (none), mirrored (the visible GPUs, else the logical CPU "
        "devices), multi-worker (MultiWorkerMirroredStrategy, cluster from "
        "--tf-config or TF_CONFIG), tpu (TPUStrategy; fails clearly "
        "without a TPU). Default: %(default)s",
    )
    group.add_argument(
        "--tf-config",
        type=_tf_config,
        default=None,
        help='multi-worker: the cluster as JSON, e.g. \'{"cluster": '
        '{"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}, "task": '
        '{"type": "worker", "index": 0}}\' (default: the TF_CONFIG '
        "environment variable)",
    )
    group.add_argument(
        "--logical-cpus",
        type=int,
        default=None,
        metavar="N",
        help="split the CPU into N logical devices before TensorFlow "
        "initialises them, so that --strategy mirrored has N replicas on "
        "a machine without GPUs (for testing; default: off)",
    )
    group.add_argument(
        "--backup-dir",
        type=Path,
        default=None,
        help="keras.callbacks.BackupAndRestore directory: the training "
        "state (weights, optimizer, epoch) is saved there and a restarted "
        "run with the same arguments resumes from it; deleted when fit "
        "ends (default: off)",
    )
    group.add_argument(
        "--backup-freq",
        type=_backup_freq,
        default="epoch",
        help="with --backup-dir: 'epoch' or every N batches. A restart "
        "resumes at the start of the epoch after the last backup's epoch "
        "count, so 'epoch' resumes exactly (default: %(default)s)",
    )
