"""Smoke test of examples/translate.py (train, evaluate, translate)."""

import json

import pytest

from tests.examples.helpers import ROOT
from tests.examples.helpers import load_example


def _example():
    return load_example("translate")


def test_help_exits_cleanly(capsys):
    example = _example()
    for argv in (["--help"], ["train", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            example.main(argv)
        assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--smoke" in text and "--no-attention" in text


@pytest.mark.slow  # an XLA-compiled fit, BLEU with two decoders, export
def test_smoke_train_evaluate_translate(tmp_path, capsys):
    example = _example()
    out = tmp_path / "nmt"
    assert example.main(["train", "--smoke", "--output-dir", str(out)]) == 0
    for name in (
        "metrics.json",
        "vocabularies.json",
        "history.csv",
        "model.keras",
        "plots/attention.png",
        "1/saved_model.pb",
        "1/assets.extra/tf_serving_warmup_requests",
    ):
        assert (out / name).exists(), name
    assert any((out / "logs").rglob("events.out.tfevents.*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["jit_compile"] is True
    assert 0.0 <= metrics["bleu_greedy"] <= 100.0
    capsys.readouterr()
    sample = str(ROOT / "sample_data" / "spa_eng")
    assert example.main(["evaluate", str(out), "--data-dir", sample]) == 0
    table = capsys.readouterr().out
    assert "| all | 48 |" in table
    assert example.main(["translate", str(out / "1"), "Hola.", "Sí."]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(" -> ")[0] for line in lines] == ["Hola.", "Sí."]
