"""`rumor status`, `peers`, `export` and `stop` against a small real launch.

One loopback launch of 3 peers that would run for ever; the commands run in-process
through ``rumor.scripts.cli.main`` (stdout captured, so it is not a terminal: the
tables must come whole). ``stop`` ends the launch cleanly: its summary says
interrupted, the final models are in OUT/models, and no process is left.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from rumor.node.data import load_dataset
from rumor.node.model_io import load_model
from rumor.node.models import build_model
from rumor.scripts.cli import main
from tests.net.test_launch import (
    STARTUP,
    assert_no_processes_left,
    events,
    launch,
    wait_for,
    worker_pids,
)

pytestmark = pytest.mark.net

PEERS = 3


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.timeout(600)
def test_status_peers_export_stop_on_a_running_launch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    proc = launch(out, "--peers", str(PEERS), "--rounds", "1000000", "--per-process", "3")
    try:
        wait_for(lambda: len(_rows(out / "metrics.csv")) >= 1 or proc.poll() is not None,
                 STARTUP, "a first round")
        assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")[-3000:]
        pids = worker_pids(out)
        capsys.readouterr()

        # status from the launch's out dir: one line per peer, plus the header
        assert main(["status", "--out", str(out)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split()[:4] == ["#", "peer", "round", "phase"]
        body = [ln.split() for ln in lines[1:]]
        assert [b[0] for b in body] == [str(i) for i in range(PEERS)]
        assert all(int(b[2]) >= 1 and b[-1] == "ok" for b in body)

        # status from one peer's API URL reaches every peer (GET /peers lists the APIs)
        peers = json.loads((out / "peers.json").read_text())["peers"]
        url = peers[1]["api"]
        assert main(["status", url, "--json"]) == 0
        got = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
        assert sorted(g["peer"] for g in got) == sorted(p["peer"] for p in peers)
        assert all(g["error"] is None and g["round"] >= 1 for g in got)

        assert main(["peers", "--out", str(out)]) == 0
        listed = capsys.readouterr().out.splitlines()[1:]
        assert [ln.split()[1] for ln in listed] == [p["peer"] for p in peers]
        assert main(["peers", url, "--json"]) == 0
        nbrs = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
        assert nbrs and all(n["api"] for n in nbrs)

        # export: safetensors and .pt, weights only, the shapes of the model's tensors
        st, pt = tmp_path / "m.safetensors", tmp_path / "m.pt"
        assert main(["export", url, "--out", str(st)]) == 0
        assert main(["export", "--launch", str(out), "--peer", "2", "--out", str(pt)]) == 0
        layout = next(e["layout"] for e in events(out) if e.get("event") == "ready")
        data = load_dataset("digits")
        for path in (st, pt):
            sd = load_model(path)
            assert sorted(sd) == sorted(t["name"] for t in layout)
            assert all(v.dtype == torch.float32 and torch.isfinite(v).all()
                       for v in sd.values())
            model = build_model("mlp", data.input_shape, data.num_classes)
            model.load_state_dict(sd)  # strict: every tensor, the right shapes
        assert main(["export", url, "--out", str(tmp_path / "m.bin")]) == 2

        # stop: the launch ends cleanly and keeps what it did
        assert main(["stop", "--out", str(out), "--timeout", "120"]) == 0
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["stopped"] == "terminated"
    assert not (out / "launch.json").exists()
    for i in range(PEERS):
        sd = load_model(out / "models" / f"peer-{i:02d}.safetensors")
        assert sorted(sd) == sorted(t["name"] for t in layout)
    rows = _rows(out / "metrics.csv")
    variance = _rows(out / "layer_variance.csv")
    assert list(variance[0]) == ["round", "layer", "is_weight", "weight_variance",
                                 "peer_variance"]
    assert {int(v["round"]) for v in variance} == {int(r["round"]) for r in rows}
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    # each peer's own diagnostic: the variance of the models it received, per tensor
    received = [e["received_variance"] for e in events(out)
                if e.get("event") == "round" and "received_variance" in e]
    assert received and all(len(r) == 2 and r[0][0] == "net.1.weight" for r in received)
    assert main(["stop", "--out", str(out)]) == 2  # nothing runs there any more
    assert "no running launch" in capsys.readouterr().err
    assert_no_processes_left(pids)
