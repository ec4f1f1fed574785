"""``--compress`` end to end on the CLI: the listing, a compressed simulation, and the
bytes-to-accuracy comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rumor.scripts.cli import main

SIM = ["--peers", "4", "--rounds", "2", "--topology", "ring", "--test-subset", "30"]


@pytest.mark.parametrize("cmd", [["simulate"], ["compare"], ["launch"], ["join"]])
def test_compress_help_lists_the_compressors(cmd: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*cmd, "--compress", "help"]) == 0
    out = capsys.readouterr().out
    for name in ("topk", "randk", "qsgd", "int8", "powersgd", "feedback=", "eta="):
        assert name in out


def test_simulate_records_the_compressor_and_its_bytes(tmp_path: Path) -> None:
    assert main(["simulate", *SIM, "--quiet", "--compress", "topk:ratio=0.1",
                 "--out", str(tmp_path / "c")]) == 0
    assert main(["simulate", *SIM, "--quiet", "--out", str(tmp_path / "d")]) == 0
    c = json.loads((tmp_path / "c" / "summary.json").read_text())
    d = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert c["config"]["compress"] == "topk:ratio=0.1"
    assert 0 < c["bytes_sent"] < d["bytes_sent"] / 2


def test_compare_plots_accuracy_against_megabytes(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", *SIM, "--aggregators", "mean", "--compress", "none",
                 "int8", "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    assert "x fewer bytes" in table and "`int8`" in table
    assert (out / "bytes.png").stat().st_size > 0
    assert (out / "4p-mean-int8" / "metrics.csv").exists()
