"""Writes benchmarks/REPORT.md from one run of the benchmarks (`make bench`).

Runs, each in a fresh subprocess of this interpreter (run it with
`.venv-torch/bin/python` for the torch / torchvision columns):

- `bench_roi_ops.py`: RoIPool, RoIAlign and MultiScaleRoIAlign against
  torchvision, forward and training path (output + gradient);
- `bench_grid_sample.py`: affine_grid + grid_sample against torch
  (without its keras `map_coordinates` rows, which take minutes);
- `bench_train_step.py`: each flagship model's train step with and without
  XLA;
- `bench_serving.py`: each committed SavedModel's `serving_default`
  latency at batch 1 and 32, without XLA;
- `bench_roi_ops.py` (RoIPool only) and `bench_grid_sample.py` again,
  quick, under TensorFlow's default CPU allocator (malloc): the runs above
  use its pooling allocator, as the examples do (`examples/_cli.py`);

then writes the report (machine, versions, date, load, every table, the
ratios to the references measured in the same run) and copies its summary
tables into README.md between the `<!-- speed-tables:begin -->` and
`<!-- speed-tables:end -->` markers. Nothing in the report is typed by
hand: rerun it to refresh.

`--json-dir DIR` keeps each benchmark's JSON; `--reuse NAME ...` reads
those benchmarks' JSON from DIR instead of running them (after the others
have run), and `--render-only` runs nothing; the header says when each
result was written.

Usage:
    python benchmarks/report.py [--quick] [--output benchmarks/REPORT.md]
        [--readme README.md | --no-readme] [--json-dir DIR [--reuse ...]]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from _timing import set_process_defaults

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEGIN = "<!-- speed-tables:begin -->"
END = "<!-- speed-tables:end -->"
TARGETS = {
    "roi_pool (ours)": {"fwd": 0.5, "fwd+bwd": 0.5},
    "roi_align (ours)": {"fwd": 0.3, "fwd+bwd": 0.3},
}
SCRIPTS = (
    "bench_roi_ops.py",
    "bench_grid_sample.py",
    "bench_train_step.py",
    "bench_serving.py",
)
ALLOCATOR = "TF_CPU_ALLOCATOR_USE_BFC"
MALLOC = {ALLOCATOR: "false"}  # the environment of the "-malloc" runs
MALLOC_SCRIPTS = ("bench_roi_ops.py", "bench_grid_sample.py")
GRID_TARGETS = {(64, 60, 60, 1): 1.0, (16, 128, 128, 32): 0.75}


def _json_name(script: str, env: dict | None = None) -> str:
    """The stem of a run's JSON in --json-dir: the script's, "-malloc"
    added for the runs under malloc."""
    return Path(script).stem + ("-malloc" if env == MALLOC else "")


def _run(
    script: str, args: list[str], target: Path, env: dict | None = None
) -> dict:
    """Runs `script` with `--json target` and `env` added to the
    environment; returns its JSON (raises on failure)."""
    env = env or {}
    command = [sys.executable, str(HERE / script), *args, "--json", str(target)]
    print("$", *(f"{k}={v}" for k, v in env.items()), *command[1:], flush=True)
    done = subprocess.run(
        command, text=True, capture_output=True, env={**os.environ, **env}
    )
    print(done.stdout, flush=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"{script} failed ({done.returncode}):\n{done.stderr[-2000:]}"
        )
    return json.loads(target.read_text())


def _utc(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _utc_now() -> str:
    return _utc(datetime.datetime.now(datetime.timezone.utc).timestamp())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(*distributions) -> str:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def _versions() -> str:
    return (
        f"Python {platform.python_version()}, TensorFlow "
        f"{_version('tensorflow-cpu', 'tensorflow')}, Keras "
        f"{_version('keras')}"
    )


def _ms(value) -> str:
    return f"{value:,.1f}" if isinstance(value, (int, float)) else "—"


def _s(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "—"


def _ratio(value, target=None) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    text = f"{value:.2f}×"
    if target is not None:
        text += " ✓" if value <= target else " ✗"
    return text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += [
        "| "
        + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in row)
        + " |"
        for row in rows
    ]
    return lines


def _first(row) -> str:
    firsts = [
        row.get(k) for k in ("fwd first s", "fwd+bwd first s") if row.get(k)
    ]
    return _s(max(firsts)) if firsts else "—"


def roi_sections(data) -> tuple[list[str], list[str]]:
    """(full tables, summary table) of bench_roi_ops.py's JSON."""
    full, summary_rows = [], []
    for result in data["results"]:
        boxes = result["boxes_per_image"]
        full += [
            "",
            f"**{boxes} boxes per image** (ms, median of {data['repeats']})",
            "",
        ]
        full += _table(
            ["op", "mode", "fwd ms", "fwd+bwd ms", "first call s", "note"],
            [
                [
                    f"`{r['op']}`",
                    r["mode"],
                    _ms(r.get("fwd")),
                    _ms(r.get("fwd+bwd")),
                    _first(r),
                    r.get("note", ""),
                ]
                for r in result["rows"]
            ],
        )
        by_key = {(r["op"], r["mode"]): r for r in result["rows"]}
        for ratio in result["ratios"]:
            ours = by_key[ratio["op"], "xla"]
            theirs = by_key[ratio["reference"], "eager"]
            target = TARGETS.get(ratio["op"], {})
            summary_rows.append(
                [
                    f"`{ratio['op'].replace(' (ours)', '')}` XLA vs "
                    f"{ratio['reference']}",
                    str(boxes),
                    f"{_ms(ours.get('fwd'))} / {_ms(theirs.get('fwd'))}",
                    _ratio(ratio.get("fwd"), target.get("fwd")),
                    f"{_ms(ours.get('fwd+bwd'))} / "
                    f"{_ms(theirs.get('fwd+bwd'))}",
                    _ratio(ratio.get("fwd+bwd"), target.get("fwd+bwd")),
                    _first(ours),
                ]
            )
    return full, summary_rows


def grid_sections(data) -> tuple[list[str], list[str]]:
    full, summary_rows = [], []
    for result in data["results"]:
        shape = tuple(result["shape"])
        rows = result["rows"]
        full += [
            "",
            f"**B, H, W, C = {shape}** (ms, median of {data['steps']})",
            "",
        ]
        full += _table(
            [
                "implementation",
                "mode",
                "fwd ms",
                "fwd+bwd ms",
                "first call s",
                "note",
            ],
            [
                [
                    r["op"],
                    r["mode"],
                    _ms(r.get("fwd")),
                    _ms(r.get("fwd+bwd")),
                    _first(r),
                    r.get("note", ""),
                ]
                for r in rows
            ],
        )
        ours = next(
            r for r in rows if r["op"] == "keras_segattn" and r["mode"] == "xla"
        )
        theirs = next((r for r in rows if r["op"] == "torch"), {})
        ratio = result.get("ratio_to_torch", {})
        summary_rows.append(
            [
                "`grid_sample(affine_grid)` XLA vs torch",
                "×".join(str(d) for d in shape),
                f"{_ms(ours.get('fwd'))} / {_ms(theirs.get('fwd'))}",
                _ratio(ratio.get("fwd")),
                f"{_ms(ours.get('fwd+bwd'))} / {_ms(theirs.get('fwd+bwd'))}",
                _ratio(ratio.get("fwd+bwd"), GRID_TARGETS.get(shape)),
                _first(ours),
            ]
        )
    return full, summary_rows


def train_step_table(data) -> list[str]:
    return _table(
        [
            "model",
            "no XLA ms",
            "XLA ms",
            "XLA / no XLA",
            "first call no XLA s",
            "first call XLA s",
        ],
        [
            [
                r["model"],
                _ms(r["no_xla"]["ms"]),
                _ms(r["xla"]["ms"]),
                _ratio(r["xla"]["ms"] / r["no_xla"]["ms"]),
                _s(r["no_xla"]["first s"]),
                _s(r["xla"]["first s"]),
            ]
            for r in data["rows"]
        ],
    )


def serving_table(data) -> list[str]:
    rows = []
    for r in data["rows"]:
        shape = next(iter(r["input"].values()))
        one, many = r.get("batch 1", {}), r.get("batch 32", {})
        rows.append(
            [
                f"`saved_models/{r['model']}/{r['version']}`",
                "×".join(str(d) for d in shape) or "text",
                _ms(one.get("ms")),
                _ms(many.get("ms")),
                _ms(many.get("ms per example")),
                _s(one.get("first s")),
            ]
        )
    return _table(
        [
            "SavedModel",
            "request",
            "batch 1 ms",
            "batch 32 ms",
            "ms / example at 32",
            "first call s",
        ],
        rows,
    )


def _summary_header() -> list[str]:
    return [
        "op, reference",
        "boxes / shape",
        "fwd ms ours / ref",
        "fwd ratio",
        "fwd+bwd ms ours / ref",
        "fwd+bwd ratio",
        "first call s",
    ]


def build(results, machine, command) -> tuple[str, str]:
    """(REPORT.md text, README block) from the benchmark results."""
    roi_full, roi_summary = roi_sections(results["roi"])
    grid_full, grid_summary = grid_sections(results["grid"])
    summary = _table(_summary_header(), roi_summary + grid_summary)
    _, roi_malloc = roi_sections(results["roi_malloc"])
    _, grid_malloc = grid_sections(results["grid_malloc"])
    malloc = _table(_summary_header(), roi_malloc + grid_malloc)
    train = train_step_table(results["train"])
    serving = serving_table(results["serving"])
    torch_version = next(
        (
            r["version"]
            for res in results["roi"]["results"]
            for r in res["rows"]
            if "version" in r
        ),
        "torch not importable (no reference columns)",
    )
    header = [
        "# Benchmark report",
        "",
        f"Generated by `{command}` (benchmarks/report.py) on "
        f"{machine['date']}. Do not edit: rerun to refresh.",
        "",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['platform']}",
        f"- Software: {machine['versions']}; reference: {torch_version}",
        f"- Load average (1 min) at start {machine['load_start']:.1f}, at "
        f"end {machine['load_end']:.1f}, on {machine['cores']} cores.",
    ]
    header.append(
        "- Each benchmark's results written at: "
        + ", ".join(f"`{k}` {v}" for k, v in machine["written"].items())
        + (
            f"; report rendered from them at {machine['rendered']}"
            if machine.get("rendered")
            else ""
        )
    )
    header.append(
        f"- TensorFlow's CPU allocator: `{ALLOCATOR}={machine['allocator']}`"
        " (the examples' and benchmarks' default: TensorFlow's pooling "
        "allocator; see the last section for TensorFlow's default, malloc)."
    )
    if machine.get("note"):
        header.append(f"- Note: {machine['note']}")
    if max(machine["load_start"], machine["load_end"]) > machine["cores"]:
        header.append(
            "- **The machine was loaded by other processes during this run**: "
            "absolute times are inflated and noisy; ratios compare "
            "measurements of the same run, taken minutes apart, so they are "
            "noisy too."
        )
    header += [
        "",
        "Ratios are our time over the reference's (below 1 is faster), both "
        "measured in this run; ✓ / ✗ mark the issue's targets. `fwd` is the "
        "op's output; `fwd+bwd` (the training path) is the output and the "
        "gradient returned together from one function, for torch too "
        "(forward, `backward`, both read back). First call = trace + XLA "
        "compile + run.",
    ]
    report = header + [
        "",
        "## Summary: ops against torchvision / torch (CPU)",
        "",
        *summary,
        "",
        "## Flagship models: train step with and without XLA",
        "",
        "`train_on_batch` (forward, loss, gradient, Adam update) on one "
        "synthetic batch of a small configuration (see "
        "`benchmarks/bench_train_step.py`), median ms after one warm-up.",
        "",
        *train,
        "",
        "## Serving latency of the committed SavedModels",
        "",
        "`serving_default` of `tf.saved_model.load`, no XLA (as TF Serving "
        "runs it), random uint8 images at the trained size or Spanish "
        "sentences, median ms after one warm-up.",
        "",
        *serving,
        "",
        "## RoI ops, every mode",
        "",
        f"Features {results['roi']['features']}, pyramid "
        f"{results['roi']['pyramid']}, output "
        f"{results['roi']['output_size']}, random boxes in an 800×800 "
        "image. Ratios within a table are in the summary.",
        *roi_full,
        "",
        "## grid_sample, every mode",
        *grid_full,
        "",
        "## The ops under TensorFlow's default CPU allocator",
        "",
        f"RoIPool and grid_sample again (quick runs) with `{ALLOCATOR}="
        f"{MALLOC[ALLOCATOR]}`: TensorFlow allocates CPU memory with malloc, "
        "which maps an XLA call's temporary buffer (one per call, tens of MB "
        "here) fresh each time, so every call faults its pages in again. "
        "The reference columns are measured again in the same runs.",
        "",
        *malloc,
        "",
    ]
    readme = [
        BEGIN,
        f"Copied from `benchmarks/REPORT.md`, made by `{command}` on "
        f"{machine['date']} ({machine['cpu']}, {machine['cores']} cores, "
        f"load average {machine['load_start']:.1f} at start"
        + (
            "; a shared, loaded machine: times are noisy"
            if max(machine["load_start"], machine["load_end"])
            > machine["cores"]
            else ""
        )
        + "). Ratios: our XLA time over the reference's, same run. "
        f"TensorFlow ran with `{ALLOCATOR}={machine['allocator']}`, as the "
        "examples do (see *Training on CPUs*; the report also times the ops "
        "under TensorFlow's default, malloc).",
        "",
        *summary,
        "",
        "Train step (`train_on_batch`, small configurations), ms:",
        "",
        *train,
        "",
        "Serving (`serving_default`, no XLA), ms:",
        "",
        *serving,
        END,
    ]
    return "\n".join(report), "\n".join(readme)


def update_readme(
    path: Path, block: str, begin: str = BEGIN, end: str = END
) -> None:
    """Replaces the text from `begin` to `end` (markers included) in the
    file `path` with `block` (which carries the markers again)."""
    text = path.read_text()
    if begin not in text or end not in text:
        raise ValueError(
            f"{path} has no {begin} ... {end} markers to replace; add them "
            "where the table belongs."
        )
    before, rest = text.split(begin, 1)
    _, after = rest.split(end, 1)
    path.write_text(before + block + after)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats, fewer modes"
    )
    parser.add_argument("--output", type=Path, default=HERE / "REPORT.md")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument(
        "--no-readme", action="store_true", help="leave README.md alone"
    )
    parser.add_argument(
        "--note", default="", help="a line for the report header"
    )
    parser.add_argument(
        "--json-dir",
        type=Path,
        help="keep each benchmark's JSON here (default: a temporary folder)",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rebuild the report from the JSON in --json-dir, running nothing",
    )
    parser.add_argument(
        "--reuse",
        nargs="+",
        default=[],
        choices=[
            *(_json_name(script) for script in SCRIPTS),
            *(_json_name(script, MALLOC) for script in MALLOC_SCRIPTS),
        ],
        help="read these benchmarks' JSON from --json-dir (written by an "
        "earlier or concurrent run, read after the others have run) instead "
        "of running them; the header lists when each was written",
    )
    parser.add_argument(
        "--command",
        default="make bench",
        help="the command named in the report as the one that made it",
    )
    args = parser.parse_args(argv)
    set_process_defaults()  # as each benchmark sets it: recorded below
    machine = {
        "date": _utc_now(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": _versions(),
        "load_start": os.getloadavg()[0],
        "note": args.note,
        "allocator": os.environ[ALLOCATOR],
    }
    quick = ["--quick"] if args.quick else []
    grid_args = ["--no-map-coordinates"]
    runs = {  # key: (script, arguments, environment)
        "roi": ("bench_roi_ops.py", quick, None),
        "grid": ("bench_grid_sample.py", [*quick, *grid_args], None),
        "train": (
            "bench_train_step.py",
            ["--steps", "3" if quick else "5"],
            None,
        ),
        "serving": (
            "bench_serving.py",
            ["--repeats", "5" if quick else "10"],
            None,
        ),
        "roi_malloc": (
            "bench_roi_ops.py",
            ["--quick", "--ops", "roi_pool"],
            MALLOC,
        ),
        "grid_malloc": (
            "bench_grid_sample.py",
            ["--quick", *grid_args],
            MALLOC,
        ),
    }
    names = {
        key: _json_name(script, env) for key, (script, _, env) in runs.items()
    }
    if (args.render_only or args.reuse) and args.json_dir is None:
        parser.error("--render-only and --reuse need --json-dir")
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.json_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        results = {}
        for key, (script, script_args, env) in runs.items():
            if not (args.render_only or names[key] in args.reuse):
                target = folder / f"{names[key]}.json"
                results[key] = _run(script, script_args, target, env)
        for key, name in names.items():  # read after the runs
            if key not in results:
                path = folder / f"{name}.json"
                try:
                    results[key] = json.loads(path.read_text())
                except (OSError, json.JSONDecodeError) as error:
                    raise ValueError(f"Cannot read {path}: {error}") from None
        machine_file = folder / "machine.json"
        if args.render_only:
            machine = json.loads(machine_file.read_text())
            machine["rendered"] = _utc_now()
        else:
            machine["load_end"] = os.getloadavg()[0]
            machine_file.write_text(json.dumps(machine, indent=1))
        machine["written"] = {
            name: _utc((folder / f"{name}.json").stat().st_mtime)
            for name in names.values()
        }
    report, block = build(results, machine, args.command)
    args.output.write_text(report)
    print(f"wrote {args.output}")
    if not args.no_readme:
        update_readme(args.readme, block)
        print(f"updated the speed tables in {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
