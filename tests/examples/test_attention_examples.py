"""Smoke tests of the attention and RNN examples (captions, DRAW, char-RNN)."""

import json

import pytest
import tensorflow as tf

from tests.examples.helpers import ROOT
from tests.examples.helpers import load_example


def _example():
    return load_example("caption_digits")


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _example().main(["--help"])
    assert exit_info.value.code == 0
    assert "--smoke" in capsys.readouterr().out


def test_schedule_flag_is_checked(capsys):
    parser = _example().build_parser()
    assert parser.parse_args(["--schedule", "cosine"]).schedule == "cosine"
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--schedule", "linear"])
    assert exit_info.value.code == 2
    assert "--schedule: invalid choice: 'linear'" in capsys.readouterr().err


def test_hard_attention_plots_the_locations(tmp_path):
    from keras_segattn.data import digit_captions
    from keras_segattn.models import ShowAttendTellCaptioner

    example = _example()
    images, _ = digit_captions.make_synthetic_digit_captions(1, seed=0)
    model = ShowAttendTellCaptioner(
        len(example.DIGITS),
        image_shape=images.shape[1:],
        attention="hard",
        filters=(4, 4),
        block_depth=1,
        embedding_dim=4,
        decoder_units=4,
        attention_units=4,
    )
    example.save_attention_plot(model, images, tmp_path / "attention_hard.png")
    for name in ("attention_hard.png", "attention_hard_locations.png"):
        assert (tmp_path / name).stat().st_size > 0, name


@pytest.mark.slow  # two XLA-compiled captioners and an export
def test_smoke_trains_evaluates_and_exports(tmp_path):
    example = _example()
    argv = ["--smoke", "--modes", "none", "soft", "--output-dir", str(tmp_path)]
    assert example.main(argv) == 0
    for name in (
        "metrics.json",
        "history_soft.csv",
        "model.keras",
        "model_none.keras",
        "plots/attention_soft.png",
        "1/saved_model.pb",
        "1/assets.extra/tf_serving_warmup_requests",
    ):
        assert (tmp_path / name).exists(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["results"]) == {"none", "soft"}
    for result in metrics["results"].values():
        assert 0.0 <= result["exact_match"] <= 1.0
    loaded = tf.saved_model.load(str(tmp_path / "1"))
    out = loaded.signatures["serving_default"](
        images=tf.zeros((2, 84, 84, 1), tf.uint8)
    )
    assert out["caption"].shape == (2,)


@pytest.mark.slow  # the COCO captions loader through training and BLEU
def test_smoke_on_the_embedded_coco_captions(tmp_path):
    example = _example()
    argv = [
        "--smoke",
        "--dataset",
        "coco",
        "--data-dir",
        str(ROOT / "sample_data" / "coco_mini"),
        "--modes",
        "soft",
        "--output-dir",
        str(tmp_path),
    ]
    assert example.main(argv) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train_pairs"] == 5 and metrics["test_images"] == 1
    assert 0.0 <= metrics["results"]["soft"]["bleu"] <= 100.0
    assert "exact_match" not in metrics["results"]["soft"]
    assert (tmp_path / "plots" / "attention_soft.png").is_file()
    loaded = tf.saved_model.load(str(tmp_path / "1"))
    out = loaded.signatures["serving_default"](
        images=tf.zeros((1, 32, 32, 3), tf.uint8)
    )
    assert out["caption"].shape == (1,)


def test_draw_example_smoke(tmp_path):
    example = load_example("draw_mnist")
    assert example.main(["--smoke", "--output-dir", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["nll_bound"] > 0 and metrics["jit_compile"] is True
    assert metrics["binarisation"] == "stochastic"
    assert (metrics["read_size"], metrics["write_size"]) == (2, 5)
    assert (tmp_path / "plots" / "canvas.png").exists()
    assert (tmp_path / "plots" / "samples.png").exists()
    with pytest.raises(SystemExit):
        example.main(["--help"])


def test_char_rnn_smoke(tmp_path):
    example = load_example("char_rnn")
    assert example.main(["--smoke", "--output-dir", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 < metrics["validation_bits_per_character"] < 10
    assert set(metrics["samples"]) == {"0.5", "1.0"}
    assert all(s.startswith("I ") for s in metrics["samples"].values())
    cells = metrics["interpretable_cells"]["top_cells"]
    assert set(cells) == {"inside_quotes", "line_position", "word_position"}
    assert all(len(top) == 3 for top in cells.values())
    assert (tmp_path / "plots" / "interpretable_cells.png").exists()


def test_graves_window_smoke(tmp_path):
    example = load_example("graves_window")
    assert example.main(["--smoke", "--output-dir", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["character_accuracy"] <= 1.0
    assert (tmp_path / "phi.png").exists()
