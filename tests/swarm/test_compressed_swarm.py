"""Compressed gossip in the simulator (the same Peer and wire as on the mesh): bytes
counted are the compressed bytes, signed messages verify, lost messages desync copies
that heal through RESYNC, and a compressed swarm still learns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rumor.node.simulation import SimulationConfig, run_simulation
from rumor.protocols.errors import ConfigError

BASE = SimulationConfig(peers=6, rounds=4, topology="regular:4", test_subset=60,
                        init="same", aggregator="mean", seed=3)


def test_compressed_runs_send_fewer_bytes_and_still_learn() -> None:
    _, dense, _ = run_simulation(BASE)
    _, sparse, _ = run_simulation(dataclasses.replace(BASE, compress="topk:ratio=0.05"))
    # round 1 carries the int8 keyframes; later rounds only top-5 % differences
    assert sum(r.bytes_sent for r in sparse[1:]) * 8 < sum(r.bytes_sent for r in dense[1:])
    assert sum(r.bytes_sent for r in sparse) * 3 < sum(r.bytes_sent for r in dense)
    assert sparse[-1].acc_mean > sparse[0].acc_mean
    assert [r.messages for r in sparse] == [r.messages for r in dense]


def test_signed_lossy_compressed_swarm_resyncs_and_completes() -> None:
    cfg = dataclasses.replace(BASE, compress="randk:ratio=0.1", sign=True, loss=0.15,
                              round_timeout=5.0)
    sim, rows, _ = run_simulation(cfg)
    assert [r.round for r in rows] == list(range(1, 5))
    rejects = sim.reject_counts()
    assert rejects.get("desync", 0) > 0  # lost differences were noticed ...
    assert sim.protocol_events().get("resync", 0) > 0  # ... and answered with keyframes
    assert rejects.get("bad_signature", 0) == 0 and rejects.get("bad_compressed", 0) == 0


def test_modest_mode_refuses_compression() -> None:
    with pytest.raises(ConfigError, match="compress"):
        dataclasses.replace(BASE, mode="modest", compress="int8").validate()


def test_a_scenario_file_compresses_in_sim_and_in_real_mode(tmp_path: Path) -> None:
    from rumor.node.mesh.real_experiment import node_config_for
    from rumor.node.scenario import load_scenario

    path = tmp_path / "c.toml"
    path.write_text('name = "c"\n[network]\npeers = 4\ntopology = "ring"\n'
                    '[learning]\nrounds = 2\ncompress = "topk:ratio=0.01,feedback=econtrol,'
                    'eta=0.5"\n')
    sc = load_scenario(path)
    assert sc.config.compress == "topk:ratio=0.01,feedback=econtrol,eta=0.5"
    node = node_config_for(sc.config, "s", 4)
    assert node.compress == sc.config.compress
    assert node.protocol().compress == sc.config.compress
