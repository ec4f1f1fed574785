"""The CLI fits people's habits: --version, help with defaults, one meaning per flag,
--aggregator help, a topology that fits any peer count, --config TOML with flags
overriding it, plots and the per-layer variance CSV of every run, Ctrl-C keeping what
was done, and tables that a pipe gets whole.

In-process through ``rumor.scripts.cli`` (``main`` / ``parse_args``) except the Ctrl-C
test, which needs a process to send SIGINT to.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rumor.protocols.errors import ConfigError
from rumor.scripts import cli
from rumor.scripts.options import HelpFormatter
from rumor.scripts.tables import text_table

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--test-subset", "100", "--quiet"]


def _actions(parser: argparse.ArgumentParser, path: list[str]
             ) -> Iterator[tuple[list[str], argparse.Action]]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from _actions(sp, [*path, name])
        else:
            yield path, a


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rumor ") and out.split()[1][0].isdigit()


def test_every_flag_has_help_showing_its_default() -> None:
    missing = []
    flags = 0
    for path, a in _actions(cli.build_parser("*"), []):
        if a.help == argparse.SUPPRESS or a.dest in ("help", "version"):
            continue
        text = HelpFormatter("rumor")._expand_help(a) if a.help else ""
        if not text.strip():
            missing.append(f"{' '.join(path)} {a.option_strings or a.dest}: no help")
            continue
        if a.option_strings and not a.required and a.nargs != 0:
            flags += 1
            if "default" not in text.lower():
                missing.append(f"{' '.join(path)} {a.option_strings}: {text!r}")
    assert flags > 100 and missing == []


def test_help_output_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", "--help"]) == 0
    out = capsys.readouterr().out
    assert "(default: 40)" in out and "(default: [50, 100])" in out


@pytest.mark.parametrize("command", ["simulate", "launch", "join", "compare"])
def test_aggregator_help_lists_every_rule(command: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from rumor import aggregation

    flag = "--aggregators" if command == "compare" else "--aggregator"
    assert cli.main([command, flag, "help"]) == 0
    names = capsys.readouterr().out.split()
    assert {"monna", "sybilwall", "mean", "fedavg", "variance-corrected"} <= set(names)
    assert set(aggregation.names()) | set(aggregation.defense_names()) <= set(names)


def test_data_dir_changed_meaning_in_join_is_refused(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    assert cli.main(["join", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--node-dir" in err and "--dataset-dir" in err
    # the dataset cache has one name everywhere; the old spelling keeps its meaning
    for cmd in ("simulate", "compare"):
        assert cli.parse_args([cmd, "--dataset-dir", str(tmp_path)]).dataset_dir == str(tmp_path)
        assert cli.parse_args([cmd, "--data-dir", str(tmp_path)]).dataset_dir == str(tmp_path)
    assert cli.parse_args(["join", "--node-dir", str(tmp_path)]).node_dir == tmp_path


def test_default_topology_fits_any_peer_count() -> None:
    from rumor.scripts.simulate_cmd import config_from_args
    from rumor.topology import build_topology

    for n in (1, 2, 6, 8, 9, 50):
        cfg = config_from_args(cli.parse_args(["simulate", "--peers", str(n)]))
        assert len(build_topology(cfg.topology, n, 1)) == n
    assert config_from_args(cli.parse_args(["simulate", "--peers", "6"])).topology == "complete"
    assert config_from_args(cli.parse_args(["simulate"])).topology == "regular:8"


def test_too_small_regular_topology_says_what_to_pass(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = cli.main(["simulate", "--peers", "6", "--topology", "regular:8", "--rounds", "1",
                     "--out", str(tmp_path), *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "regular:K with K < 6" in err and "complete" in err


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_config_file_with_flags_overriding_it(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    f = _config(tmp_path, 'peers = 5\nrounds = 9\naggregator = "mean"\nsign = true\n'
                'batch-size = 4\n[simulate]\ntopology = "ring"\n[launch]\nper_process = 2\n')
    args = cli.parse_args(["simulate", "--config", str(f), "--rounds", "2"])
    assert (args.peers, args.rounds, args.aggregator, args.sign, args.batch_size,
            args.topology) == (5, 2, "mean", True, 4, "ring")
    # the same file drives a real run: keys launch does not have are skipped and named
    largs = cli.parse_args(["launch", "--config", str(f)])
    assert (largs.peers, largs.rounds, largs.aggregator, largs.per_process) == (5, 9, "mean", 2)
    assert "skipped: sign" in capsys.readouterr().err
    # the same without the other commands' parsers at hand (a CLI that builds only one)
    from rumor.scripts.config_file import config_defaults

    launch_parser = cli._subparsers(cli.build_parser("*"))["launch"]
    values, skipped = config_defaults(launch_parser, "launch", f)
    assert values["peers"] == 5 and skipped == ["sign"]
    jf = _config(tmp_path, 'node-dir = "peer-a"\nrounds = 3\naggregator = "median"\n')
    jargs = cli.parse_args(["join", "--config", str(jf), "--aggregator", "mean"])
    assert (jargs.node_dir, jargs.rounds, jargs.aggregator) == (Path("peer-a"), 3, "mean")


@pytest.mark.parametrize(("text", "needle"), [
    ("bogus = 1\n", "bogus: unknown key"),
    ("crash-every = 3.0\n", "crash-every: unknown key"),  # rumor modest's, not a run's
    ("[simulate]\nper_process = 2\n", "[simulate] per_process: unknown key"),
    ('peers = "many"\n', "peers: expected a positive integer"),
    ("sign = 1\n", "sign: expected true or false"),
    ('init = "zero"\n', "init: 'zero' is not one of"),
    ("peers = = 1\n", "not valid TOML"),
])
def test_bad_config_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     text: str, needle: str) -> None:
    f = _config(tmp_path, text)
    assert cli.main(["simulate", "--config", str(f), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    with pytest.raises(ConfigError):
        cli.parse_args(["simulate", "--config", str(f)])


def test_experiment_scenarios_from_config(tmp_path: Path) -> None:
    f = _config(tmp_path, 'scenarios = ["a.toml", "b.toml"]\nmode = "real"\n')
    args = cli.parse_args(["experiment", "--config", str(f), "--mode", "sim"])
    assert args.scenarios == [Path("a.toml"), Path("b.toml")] and args.mode == "sim"


def test_simulate_writes_plots_and_layer_variance(tmp_path: Path) -> None:
    f = _config(tmp_path, "peers = 4\nrounds = 5\n")
    out = tmp_path / "run"
    # lr 0.001: training barely moves the weights, so what the merges do shows
    assert cli.main(["simulate", "--config", str(f), "--rounds", "2", "--aggregator", "mean",
                     "--lr", "0.001", "--out", str(out), *TINY]) == 0
    with (out / "metrics.csv").open() as fh:
        assert [r["round"] for r in csv.DictReader(fh)] == ["1", "2"]  # the flag won
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["peers"] == 4 and summary["interrupted"] is False
    for png in ("accuracy.png", "layer_variance.png"):
        assert (out / png).read_bytes()[:8] == PNG
    with (out / "layer_variance.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["round", "layer", "is_weight", "weight_variance", "peer_variance"]
    layers = {r["layer"] for r in rows}
    assert {int(r["round"]) for r in rows} == {0, 1, 2} and len(rows) == 3 * len(layers)
    first = {r["layer"]: r for r in rows if r["round"] == "0"}
    after = {r["layer"]: r for r in rows if r["round"] == "2"}
    for name, r in first.items():
        if r["is_weight"] == "1":
            # 4 independently initialised peers averaged with the plain mean (complete
            # graph): a model's own weight variance collapses to about 1/4 (the Vanishing
            # Variance problem) and the peers agree
            assert float(after[name]["weight_variance"]) < 0.5 * float(r["weight_variance"])
            assert float(after[name]["peer_variance"]) < 0.01 * float(r["peer_variance"])


def test_layer_variance_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from rumor.aggregation.layout import LayerSlice
    from rumor.node import results
    from rumor.node.results import layer_variance

    big = np.random.default_rng(0).normal(size=(7, 30)).astype(np.float32)
    two = (LayerSlice("a", 0, 10, (10,), True), LayerSlice("b", 10, 30, (20,), True))
    whole = layer_variance(1, big, two)
    monkeypatch.setattr(results, "_CHUNK", 9)  # many row and column chunks: same figures
    chunked = layer_variance(1, big, two)
    assert [v.weight_variance for v in chunked] == pytest.approx(
        [v.weight_variance for v in whole])
    assert [v.peer_variance for v in chunked] == pytest.approx([v.peer_variance for v in whole])
    ref = big[:, 10:].astype(np.float64)
    assert whole[1].weight_variance == pytest.approx(ref.var(axis=1).mean())
    assert whole[1].peer_variance == pytest.approx(ref.var(axis=0).mean())

    x = np.array([[1.0, 3.0, 0.0], [3.0, 5.0, 0.0]])
    layout = (LayerSlice("w", 0, 2, (2,), True), LayerSlice("b", 2, 3, (1,), False))
    w, b = layer_variance(7, x, layout)
    assert (w.round, w.layer, w.is_weight) == (7, "w", True)
    assert w.weight_variance == 1.0  # each row's var over its 2 weights: (1-2)^2...
    assert w.peer_variance == 1.0  # each column's var over the 2 peers
    assert (b.weight_variance, b.peer_variance) == (0.0, 0.0)
    assert layer_variance(1, x[:, :2], layout) == []  # a layout that does not fit


def test_compare_writes_its_plot_and_a_whole_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    assert cli.main(["compare", "--peers", "3", "--rounds", "1", "--aggregators", "mean",
                     "--test-subset", "100", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| peers | aggregator |") and lines[0].endswith("| wall s |")
    assert lines[2].startswith("| 3 | mean |")
    assert (out / "accuracy.png").read_bytes()[:8] == PNG
    assert (out / "3p-mean" / "accuracy.png").read_bytes()[:8] == PNG


def _data_rows(path: Path) -> int:
    if not path.exists():
        return 0
    return max(0, len(path.read_text().splitlines()) - 1)


@pytest.mark.timeout(400)
def test_ctrl_c_writes_partial_results_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rumor.scripts.cli", "simulate", "--peers", "4",
         "--rounds", "100000", "--topology", "ring", "--out", str(out), *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while _data_rows(out / "metrics.csv") < 1:
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
            assert time.monotonic() < deadline, "no round finished in 240 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        log, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, log.decode(errors="replace")[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    done = _data_rows(out / "metrics.csv")
    assert summary["interrupted"] is True and summary["complete"] is False
    assert 1 <= done < 100000 and summary["rounds"] == done
    assert (out / "accuracy.png").read_bytes()[:8] == PNG
    assert b"interrupted after" in log


def test_eta_text() -> None:
    from rumor.scripts.tables import eta

    assert eta(10.0, 1, 5) == "  eta 0m40s"  # 10 s a round, 4 left
    assert eta(4000.0, 1, 3) == "  eta 2h13m"
    assert eta(10.0, 0, 5) == eta(10.0, 5, 5) == eta(10.0, 2, None) == ""


def test_tables_for_a_pipe_are_not_wrapped() -> None:
    from rumor.scripts.reporting import PIPE_WIDTH, console

    row = ["x" * 120, 1.5, None]
    text = text_table(["name", "value", "other"], [row])
    assert len(text.splitlines()) == 2 and text.splitlines()[1].startswith("x" * 120)
    md = text_table(["a", "b"], [["y" * 300, 2]], markdown=True)
    assert md.splitlines()[2] == f"| {'y' * 300} | 2 |"
    if not os.isatty(2):  # pytest's captured stderr is a pipe
        assert console().width == PIPE_WIDTH
