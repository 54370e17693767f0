"""Tests for `keras_segattn.export.export_translator_for_serving`."""

import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data import spa_eng
from keras_segattn.data import text as text_lib
from keras_segattn.decoding import greedy_decode
from keras_segattn.export import BEAM_SERVING_KEY
from keras_segattn.export import TranslationServingModule
from keras_segattn.export import export_translator_for_serving
from keras_segattn.models import Seq2SeqTranslator
from tests.export.helpers import run_with_v1_loader
from tests.export.helpers import saved_model_cli
from tests.export.helpers import saved_model_cli_run
from tests.export.helpers import serve_in_fresh_process
from tests.export.helpers import stored_variable_bytes
from tests.export.helpers import warmup_requests

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = ["¿Dónde está Tom?", "Tengo hambre.", "Zyxwv qwerty."]
MAX_LENGTH = 7


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pairs = spa_eng.load_spa_eng_pairs(ROOT / "sample_data" / "spa_eng")
    source = spa_eng.make_text_vectorizer([s for s, _ in pairs], 300)
    target = spa_eng.make_text_vectorizer(
        [e for _, e in pairs], 200, start_end=True
    )
    vocabularies = {
        "source": source.get_vocabulary(),
        "target": target.get_vocabulary(),
    }
    vocabularies["display"] = text_lib.build_display_vocabulary(
        [e for _, e in pairs], vocabularies["target"]
    )
    model = Seq2SeqTranslator(
        300,
        200,
        embedding_dim=8,
        encoder_units=8,
        decoder_units=8,
        attention_units=8,
        readout_units=8,
    )
    path = export_translator_for_serving(
        model,
        tmp_path_factory.mktemp("nmt"),
        vocabularies["source"],
        vocabularies["target"],
        vocabularies["display"],
        max_output_length=MAX_LENGTH,
        beam_width=3,
        warmup_sentences=SENTENCES[:2],
    )
    return model, source, vocabularies, path


def test_layout_and_outputs_match_the_model(exported):
    model, source, vocabularies, path = exported
    assert path.endswith("/1")
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", BEAM_SERVING_KEY}
    served = loaded.signatures["serving_default"](text=tf.constant(SENTENCES))
    assert sorted(served) == ["attention", "tokens", "translation"]
    ids = source(tf.constant(SENTENCES)).to_tensor()
    expected = greedy_decode(model, ids, MAX_LENGTH, 2, 3)
    np.testing.assert_array_equal(served["tokens"], expected["tokens"])
    np.testing.assert_allclose(
        served["attention"], expected["attention"], atol=1e-6
    )
    display = np.array(vocabularies["display"], object)
    display[2] = display[3] = ""
    words = tf.constant(display[expected["tokens"].numpy()].astype(str))
    np.testing.assert_array_equal(
        served["translation"], text_lib.detokenize(words)
    )
    beam = loaded.signatures[BEAM_SERVING_KEY](text=tf.constant(SENTENCES))
    assert sorted(beam) == ["attention", "scores", "tokens", "translation"]
    assert beam["translation"].shape == (3,)


def test_in_graph_vectorisation_equals_text_vectorization(exported):
    model, source, vocabularies, _ = exported
    module = TranslationServingModule(
        model, vocabularies["source"], vocabularies["target"]
    )
    sentences = SENTENCES + ["Ése  es\tMI perro, ¿no?"]
    np.testing.assert_array_equal(
        module.vectorize(tf.constant(sentences)),
        source(tf.constant(sentences)).to_tensor(),
    )


def test_reload_in_fresh_process_matches(exported, tmp_path):
    _, _, _, path = exported
    fresh = serve_in_fresh_process(
        path, BEAM_SERVING_KEY, text=np.array(SENTENCES, object)
    )
    loaded = tf.saved_model.load(path)
    here = loaded.signatures[BEAM_SERVING_KEY](text=tf.constant(SENTENCES))
    assert fresh["translation"].tolist() == here["translation"].numpy().tolist()


def test_v1_loader_runs_signature_by_tensor_names(exported):
    _, _, _, path = exported
    result = run_with_v1_loader(path, "text", SENTENCES[:2], tf.string)
    assert result["translation"].shape == (2,)
    assert result["tokens"].dtype == np.int32


def test_saved_model_cli_show_and_run(exported):
    _, _, _, path = exported
    shown = saved_model_cli("show", "--all", "--dir", path)
    assert re.search(r"inputs\['text'\].*\n\s*dtype: DT_STRING", shown)
    assert re.search(r"outputs\['translation'\].*\n\s*dtype: DT_STRING", shown)
    assert "serving_beam" in shown
    ran = saved_model_cli_run(
        path, "--input_exprs", "text=['Hola.', 'Tengo hambre.']"
    )
    assert "translation" in ran


def test_warmup_requests_parse_and_run(exported):
    _, _, _, path = exported
    signature = tf.saved_model.load(path).signatures["serving_default"]
    requests = warmup_requests(path)
    assert len(requests) == 2
    for request, sentence in zip(requests, SENTENCES, strict=False):
        text = tf.make_ndarray(request.inputs["text"])
        assert text.tolist() == [sentence.encode()]
        assert signature(text=tf.constant(text))["translation"].shape == (1,)


def test_bad_requests(exported):
    _, _, _, path = exported
    signature = tf.saved_model.load(path).signatures["serving_default"]
    empty = signature(text=tf.constant([], tf.string))
    assert empty["translation"].shape == (0,)
    assert empty["tokens"].shape == (0, MAX_LENGTH)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="Invalid value for input `text`"
    ):
        signature(text=tf.constant(["Hola.", "日本"]))  # nothing kept
    with pytest.raises(
        (TypeError, ValueError, tf.errors.InvalidArgumentError),
        match="string",
    ):
        signature(text=tf.constant([1, 2]))
    with pytest.raises(
        (TypeError, ValueError, tf.errors.InvalidArgumentError), match="text"
    ):
        signature(text=tf.constant([["Hola."]]))


def test_variables_are_stored_once(exported):
    model, _, _, path = exported
    assert stored_variable_bytes(path) < 1.5 * 4 * model.count_params() + 4096


def test_bad_arguments(exported, tmp_path):
    model, _, vocabularies, _ = exported
    with pytest.raises(ValueError, match="`source_vocabulary`"):
        TranslationServingModule(
            model, vocabularies["source"][:-1], vocabularies["target"]
        )
    target = list(vocabularies["target"])
    target[3] = "end"
    with pytest.raises(ValueError, match=re.escape("'[END]'")):
        TranslationServingModule(model, vocabularies["source"], target)
    with pytest.raises(TypeError, match="Seq2SeqTranslator"):
        TranslationServingModule(
            object(), vocabularies["source"], vocabularies["target"]
        )
    with pytest.raises(ValueError, match="version"):
        export_translator_for_serving(
            model,
            tmp_path,
            vocabularies["source"],
            vocabularies["target"],
            version=0,
        )


def test_cli_exports_a_translator(exported, tmp_path, capsys):
    import json

    from keras_segattn.export.__main__ import main

    model, _, vocabularies, _ = exported
    model.save(tmp_path / "nmt.keras")
    (tmp_path / "vocabularies.json").write_text(json.dumps(vocabularies))
    (tmp_path / "warmup.txt").write_text("Hola.\n\nTengo hambre.\n")
    argv = [
        str(tmp_path / "nmt.keras"),
        "--task",
        "translation",
        "--output-dir",
        str(tmp_path / "out"),
        "--version",
        "3",
        "--vocabularies",
        str(tmp_path / "vocabularies.json"),
        "--max-output-length",
        "5",
        "--warmup-text",
        str(tmp_path / "warmup.txt"),
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().endswith("/3")
    loaded = tf.saved_model.load(str(tmp_path / "out" / "3"))
    served = loaded.signatures["serving_default"](text=tf.constant(["Hola."]))
    assert served["tokens"].shape == (1, 5)
    without_vocabularies = argv[:7]  # model, task and output dir, version
    with pytest.raises(SystemExit, match="--vocabularies"):
        main(without_vocabularies)
