"""Shared checks of the export tests: the ways TF Serving tools read a
SavedModel (saved_model_cli, the TF1 loader) and the variable storage."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf


def saved_model_cli(*args: str) -> str:
    """Runs `saved_model_cli` in a fresh process; returns its stdout."""
    return subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
        + list(args),
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def saved_model_cli_run(path: str, *input_args: str) -> str:
    """`saved_model_cli run` of `serving_default` with the given input
    arguments (`--inputs ...` or `--input_exprs ...`)."""
    return saved_model_cli(
        "run",
        "--dir",
        path,
        "--tag_set",
        "serve",
        "--signature_def",
        "serving_default",
        *input_args,
    )


def run_with_v1_loader(path: str, input_name: str, value, dtype):
    """Runs `serving_default` by tensor names under the `serve` tag, as TF
    Serving does; checks the input dtype; returns the outputs by name."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        signature = meta.signature_def["serving_default"]
        assert signature.inputs[input_name].dtype == dtype.as_datatype_enum
        fetches = {k: v.name for k, v in signature.outputs.items()}
        return sess.run(fetches, {signature.inputs[input_name].name: value})


def stored_variable_bytes(path: str) -> int:
    """Bytes of the SavedModel's variable shards."""
    data = tf.io.gfile.glob(f"{path}/variables/variables.data-*")
    return sum(tf.io.gfile.stat(f).length for f in data)


def warmup_requests(path: str) -> list:
    """The `PredictRequest`s of `assets.extra/tf_serving_warmup_requests`,
    parsed as TF Serving replays them (TFRecord of `PredictionLog`)."""
    from tensorflow_serving.apis import prediction_log_pb2

    warmup = tf.io.gfile.join(
        path, "assets.extra", "tf_serving_warmup_requests"
    )
    return [
        prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        for record in tf.data.TFRecordDataset(warmup).as_numpy_iterator()
    ]


_FRESH_PROCESS_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
path, signature, source, target = sys.argv[1:]
inputs = dict(np.load(source, allow_pickle=True))
model = tf.saved_model.load(path)
outputs = model.signatures[signature](
    **{name: tf.constant(value) for name, value in inputs.items()}
)
np.savez(target, **{name: value.numpy() for name, value in outputs.items()})
"""


def serve_in_fresh_process(
    path: str, signature: str = "serving_default", **inputs
) -> dict:
    """Loads the SavedModel in a new Python process (nothing of this one's
    state), runs `signature` on `inputs` and returns its outputs as NumPy
    arrays (strings as bytes objects)."""
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "inputs.npz")
        target = os.path.join(folder, "outputs.npz")
        np.savez(source, **{k: np.asarray(v) for k, v in inputs.items()})
        subprocess.run(
            [
                sys.executable,
                "-c",
                _FRESH_PROCESS_SCRIPT,
                path,
                signature,
                source,
                target,
            ],
            check=True,
            capture_output=True,
        )
        with np.load(target, allow_pickle=True) as outputs:
            return dict(outputs)
