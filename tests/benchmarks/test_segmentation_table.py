"""benchmarks/segmentation_table.py: flags, the rendered tables, --quick."""

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The list: FCN-32s/16s/8s, DeconvNet/SegNet, multi-scale,
# recurrent refinement, hypercolumn.
MODEL_NAMES = [
    "fcn32s",
    "fcn16s",
    "fcn8s",
    "deconvnet",
    "multi_scale",
    "recurrent_refinement",
    "hypercolumn",
]


@pytest.fixture(scope="module")
def table():
    """Imports benchmarks/segmentation_table.py (benchmarks/ is no package;
    the script puts benchmarks/ and examples/ on sys.path itself)."""
    spec = importlib.util.spec_from_file_location(
        "segmentation_table", ROOT / "benchmarks" / "segmentation_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("segmentation_table", module)
    spec.loader.exec_module(module)
    return module


def _block(text, table):
    assert text.count(table.BEGIN) == 1 and text.count(table.END) == 1
    return text.split(table.BEGIN, 1)[1].split(table.END, 1)[0]


def _tables(text) -> dict:
    """{dataset title: [row cells]} of the tables under **title** lines
    (a line of other text ends a table)."""
    tables, title = {}, None
    for line in text.splitlines():
        bold = re.fullmatch(r"\*\*(.+)\*\*", line.strip())
        if bold:
            title = bold.group(1)
            tables[title] = []
        elif line.strip() and not line.startswith("|"):
            title = None
        elif (
            title and line.startswith("| ") and not line.startswith("| model |")
        ):
            tables[title].append(
                [c.strip() for c in line.strip("|").split("|")]
            )
    return tables


def _check_rows(rows, labels):
    assert [r[0] for r in rows] == labels
    for _, miou, accuracy, params, no_xla, xla, mb, seconds in rows:
        assert 0.0 <= float(miou) <= 1.0
        assert 0.0 <= float(accuracy) <= 1.0
        assert int(params.replace(",", "")) > 0
        for value in (no_xla, xla, mb):
            assert float(value.replace(",", "")) > 0
        assert float(seconds) >= 0


def test_help_documents_every_flag(table, capsys):
    with pytest.raises(SystemExit) as exit_info:
        table.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--models", "--datasets", "--steps", "--quick", "--readme"):
        assert flag in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--models", "fcn64s"], "invalid choice: 'fcn64s'"),
        (["--datasets", "voc"], "invalid choice: 'voc'"),
        (["--steps", "0"], "expected an integer >= 1, got '0'"),
        (["--batch-size", "x"], "expected an integer >= 1, got 'x'"),
        (["--pets-size", "0x3"], "--image-size expects N or HxW"),
        (["--learning-rate", "-1"], "expected a number > 0, got '-1'"),
        (["--pets-dir", "/nonexistent/pets"], "/nonexistent/pets is not a"),
    ],
)
def test_bad_flags_exit_with_a_clear_error(table, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        table.main(["--quick", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_readme_without_markers_fails_before_training(table, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no table here\n")
    with pytest.raises(SystemExit):
        table.main(["--quick", "--readme", str(readme)])
    assert "has no <!-- segmentation-table:begin -->" in capsys.readouterr().err
    assert readme.read_text() == "# no table here\n"


def _rows(table, datasets):
    return [
        {
            "model": name,
            "dataset": dataset,
            "mean_iou": 0.5,
            "pixel_accuracy": 0.75,
            "parameters": 1234,
            "no_xla_ms": 12.5,
            "xla_ms": 10.25,
            "export_bytes": 2_500_000,
            "train_s": 3.0,
        }
        for dataset in datasets
        for name in table.MODELS
    ]


MACHINE = {
    "command": "cmd",
    "date": "today",
    "cpu": "cpu",
    "cores": 2,
    "platform": "os",
    "versions": "v",
    "load_start": 0.5,
    "load_end": 3.0,
}


def _check_every_model(table, text, titles):
    labels = [spec[0] for spec in table.MODELS.values()]
    tables = _tables(text)
    assert list(tables) == titles
    for rows in tables.values():
        _check_rows(rows, labels)
        assert rows[0][1:] == [
            "0.500", "0.750", "1,234", "12.5", "10.2", "2.50", "3"
        ]  # fmt: skip


def test_render_has_a_row_per_model_and_dataset(table, tmp_path):
    args = table.build_parser().parse_args(["--quick"])
    table._resolve(args, table.build_parser())
    rows = _rows(table, table.DATASET_TITLES)
    machine = {**MACHINE, "datasets": args.datasets}
    report, block = table.render(rows, args, [machine], "cmd")
    for text in (report, block):
        _check_every_model(table, text, ["Oxford-IIIT pets", "CamVid"])
    assert "Generated by `cmd` on today" in block
    assert "loaded machine" in block  # load 3.0 > 2 cores
    assert "2 train steps of batch 2" in block
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{table.BEGIN}\nold\n{table.END}\nbottom\n")
    table.update_readme(readme, block, begin=table.BEGIN, end=table.END)
    text = readme.read_text()
    assert text.startswith("top\n") and text.endswith("\nbottom\n")
    assert "old" not in _block(text, table)


def test_from_json_merges_runs_of_one_budget(table, tmp_path, capsys):
    args = table.build_parser().parse_args(["--quick"])
    table._resolve(args, table.build_parser())
    settings = table._settings(args)
    pets, camvid = tmp_path / "pets.json", tmp_path / "camvid.json"
    pets.write_text(
        json.dumps({"settings": settings, "rows": _rows(table, ["pets"])})
    )
    camvid.write_text(
        json.dumps(
            {
                "settings": settings,
                "machine": {**MACHINE, "load_start": 0.1, "load_end": 0.2},
                "rows": _rows(table, ["camvid"]),
            }
        )
    )
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{table.BEGIN}\n{table.END}\n")
    output = tmp_path / "out.md"
    argv = ["--quick", "--readme", str(readme), "--output", str(output)]
    argv += ["--from-json", str(camvid), str(pets)]
    assert table.main(argv) == 0
    block = _block(readme.read_text(), table)
    _check_every_model(table, block, ["Oxford-IIIT pets", "CamVid"])
    _check_every_model(
        table, output.read_text(), ["Oxford-IIIT pets", "CamVid"]
    )
    assert (
        "from the rows of `cmd` on today; a run whose command was not" in block
    )
    assert "Oxford-IIIT pets run: load average not recorded" in block
    assert "CamVid run: load average 0.1 at start and 0.2 at end" in block
    assert "loaded machine" not in block
    assert "not measured" not in block

    rows = _rows(table, ["camvid"])[:-1]
    camvid.write_text(json.dumps({"settings": settings, "rows": rows}))
    assert table.main(argv) == 0
    block = _block(readme.read_text(), table)
    assert "No CamVid row (not measured): Hypercolumn (Hariharan)." in block

    settings["steps"] = 3
    pets.write_text(
        json.dumps({"settings": settings, "rows": _rows(table, ["pets"])})
    )
    with pytest.raises(SystemExit):
        table.main([*argv[:-2], str(camvid), str(pets)])
    assert f"{pets} has another budget than {camvid}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        table.main([*argv[:-2], str(camvid), str(camvid)])
    assert "repeats or has an unknown row ('camvid', 'fcn32s')" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("dataset", ["pets", "camvid"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_builds_for_the_dataset(table, name, dataset):
    num_classes = table.DATASETS[dataset]["num_classes"]
    model = table.MODELS[name][2](num_classes, (32, 32, 3), True)
    view = table.models.recurrent_refinement_inference_model(model)
    assert tuple(view.output.shape) == (None, 32, 32, num_classes)


def test_the_table_has_every_segmentation_model_of_the_package(table):
    assert list(table.MODELS) == MODEL_NAMES


def test_quick_run_writes_the_tables(table, tmp_path):
    """End to end on the embedded CamVid sample (void pixels) with the
    model of several outputs (a loss on every refinement step). A --quick
    run of every model costs about 15 s of CPU per model and dataset,
    mostly XLA compilation (3-4 minutes on 2 cores); the tests above build
    each model and render a row for each."""
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    before = readme.read_text()
    output, rows_file = tmp_path / "SEGMENTATION.md", tmp_path / "rows.json"
    argv = ["--quick", "--datasets", "camvid"]
    argv += ["--models", "recurrent_refinement"]
    argv += ["--readme", str(readme), "--output", str(output)]
    assert table.main([*argv, "--json", str(rows_file)]) == 0

    text = readme.read_text()
    head, tail = before.split(table.BEGIN)[0], before.split(table.END)[1]
    assert text.startswith(head + table.BEGIN)
    assert text.endswith(table.END + tail)
    labels = ["Recurrent refinement (Pinheiro)"]
    for source in (_block(text, table), output.read_text()):
        tables = _tables(source)
        assert list(tables) == ["CamVid"]
        _check_rows(tables["CamVid"], labels)
    assert "**--quick: tiny models" in output.read_text()
    rows = json.loads(rows_file.read_text())["rows"]
    assert [r["model"] for r in rows] == ["recurrent_refinement"]
