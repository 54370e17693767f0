"""`python examples/<name>.py --help`: exits 0 before TensorFlow is
imported, and documents every flag (with its default)."""

import argparse
import ast
import json
import os
import subprocess
import sys

import pytest

from tests.examples.helpers import ROOT
from tests.examples.helpers import load_example

EXAMPLES = sorted(
    path.stem
    for path in (ROOT / "examples").glob("*.py")
    if not path.stem.startswith("_")
)
HEAVY = ("tensorflow", "keras", "keras_segattn", "matplotlib")

# Runs a script as `__main__` with `argv`, then reports its exit code and
# which heavy packages it imported, as JSON on the last line of stderr.
_WRAPPER = """
import json, runpy, sys
path, argv, heavy = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
sys.path.insert(0, path.rsplit("/", 1)[0])
sys.argv = [path, *argv]
try:
    runpy.run_path(path, run_name="__main__")
    code = None
except SystemExit as exit:
    code = exit.code
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(heavy))
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


def _run_help(name: str, argv: list) -> tuple[dict, str]:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _WRAPPER,
            str(ROOT / "examples" / f"{name}.py"),
            json.dumps(argv),
            *HEAVY,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    *noise, last = result.stderr.strip().splitlines()
    report = json.loads(last)
    report["stderr"] = noise  # TensorFlow's start-up logging would be here
    return report, result.stdout


def _parsers(parser: argparse.ArgumentParser):
    """(sub-command path, parser) for the parser and its sub-commands."""
    yield [], parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                for path, nested in _parsers(sub):
                    yield [command, *path], nested


@pytest.mark.parametrize("name", EXAMPLES)
def test_help_is_quiet_and_does_not_import_tensorflow(name):
    parser = load_example(name).build_parser()
    for path, sub in _parsers(parser):
        report, text = _run_help(name, [*path, "--help"])
        expected = {"code": 0, "loaded": [], "stderr": []}
        assert report == expected, (name, path, report)
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in text, (name, path, flag)


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_argument_has_help_and_its_default(name):
    parser = load_example(name).build_parser()
    for path, sub in _parsers(parser):
        formatter = sub._get_formatter()
        for action in sub._actions:
            if isinstance(
                action, (argparse._HelpAction, argparse._SubParsersAction)
            ):
                continue  # sub-commands are checked as parsers
            label = (name, path, action.dest)
            assert action.help, label
            shown = formatter._expand_help(action)
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in shown.lower(), (label, shown)
            if action.default not in (
                None,
                argparse.SUPPRESS,
            ) and "%(default)" in formatter._get_help_string(action):
                assert str(action.default) in shown, (label, shown)


def test_bad_flag_fails_before_tensorflow():
    report, _ = _run_help("segmentation", ["train", "--image-size", "0"])
    assert report["code"] == 2 and report["loaded"] == []
    assert "--image-size expects" in " ".join(report["stderr"])


def test_required_arguments_are_argparse_required():
    parser = load_example("segmentation").build_parser()
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["evaluate"])  # --saved-model is required
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        parser.parse_args([])  # a sub-command is required


def test_cli_strategies_match_the_package():
    sys.path.insert(0, str(ROOT / "examples"))
    from keras_segattn import distribute

    import _cli

    assert _cli.STRATEGIES == distribute.STRATEGIES


def test_export_cli_documents_every_argument():
    from keras_segattn.export.__main__ import build_parser

    for action in build_parser()._actions:
        assert action.help, action.dest


def _first_heavy_import(tree) -> int:
    for index, node in enumerate(tree.body):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        if any(name.split(".")[0] in (*HEAVY, "_common") for name in names):
            return index
    raise AssertionError("no TensorFlow import")


@pytest.mark.parametrize("name", EXAMPLES)
def test_process_defaults_are_set_before_tensorflow_is_imported(name):
    # TensorFlow reads its CPU allocator setting once, when it starts.
    tree = ast.parse((ROOT / "examples" / f"{name}.py").read_text())
    calls = [
        index
        for index, node in enumerate(tree.body)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", None) == "set_process_defaults"
    ]
    assert calls and calls[0] < _first_heavy_import(tree), name


def test_process_defaults_keep_what_the_environment_sets(monkeypatch):
    sys.path.insert(0, str(ROOT / "examples"))
    import _cli

    monkeypatch.delenv("TF_CPU_ALLOCATOR_USE_BFC", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    _cli.set_process_defaults()
    assert os.environ["TF_CPU_ALLOCATOR_USE_BFC"] == "true"
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert os.environ["KERAS_BACKEND"] == "tensorflow"
