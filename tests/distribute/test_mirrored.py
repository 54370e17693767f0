"""Every model family trains the same under `MirroredStrategy` on two
logical CPUs as on one device with the same global batch.

Logical devices must be configured before TensorFlow initialises its
devices, which an earlier test in this process has done, so the fits run
in `tests/distribute/_worker.py` subprocesses (see its docstring for what
is fixed: noise, dropout, batch-norm statistics). The three groups start
together, in parallel, when the first test here needs a result; each
prints one `RESULT <json>` line per family.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
GROUPS = {
    "keras_losses_and_draw": (
        "helpers",
        "fcn",
        "fcn_class_weights",
        "fcn_jit",
        "translator",
        "draw",
    ),
    "captioner": ("captioner_soft", "captioner_hard"),
    "captioner_baselines": (
        "captioner_hard_self_critical",
        "captioner_hard_learned",
    ),
    "detector": ("faster_rcnn", "fast_rcnn"),
}
TIMEOUT_S = 300
STEPS = 2  # _worker.STEPS, without importing TensorFlow's device setup here
# |Δw mirrored − Δw single| / |Δw single| after STEPS SGD steps; float32
# all-reduce order gives ~1e-6, a per-replica mean instead of a share of
# the global one gives 0.08 (Mask R-CNN) to 1.0 (DRAW).
TOLERANCE = 1e-4


class _Groups:
    """Starts every group's worker at once; `result(family)` waits for the
    family's group and returns its parsed line."""

    def __init__(self, directory: Path):
        env = {
            **os.environ,
            "KERAS_BACKEND": "tensorflow",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        self.processes, self.logs, self.results = {}, {}, {}
        for group, families in GROUPS.items():
            log = directory / f"{group}.log"
            self.logs[group] = log
            with open(log, "w") as out:
                command = [sys.executable, "-m", "tests.distribute._worker"]
                self.processes[group] = subprocess.Popen(
                    [*command, *families],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )

    def result(self, family: str) -> dict:
        group = next(g for g, names in GROUPS.items() if family in names)
        if group not in self.results:
            process = self.processes[group]
            try:
                process.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            text = self.logs[group].read_text()
            self.results[group] = {
                line["family"]: line
                for line in (
                    json.loads(row[len("RESULT ") :])
                    for row in text.splitlines()
                    if row.startswith("RESULT ")
                )
            }
            self.results[group]["_log"] = text[-4000:]
        results = self.results[group]
        if family not in results:
            pytest.fail(f"no result for {family}; log tail:\n{results['_log']}")
        result = results[family]
        if "crashed" in result:
            pytest.fail(f"{family} crashed:\n{result['crashed']}")
        return result

    def close(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    started = _Groups(tmp_path_factory.mktemp("mirrored"))
    yield started
    started.close()


def check_same_training(result):
    """Same update and the same reported metrics as one device."""
    assert result["relative_error"] < TOLERANCE, result
    np.testing.assert_allclose(result["ratio"], 1.0, atol=TOLERANCE)
    assert result["cosine"] > 1.0 - TOLERANCE
    single, mirrored = result["single_logs"], result["mirrored_logs"]
    assert sorted(single) == sorted(mirrored)
    for name in single:
        np.testing.assert_allclose(
            mirrored[name], single[name], rtol=1e-5, err_msg=name
        )


def test_helpers_in_replicas(groups):
    result = groups.result("helpers")
    # Replica 0: values [1, 2], weights [1, 0]; replica 1: [3, 4], [1, 1].
    np.testing.assert_allclose(result["share"], [1 / 3, 7 / 3], rtol=1e-6)
    np.testing.assert_allclose(sum(result["share"]), 8 / 3, rtol=1e-6)
    np.testing.assert_allclose(
        result["share_gradient"], [[1 / 3, 0], [1 / 3, 1 / 3]], rtol=1e-6
    )
    np.testing.assert_allclose(result["global_mean"], [8 / 3] * 2, rtol=1e-6)
    assert result["count"] == [3.0, 3.0]
    assert result["scaled"] == [1.5, 1.5]
    assert result["unscaled"] == [6.0, 6.0]
    assert result["replicas"] == [2, 2]
    assert result["cross_replica_sum"] == 5.0


@pytest.mark.parametrize(
    "family",
    [
        "fcn",
        "fcn_class_weights",
        "translator",
        "draw",
        "captioner_soft",
        "captioner_hard_self_critical",
        "captioner_hard_learned",
        "faster_rcnn",
        "fast_rcnn",
    ],
)
def test_mirrored_fit_matches_one_device(groups, family):
    """fcn: the control (a Keras loss); fcn_class_weights: the package's
    class-weighted segmentation loss with void pixels in one replica only;
    translator: `TokenCrossentropy`
    with unequal padding per replica; draw: ε fixed per example;
    captioner_soft: captions of unequal lengths; captioner_hard_*: the
    self-critical and learned baselines with locations fixed per example;
    faster_rcnn: Mask R-CNN
    with sampling scores fixed per candidate (unequal positives per
    replica, so the mask loss needs the global count); fast_rcnn: the
    same on given proposals, no RPN."""
    check_same_training(groups.result(family))


def test_hard_captioner_baseline_updates_once_per_global_step(groups):
    """Locations fixed per example: same weights, and the REINFORCE
    baseline state is the one-device state (the global batch's mean
    reward, one update per global step)."""
    result = groups.result("captioner_hard")
    check_same_training(result)
    state = result["state"]
    assert state["reward_updates"] == [float(STEPS)] * 2
    for name in ("reward_average", "reward_baseline"):
        single, mirrored = state[name]
        np.testing.assert_allclose(mirrored, single, rtol=1e-5, err_msg=name)


def test_jit_compile_under_mirrored_strategy_is_never_silently_off(groups):
    """Keras 3 keeps an explicit `jit_compile=True` under MirroredStrategy
    and XLA-compiles the whole step, `strategy.run` over both replicas
    included, as one cluster on one device: the first step raises,
    naming the variable on the other device. Should a later Keras
    compile it, the step must match one device instead."""
    result = groups.result("fcn_jit")
    assert result["jit_compile_after_compile"] is True
    if result["compiled"]:
        check_same_training(result)
        assert result["jit_compile"] is True
    else:
        assert result["error_type"] == "InvalidArgumentError", result
        assert "Trying to access resource" in result["error"]
        assert "located in device" in result["error"]
        assert "xla/known_issues" in result["error"]
