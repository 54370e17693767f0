"""Smoke test of examples/rcnn_progression.py (R-CNN, Fast R-CNN and
Faster R-CNN measured side by side)."""

import json

import pytest

from tests.examples.helpers import load_example

pytest.importorskip(
    "cv2",
    reason="selective search needs the `proposals` extra "
    "(opencv-contrib-python-headless)",
)


def test_help_documents_the_flags(capsys):
    example = load_example("rcnn_progression")
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--smoke", "--data-dir", "--coco-dir", "--readme"):
        assert flag in text


def test_needs_a_data_dir_without_smoke(tmp_path):
    example = load_example("rcnn_progression")
    with pytest.raises(SystemExit, match="--data-dir"):
        example.main(["--output-dir", str(tmp_path)])


def test_marked_block_is_replaced_and_the_rest_kept(tmp_path):
    example = load_example("rcnn_progression")
    readme = tmp_path / "README.md"
    readme.write_text(
        f"before\n{example.START_MARKER}\nold\n{example.END_MARKER}\nafter\n"
    )
    example.write_marked_block(readme, "new table\n")
    assert readme.read_text() == (
        f"before\n{example.START_MARKER}\nnew table\n"
        f"{example.END_MARKER}\nafter\n"
    )
    unmarked = tmp_path / "other.md"
    unmarked.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- rcnn-progression"):
        example.write_marked_block(unmarked, "table\n")


@pytest.mark.slow  # two XLA-compiled fits, two exports, COCO eval
def test_smoke_measures_and_writes_the_tables(tmp_path):
    example = load_example("rcnn_progression")
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# Title\n{example.START_MARKER}\nold\n{example.END_MARKER}\nend\n"
    )
    argv = ["--smoke", "--output-dir", str(tmp_path), "--readme", str(readme)]
    # Fast R-CNN (proposal inputs) and Faster R-CNN (images only) cover
    # both paths of the script; tests/models covers RCNN itself.
    assert example.main([*argv, "--models", "fast_rcnn", "faster_rcnn"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted(results["models"]) == ["fast_rcnn", "faster_rcnn"]
    for row in results["models"].values():
        assert 0.0 <= row["ap50"] <= 1.0 and row["serving_ms"] > 0
        assert (tmp_path / row["serving"].split(str(tmp_path))[1][1:]).is_dir()
    assert results["selective_search_ms"] > 0
    assert [r["proposals"] for r in results["recall"]] == [100, 300, 1000]
    assert (tmp_path / "proposals").is_dir()  # the caches
    text = readme.read_text()
    assert text.startswith("# Title\n") and text.endswith("end\n")
    assert "| Fast R-CNN |" in text and "| Faster R-CNN |" in text
    assert "old" not in text
    assert (tmp_path / "results.md").read_text() in text
