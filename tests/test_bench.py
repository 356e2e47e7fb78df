"""The ``fastact bench`` report on a tiny sweep: files, summary, comparison, CUDA message."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastact import bench

# The report in the repository: the run below compares itself with it.
OLD_REPORT = Path(__file__).resolve().parents[1] / "docs" / "report" / "results.json"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    args = ["--quick", "--activations", "sigmoid", "--compute-size", "4096", "--memory-size", "65536"]
    args += ["--compare", str(OLD_REPORT)]
    proc = subprocess.run(
        [sys.executable, "-m", "fastact", "bench", *args, "--output", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_report_files_and_summary(report):
    out, stdout = report
    meta = json.loads((out / "results.json").read_text())
    assert {"date", "machine", "versions", "results", "compile_seconds", "regimes"} <= set(meta)
    assert meta["machine"]["threads"] >= 1 and meta["machine"]["cpu"]
    assert meta["machine"]["omp_wait_policy"]
    names = {r["activation"] for r in meta["results"]}
    assert names == {"relu", "sigmoid"}  # relu always joins: it is the unit
    providers = {r["provider"] for r in meta["results"]}
    assert {"fastact", "fastact-1thread", "numpy", "roofline", "roofline-stream"} <= providers
    assert all(r["seconds"] > 0 and r["GB/s"] > 0 for r in meta["results"])
    relu = [r for r in meta["summary"] if r["activation"] == "relu" and r["provider"] == "fastact"][0]
    assert relu["compute_vs_relu"] == 1.0 and relu["memory_vs_relu"] == 1.0
    assert set(meta["compile_seconds"]) == {"sigmoid", "relu"}
    for png in ("time_per_element_sigmoid.png", "time_per_element_relu.png", "cost_relative_to_relu.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "vs ReLU, compute-bound" in md and "![cost_relative_to_relu.png]" in md
    assert "| sigmoid | fastact |" in stdout


def test_compare_prints_ratios(report):
    out, stdout = report
    meta = json.loads((out / "results.json").read_text())
    text = bench.compare(meta, meta)
    assert "| 1.00 |" in text and "geometric mean new/old" in text and ": 1.000" in text
    # --compare: the run's own sizes are not the report's, so no case is common.
    old = json.loads(OLD_REPORT.read_text())
    assert f"old: {old['date']}" in stdout and "(no case measured in both runs)" in stdout


def test_demo():
    """``fastact demo``: saturated derivatives against the textbook formulas, and one timing line each."""
    proc = subprocess.run(
        [sys.executable, "-m", "fastact", "demo", "--size", "65536", "--rounds", "3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "sigmoid'(30) = 9.35762e-14   textbook formula: 0" in out
    assert "tanh'(10) = 8.24461e-09   textbook formula: 0" in out
    for name in ("sigmoid", "tanh", "relu", "leaky_relu"):
        line = re.search(
            rf"^  fastact {name} +([0-9.]+) ms .* ([0-9.]+)x roofline \(([0-9.]+) ms\)(.*)$", out, re.M
        )
        assert line, out
        assert float(line[1]) > 0 and float(line[2]) > 0 and float(line[3]) > 0
        assert "numpy/fastact" in line[4]
        assert ("torch out= pair/fastact" in line[4]) == (importlib.util.find_spec("torch") is not None)


@pytest.mark.parametrize(
    "preset, torch_first, expected, in_env",
    [
        (None, False, "PASSIVE", "PASSIVE"),
        ("ACTIVE", False, "ACTIVE", "ACTIVE"),
        (None, True, "default (torch was imported before it could be set)", "None"),
    ],
)
def test_quiet_openmp(preset, torch_first, expected, in_env):
    """PASSIVE unless the user chose a policy; a torch loaded earlier is reported, not misdescribed."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    code = (
        ("import torch\n" if torch_first else "")
        + "import os\nfrom fastact.bench import quiet_openmp\n"
        + "print(quiet_openmp()); print(os.environ.get('OMP_WAIT_POLICY'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [expected, in_env]


def test_cuda_without_a_gpu_says_so():
    proc = subprocess.run(
        [sys.executable, "-m", "fastact", "bench", "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if bench.cuda_status() is None:
        pytest.skip("this machine has a CUDA GPU")
    assert proc.returncode == 2
    assert "no CUDA figures were measured" in proc.stderr


def _usage_error(capsys, main, args):
    """Run a subcommand's ``main`` with bad arguments: it must stop with status 2 and say why."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_commands_reject_bad_arguments_before_running(capsys, tmp_path):
    from fastact import __main__ as cli
    from fastact import accuracy, figure, train, vanishing

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    not_json = tmp_path / "old.json"
    not_json.write_text("{not json")
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"date": "x"}')
    cases = [
        (bench.main, ["--compare", str(tmp_path / "missing.json")], "--compare: cannot read"),
        (bench.main, ["--compare", str(not_json)], "is not JSON"),
        (bench.main, ["--compare", str(foreign)], "holds no 'results'"),
        (bench.main, ["--memory-size", "0"], "0 is not positive"),
        (bench.main, ["--compute-size", "2^18"], "'2^18' is not an integer"),
        (bench.main, ["--output", str(blocked / "report")], "cannot create the output directory"),
        (accuracy.main, ["sigmoid", "nosuch"], "no exhaustive check for nosuch"),
        (accuracy.main, ["--step", "-1"], "-1 is not positive"),
        (train.main, ["--seeds", "0"], "0 is not positive"),
        (train.main, ["--epochs", "0"], "0 is not positive"),
        (train.main, ["--output", str(blocked / "t")], "cannot create the output directory"),
        (vanishing.main, ["--output", str(blocked / "v")], "cannot create the output directory"),
        (vanishing.main, ["--width", "0"], "0 is not positive"),
        (vanishing.main, ["--depth", "1"], "--depth must be at least 2"),
        (figure.main, ["--output", str(blocked / "f")], "cannot create the output directory"),
        (bench.main, ["--activations", "sigmoid,relux"], "unknown activation 'relux'; choose from sigmoid"),
        (bench.main, ["--activations"], "--activations: expected at least one argument"),
        (train.main, ["--activations", "sigmoid", "nope"], "unknown activation 'nope'"),
        (train.main, ["--datasets", ","], "no dataset in ','; choose from digits, spiral"),
        (cli.demo, ["--size", "-5"], "-5 is not positive"),
    ]
    for main, args, message in cases:
        assert message in _usage_error(capsys, main, args), (main.__module__, args)
    assert not (blocked.parent / "report").exists()


def test_name_options_take_names_space_or_comma_separated():
    import argparse

    from fastact._cli import add_names_option, chosen

    choices = ("sigmoid", "tanh", "relu")
    parser = argparse.ArgumentParser()
    add_names_option(parser, "--activations", choices, "activation")
    cases = [
        ([], list(choices)),
        (["--activations", "relu", "sigmoid"], ["relu", "sigmoid"]),
        (["--activations", "relu,sigmoid"], ["relu", "sigmoid"]),
        (["--activations", "relu,", "sigmoid", "relu"], ["relu", "sigmoid"]),
        (["--activations", "tanh", "--activations", "relu"], ["tanh", "relu"]),
    ]
    for argv, expected in cases:
        assert chosen(parser.parse_args(argv).activations, choices) == expected, argv


def test_size_labels():
    assert bench.size_label(1 << 18) == "2^18" and bench.size_label(1) == "2^0"
    assert bench.size_label(100_000) == "100,000" and bench.size_label(3 << 20) == "3,145,728"
