"""Smoke test of examples/overfeat_digits.py."""

import json

import pytest

from tests.examples.helpers import load_example


def test_help_exits_cleanly(capsys):
    example = load_example("overfeat_digits")
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--smoke" in text and "--scales" in text and "--strategy" in text


@pytest.mark.slow  # one XLA-compiled fit and two detection passes: ~12 s
def test_smoke_trains_detects_and_plots(tmp_path):
    example = load_example("overfeat_digits")
    assert example.main(["--smoke", "--output-dir", str(tmp_path)]) == 0
    for name in (
        "metrics.json",
        "history.csv",
        "model.keras",
        "plots/score_maps.png",
        "plots/detections.png",
    ):
        assert (tmp_path / name).exists(), name
    assert any((tmp_path / "logs").rglob("events.out.tfevents.*"))
    summary = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("box_ap_overfeat_merge", "box_ap_nms"):
        assert 0.0 <= summary[key]["AP50"] <= 1.0
    assert summary["stride"] == [4, 4]


def test_bad_scales_name_the_argument(tmp_path):
    example = load_example("overfeat_digits")
    with pytest.raises(ValueError, match="`scales`"):
        example.main(
            ["--smoke", "--scales", "1", "0", "--output-dir", str(tmp_path)]
        )
