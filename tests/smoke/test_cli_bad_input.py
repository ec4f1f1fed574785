"""Bad input on the command line is one line on stderr and exit code 2, never a traceback.

Each case runs in-process through ``rumor.scripts.cli.main``. The entry points that
would start real work (a simulation's rounds, a libp2p node, a launch, Bristle and
MoDeST runs) are replaced by a sentinel, so an input that is accepted fails the test
at once ("accepted") instead of running. ``{placeholders}`` name fixture files: a
regular file, non-UTF-8 bytes, bad identity keys, scenario files, a busy port.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rumor.scripts.cli import main

PEER = "12D3KooWPeuigMJXMh8hCPQxjaB5b9Gu6vBisyyeF6AbP9NkFqSX"
BOOT = f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"
SIM = ["--peers", "4", "--rounds", "1", "--topology", "ring", "--test-subset", "20", "--quiet"]

SCENARIOS: dict[str, str | bytes] = {
    "empty": "",
    "comments-only": "# nothing here\n",
    "non-utf8": b"name = \"\xff\xfe\"\n",
    "binary": bytes(range(256)),
    "bad-toml": "peers = = 3\n",
    "peers-str": '[network]\npeers = "ten"\n',
    "peers-bool": "[network]\npeers = true\n",
    "peers-zero": "[network]\npeers = 0\n",
    "rounds-float": "[learning]\nrounds = 1.5\n",
    "lr-inf": "[learning]\nlr = inf\n",
    "lr-nan": "[learning]\nlr = nan\n",
    "lr-str": '[learning]\nlr = "fast"\n',
    "lr-array": "[learning]\nlr = [0.1]\n",
    "seed-negative": "[learning]\nseed = -1\n",
    "seed-huge": "[learning]\nseed = 4294967296\n",
    "latency-negative": "[network]\nlatency = -1.0\n",
    "latency-inf": "[network]\nlatency = inf\n",
    "train-time-zero": "[network]\ntrain_time = 0.0\n",
    "round-timeout-negative": "[learning]\nround_timeout = -5\n",
    "loss-one": "[network]\nloss = 1.0\n",
    "network-not-table": "network = 3\n",
    "timeline-not-array": "timeline = 3\n",
    "timeline-items-not-tables": "timeline = [1, 2]\n",
    "name-int": "name = 5\n",
    "name-path": 'name = "../escape"\n',
    "name-empty": 'name = ""\n',
    "description-table": "[description]\nx = 1\n",
    "mode-unknown": 'mode = "warp"\n',
    "unknown-top-key": "foo = 1\n",
    "unknown-key": "[network]\nfoo = 1\n",
    "sign-str": '[learning]\nsign = "yes"\n',
    "attack-unknown-param": '[learning]\nattack = "sign-flip:foo=1"\nbyzantine = 1\n',
    "attack-int": "[learning]\nattack = 5\nbyzantine = 1\n",
    "compress-unknown": '[learning]\ncompress = "zip"\n',
    "compress-bad-ratio": '[learning]\ncompress = "topk:ratio=2"\n',
    "compress-int": "[learning]\ncompress = 5\n",
    "byzantine-negative": '[learning]\nbyzantine = -1\nattack = "alie"\n',
    "topology-unknown": '[network]\ntopology = "nope:3"\n',
    "topology-int": "[network]\ntopology = 8\n",
    "model-unknown": '[learning]\nmodel = "nosuch"\n',
    "dataset-unknown": '[data]\ndataset = "nosuch"\n',
    "split-unknown": '[data]\nsplit = "bogus"\n',
    "rule-params-int": "[learning]\nrule_params = 3\n",
    "polyak-beta-two": "[learning]\npolyak_beta = 2.0\n",
    "f-negative": "[learning]\nf = -1\n",
    "momentum-one": "[learning]\nmomentum = 1.0\n",
    "eval-peers-zero": "[learning]\neval_peers = 0\n",
}

CASES: list[tuple[str, list[str]]] = [
    # ------------------------------------------------------------------ simulate
    ("sim-peers-zero", ["simulate", "--peers", "0"]),
    ("sim-peers-word", ["simulate", "--peers", "ten"]),
    ("sim-rounds-negative", ["simulate", *SIM, "--rounds", "-2"]),
    ("sim-seed-negative", ["simulate", *SIM, "--seed", "-1"]),
    ("sim-seed-2**32", ["simulate", *SIM, "--seed", str(2**32)]),
    ("sim-seed-huge", ["simulate", *SIM, "--seed", "9" * 30]),
    ("sim-seed-word", ["simulate", *SIM, "--seed", "abc"]),
    ("sim-lr-inf", ["simulate", *SIM, "--lr", "inf"]),
    ("sim-lr-nan", ["simulate", *SIM, "--lr", "nan"]),
    ("sim-lr-zero", ["simulate", *SIM, "--lr", "0"]),
    ("sim-momentum-nan", ["simulate", *SIM, "--momentum", "nan"]),
    ("sim-momentum-negative", ["simulate", *SIM, "--momentum", "-0.5"]),
    ("sim-momentum-one", ["simulate", *SIM, "--momentum", "1"]),
    ("sim-latency-negative", ["simulate", *SIM, "--latency", "-1"]),
    ("sim-latency-inf", ["simulate", *SIM, "--latency", "inf"]),
    ("sim-latency-nan", ["simulate", *SIM, "--latency", "nan"]),
    ("sim-loss-one", ["simulate", *SIM, "--loss", "1"]),
    ("sim-loss-nan", ["simulate", *SIM, "--loss", "nan"]),
    ("sim-round-timeout-inf", ["simulate", *SIM, "--round-timeout", "inf"]),
    ("sim-topology-unknown", ["simulate", *SIM, "--topology", "nope"]),
    ("sim-topology-bad-k", ["simulate", *SIM, "--topology", "regular:abc"]),
    ("sim-topology-k-too-big", ["simulate", *SIM, "--topology", "regular:9"]),
    ("sim-topology-er-p-two", ["simulate", *SIM, "--topology", "er:2"]),
    ("sim-split-unknown", ["simulate", *SIM, "--split", "bogus"]),
    ("sim-split-dirichlet-word", ["simulate", *SIM, "--split", "dirichlet:abc"]),
    ("sim-split-dirichlet-negative", ["simulate", *SIM, "--split", "dirichlet:-1"]),
    ("sim-split-shards-zero", ["simulate", *SIM, "--split", "shards:0"]),
    ("sim-aggregator-unknown", ["simulate", *SIM, "--aggregator", "nosuch"]),
    ("sim-model-unknown", ["simulate", *SIM, "--model", "nosuch"]),
    ("sim-dataset-unknown", ["simulate", *SIM, "--dataset", "nosuch"]),
    ("sim-attack-unknown", ["simulate", *SIM, "--attack", "nosuch", "--byzantine", "1"]),
    ("sim-attack-unknown-param", ["simulate", *SIM, "--attack", "sign-flip:foo=1",
                                  "--byzantine", "1"]),
    ("sim-attack-param-word", ["simulate", *SIM, "--attack", "sign-flip:scale=abc",
                               "--byzantine", "1"]),
    ("sim-attack-param-inf", ["simulate", *SIM, "--attack", "gaussian:sigma=inf",
                              "--byzantine", "1"]),
    ("sim-attack-param-no-value", ["simulate", *SIM, "--attack", "alie:z", "--byzantine", "1"]),
    ("sim-attack-param-twice", ["simulate", *SIM, "--attack", "alie:z=1,z=2",
                                "--byzantine", "1"]),
    ("sim-attack-label-flip-bad-pairs", ["simulate", *SIM, "--attack", "label-flip:pairs=0-99",
                                         "--byzantine", "1"]),
    ("sim-byzantine-without-attack", ["simulate", *SIM, "--byzantine", "1"]),
    ("sim-byzantine-all", ["simulate", *SIM, "--attack", "alie", "--byzantine", "4"]),
    ("sim-sybils-without-attack", ["simulate", *SIM, "--sybils", "2"]),
    ("sim-f-negative", ["simulate", *SIM, "--f", "-1"]),
    ("sim-eval-peers-zero", ["simulate", *SIM, "--eval-peers", "0"]),
    ("sim-test-subset-zero", ["simulate", *SIM, "--test-subset", "0"]),
    ("sim-relay-fraction-one", ["simulate", *SIM, "--relay-fraction", "1"]),
    ("sim-fanout-zero", ["simulate", *SIM, "--fanout", "0"]),
    ("sim-batch-size-zero", ["simulate", *SIM, "--batch-size", "0"]),
    ("sim-init-unknown", ["simulate", *SIM, "--init", "zeros"]),
    ("sim-out-is-file", ["simulate", *SIM, "--out", "{file}"]),
    ("sim-out-under-file", ["simulate", *SIM, "--out", "{file}/sub"]),
    ("sim-out-unwritable", ["simulate", *SIM, "--out", "/proc/rumor-out"]),
    ("sim-out-empty", ["simulate", *SIM, "--out", ""]),
    ("sim-unknown-flag", ["simulate", "--peerz", "3"]),
    ("no-command", []),
    ("unknown-command", ["simulat"]),
    # ------------------------------------------------------------------ compare
    ("compare-aggregator-unknown", ["compare", "--aggregators", "nosuch", "--peers", "4"]),
    ("compare-peers-zero", ["compare", "--peers", "0"]),
    ("compare-compress-unknown", ["compare", "--peers", "4", "--compress", "none", "zip"]),
    ("sim-compress-unknown", ["simulate", *SIM, "--compress", "zip"]),
    ("sim-compress-bad-ratio", ["simulate", *SIM, "--compress", "topk:ratio=0"]),
    ("sim-compress-bad-param", ["simulate", *SIM, "--compress", "qsgd:rank=2"]),
    ("sim-compress-eta-without-econtrol", ["simulate", *SIM, "--compress", "topk:eta=0.5"]),
    ("sim-compress-bad-feedback", ["simulate", *SIM, "--compress", "topk:feedback=maybe"]),
    ("launch-compress-unknown", ["launch", "--peers", "2", "--compress", "zip"]),
    ("join-compress-bad-bits", ["join", "--data-dir", "{tmp}/j", "--compress", "qsgd:bits=9"]),
    ("compare-lr-inf", ["compare", "--lr", "inf"]),
    ("compare-seed-negative", ["compare", "--seed", "-3"]),
    ("compare-seed-huge", ["compare", "--seed", str(2**40)]),
    ("compare-topology-unknown", ["compare", "--peers", "4", "--topology", "nope"]),
    ("compare-split-unknown", ["compare", "--peers", "4", "--split", "bogus"]),
    ("compare-model-unknown", ["compare", "--peers", "4", "--model", "nosuch"]),
    ("compare-dataset-unknown", ["compare", "--peers", "4", "--dataset", "nosuch"]),
    ("compare-out-is-file", ["compare", "--out", "{file}"]),
    ("compare-rounds-zero", ["compare", "--rounds", "0"]),
    # ------------------------------------------------------------------ experiment
    *[(f"experiment-{name}", ["experiment", f"{{scenario:{name}}}", "--out", "{tmp}/exp"])
      for name in SCENARIOS],
    ("experiment-missing-file", ["experiment", "{tmp}/nope.toml"]),
    ("experiment-file-is-dir", ["experiment", "{tmp}"]),
    ("experiment-set-no-equals", ["experiment", "{scenario:ok}", "--set", "rounds"]),
    ("experiment-set-unknown-key", ["experiment", "{scenario:ok}", "--set", "foo=1"]),
    ("experiment-set-word-rounds", ["experiment", "{scenario:ok}", "--set", "rounds=abc"]),
    ("experiment-set-lr-inf", ["experiment", "{scenario:ok}", "--set", "lr=inf"]),
    ("experiment-out-is-file", ["experiment", "{scenario:ok}", "--out", "{file}"]),
    ("experiment-mode-flag-unknown", ["experiment", "{scenario:ok}", "--mode", "warp"]),
    # ------------------------------------------------------------------ join
    ("join-bootstrap-garbage", ["join", "--node-dir", "{tmp}/j", "--bootstrap", "bogus"]),
    ("join-bootstrap-no-p2p", ["join", "--node-dir", "{tmp}/j", "--bootstrap",
                               "/ip4/127.0.0.1/tcp/4001"]),
    ("join-bootstrap-bad-ip", ["join", "--node-dir", "{tmp}/j", "--bootstrap",
                               f"/ip4/999.1.1.1/tcp/4001/p2p/{PEER}"]),
    ("join-bootstrap-bad-port", ["join", "--node-dir", "{tmp}/j", "--bootstrap",
                                 f"/ip4/127.0.0.1/tcp/99999/p2p/{PEER}"]),
    ("join-bootstrap-bad-peer-id", ["join", "--node-dir", "{tmp}/j", "--bootstrap",
                                    "/ip4/127.0.0.1/tcp/4001/p2p/notapeer"]),
    ("join-bootstrap-udp", ["join", "--node-dir", "{tmp}/j", "--bootstrap",
                            f"/ip4/127.0.0.1/udp/4001/p2p/{PEER}"]),
    ("join-bootstrap-file-missing", ["join", "--node-dir", "{tmp}/j", "--bootstrap-file",
                                     "{tmp}/nope.txt"]),
    ("join-bootstrap-file-dir", ["join", "--node-dir", "{tmp}/j", "--bootstrap-file", "{tmp}"]),
    ("join-bootstrap-file-non-utf8", ["join", "--node-dir", "{tmp}/j", "--bootstrap-file",
                                      "{nonutf8}"]),
    ("join-bootstrap-file-bad-addr", ["join", "--node-dir", "{tmp}/j", "--bootstrap-file",
                                      "{file}"]),
    ("join-listen-garbage", ["join", "--node-dir", "{tmp}/j", "--listen", "bogus"]),
    ("join-listen-port-too-big", ["join", "--node-dir", "{tmp}/j", "--listen",
                                  "/ip4/127.0.0.1/tcp/70000"]),
    ("join-listen-udp", ["join", "--node-dir", "{tmp}/j", "--listen", "/ip4/127.0.0.1/udp/0"]),
    ("join-listen-not-local", ["join", "--node-dir", "{tmp}/j", "--listen",
                               "/ip4/203.0.113.7/tcp/0"]),
    ("join-listen-busy", ["join", "--node-dir", "{tmp}/j", "--listen",
                          "/ip4/127.0.0.1/tcp/{busy}"]),
    ("join-api-port-too-big", ["join", "--node-dir", "{tmp}/j", "--api-port", "70000"]),
    ("join-api-port-negative", ["join", "--node-dir", "{tmp}/j", "--api-port", "-1"]),
    ("join-api-port-busy", ["join", "--node-dir", "{tmp}/j", "--api-port", "{busy}"]),
    ("join-api-host-unknown", ["join", "--node-dir", "{tmp}/j", "--api-host", "no.such.host."]),
    ("join-data-dir-is-file", ["join", "--node-dir", "{file}"]),
    ("join-data-dir-under-file", ["join", "--node-dir", "{file}/sub"]),
    ("join-identity-key-is-dir", ["join", "--node-dir", "{keydir}"]),
    ("join-identity-key-garbage", ["join", "--node-dir", "{keybad}"]),
    ("join-identity-key-non-utf8", ["join", "--node-dir", "{keybin}"]),
    ("join-identity-key-world-readable", ["join", "--node-dir", "{keyopen}"]),
    ("join-rounds-zero", ["join", "--node-dir", "{tmp}/j", "--rounds", "0"]),
    ("join-shard-negative", ["join", "--node-dir", "{tmp}/j", "--shard", "-1"]),
    ("join-shard-too-big", ["join", "--node-dir", "{tmp}/j", "--shard", "16"]),
    ("join-lr-inf", ["join", "--node-dir", "{tmp}/j", "--lr", "inf"]),
    ("join-seed-negative", ["join", "--node-dir", "{tmp}/j", "--seed", "-1"]),
    ("join-round-timeout-nan", ["join", "--node-dir", "{tmp}/j", "--round-timeout", "nan"]),
    ("join-aggregator-fedavg", ["join", "--node-dir", "{tmp}/j", "--aggregator", "fedavg"]),
    ("join-aggregator-unknown", ["join", "--node-dir", "{tmp}/j", "--aggregator", "nosuch"]),
    ("join-model-unknown", ["join", "--node-dir", "{tmp}/j", "--model", "nosuch"]),
    ("join-dataset-unknown", ["join", "--node-dir", "{tmp}/j", "--dataset", "nosuch"]),
    ("join-split-unknown", ["join", "--node-dir", "{tmp}/j", "--split", "bogus"]),
    ("join-shards-zero", ["join", "--node-dir", "{tmp}/j", "--shards", "0"]),
    # ------------------------------------------------------------------ launch
    ("launch-peers-zero", ["launch", "--peers", "0"]),
    ("launch-peers-word", ["launch", "--peers", "many"]),
    ("launch-per-process-zero", ["launch", "--per-process", "0"]),
    ("launch-bootstrap-port-too-big", ["launch", "--bootstrap-port", "70000"]),
    ("launch-bootstrap-port-negative", ["launch", "--bootstrap-port", "-1"]),
    ("launch-bootstrap-port-busy", ["launch", "--bootstrap-port", "{busy}"]),
    ("launch-api-port-base-too-big", ["launch", "--api-port-base", "70000"]),
    ("launch-discovery-interval-inf", ["launch", "--discovery-interval", "inf"]),
    ("launch-ready-timeout-nan", ["launch", "--ready-timeout", "nan"]),
    ("launch-lr-inf", ["launch", "--lr", "inf"]),
    ("launch-seed-huge", ["launch", "--seed", str(2**33)]),
    ("launch-shards-zero", ["launch", "--shards", "0"]),
    ("launch-out-is-file", ["launch", "--out", "{file}"]),
    ("launch-base-dir-is-file", ["launch", "--base-dir", "{file}"]),
    ("launch-byzantine-without-attack", ["launch", "--byzantine", "2"]),
    ("launch-attack-without-byzantine", ["launch", "--attack", "alie"]),
    ("launch-keep-with-base-dir", ["launch", "--keep", "--base-dir", "{tmp}/base"]),
    ("launch-aggregator-fedavg", ["launch", "--aggregator", "fedavg"]),
    ("launch-model-unknown", ["launch", "--model", "nosuch"]),
    ("launch-dataset-unknown", ["launch", "--dataset", "nosuch"]),
    # ------------------------------------------------------------------ bristle
    ("bristle-peers-zero", ["bristle", "--peers", "0"]),
    ("bristle-alpha-inf", ["bristle", "--alpha", "inf"]),
    ("bristle-alpha-nan", ["bristle", "--alpha", "nan"]),
    ("bristle-public-fraction-two", ["bristle", "--public-fraction", "2"]),
    ("bristle-lr-inf", ["bristle", "--lr", "inf"]),
    ("bristle-seed-negative", ["bristle", "--seed", "-1"]),
    ("bristle-pretrain-classes-word", ["bristle", "--pretrain-classes", "abc"]),
    ("bristle-pretrain-classes-range", ["bristle", "--pretrain-classes", "0-99"]),
    ("bristle-methods-unknown", ["bristle", "--methods", "nosuch"]),
    ("bristle-attacks-unknown", ["bristle", "--attacks", "nosuch"]),
    ("bristle-attack-unknown-param", ["bristle", "--attacks", "sign-flip:foo=1"]),
    ("bristle-dataset-unknown", ["bristle", "--dataset", "nosuch"]),
    ("bristle-out-is-file", ["bristle", "--out", "{file}"]),
    # ------------------------------------------------------------------ modest
    ("modest-config-missing", ["modest", "--config", "{tmp}/nope.toml"]),
    ("modest-config-dir", ["modest", "--config", "{tmp}"]),
    ("modest-config-non-utf8", ["modest", "--config", "{scenario:non-utf8}"]),
    ("modest-config-bad-toml", ["modest", "--config", "{scenario:bad-toml}"]),
    ("modest-config-unknown-key", ["modest", "--config", "{scenario:unknown-top-key}"]),
    ("modest-config-peers-str", ["modest", "--config", "{modest:peers-str}"]),
    ("modest-config-lr-inf", ["modest", "--config", "{modest:lr-inf}"]),
    ("modest-config-not-table", ["modest", "--config", "{modest:not-table}"]),
    ("modest-peers-zero", ["modest", "--peers", "0"]),
    ("modest-crash-until-two", ["modest", "--crash-until", "2"]),
    ("modest-crash-until-nan", ["modest", "--crash-until", "nan"]),
    ("modest-latency-negative", ["modest", "--latency", "-1"]),
    ("modest-duration-inf", ["modest", "--duration", "inf"]),
    ("modest-seed-negative", ["modest", "--seed", "-1"]),
    ("modest-dataset-unknown", ["modest", "--dataset", "nosuch"]),
    ("modest-out-is-file", ["modest", "--out", "{file}"]),
    # ------------------------------------------------------------------ robustness
    ("robustness-rule-unknown", ["robustness", "--only", "rules", "--rules", "nosuch"]),
    ("robustness-rule-param-no-value", ["robustness", "--only", "rules", "--rules", "mean@x"]),
    ("robustness-attack-unknown", ["robustness", "--only", "rules", "--attacks", "nosuch"]),
    ("robustness-attack-unknown-param", ["robustness", "--only", "rules", "--attacks",
                                         "sign-flip:foo=1"]),
    ("robustness-lr-inf", ["robustness", "--lr", "inf"]),
    ("robustness-monna-beta-two", ["robustness", "--monna-betas", "2"]),
    ("robustness-monna-beta-nan", ["robustness", "--monna-betas", "nan"]),
    ("robustness-alpha-inf", ["robustness", "--alpha", "inf"]),
    ("robustness-seed-negative", ["robustness", "--seed", "-1"]),
    ("robustness-threads-zero", ["robustness", "--threads", "0"]),
    ("robustness-out-is-file", ["robustness", "--out", "{file}"]),
    ("robustness-topology-unknown", ["robustness", "--only", "rules", "--topology", "nope"]),
    ("robustness-monna-n-le-2f", ["robustness", "--only", "monna", "--monna-peers", "4",
                                  "--monna-f", "2"]),
    # ------------------------------------------------------------------ data
    ("data-no-subcommand", ["data"]),
    ("data-fetch-unknown", ["data", "fetch", "nosuch"]),
    ("data-fetch-data-dir-is-file", ["data", "fetch", "digits", "--node-dir", "{file}"]),
    ("data-list-data-dir-under-file", ["data", "list", "--node-dir", "{file}/sub"]),
]

MODEST_CONFIGS = {
    "peers-str": '[modest]\npeers = "ten"\n',
    "lr-inf": "[modest]\nlr = inf\n",
    "not-table": "modest = 3\n",
}


class _Ran(Exception):
    """An entry point that starts real work was reached: the input was accepted."""


def _sentinel(*args: Any, **kwargs: Any) -> Any:
    raise _Ran("accepted: the command would have run")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("badinput")
    (tmp / "plain.txt").write_text("not a directory, not a multiaddr\n")
    (tmp / "bytes.bin").write_bytes(b"\xff\xfe\x00\x80 not utf-8")
    out = {"tmp": str(tmp), "file": str(tmp / "plain.txt"), "nonutf8": str(tmp / "bytes.bin")}
    for name, key_bytes, mode in (("keydir", None, 0o700), ("keybad", b"hello\n", 0o600),
                             ("keybin", b"\xff" * 64 + b"\n", 0o600),
                             ("keyopen", b"ab" * 32 + b"\n", 0o644)):
        d = tmp / name
        d.mkdir()
        key = d / "identity.key"
        if key_bytes is None:
            key.mkdir()
        else:
            key.write_bytes(key_bytes)
        os.chmod(key, mode)
        out[name] = str(d)
    for name, body in {**SCENARIOS, "ok": "[network]\npeers = 4\n"}.items():
        path = tmp / f"scenario-{name}.toml"
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(body)
        out[f"scenario:{name}"] = str(path)
    for name, text in MODEST_CONFIGS.items():
        path = tmp / f"modest-{name}.toml"
        path.write_text(text)
        out[f"modest:{name}"] = str(path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        out["busy"] = str(busy.getsockname()[1])
        yield out


@pytest.fixture
def no_real_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rumor.node.mesh import launcher
    from rumor.node.runtime import NodeRuntime
    from rumor.node.simulation import Simulation
    from rumor.scripts import bristle_cmd, modest_cmd

    monkeypatch.setattr(Simulation, "run", _sentinel)
    monkeypatch.setattr(NodeRuntime, "run", _sentinel)
    monkeypatch.setattr(launcher.Mesh, "run", _sentinel)
    monkeypatch.setattr(bristle_cmd, "compare", _sentinel)
    monkeypatch.setattr(modest_cmd, "run_modest", _sentinel)
    monkeypatch.chdir(tmp_path)  # defaults such as ./rumor-data land here


def _fill(arg: str, files: dict[str, str]) -> str:
    for key, value in files.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("case", "argv"), CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_and_exit_code_2(case: str, argv: list[str],
                                               files: dict[str, str], no_real_work: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    args = [_fill(a, files) for a in argv]
    try:
        code: object = main(args)
    except SystemExit as exc:
        code = exc.code
    except _Ran:
        pytest.fail(f"accepted: {args}")
    except Exception as exc:
        pytest.fail(f"traceback: {type(exc).__name__}: {exc}")
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err, f"traceback: {err}"
    assert code == 2, f"exit code {code}: {err}"
    assert len(lines) == 1, f"{len(lines)} lines: {err}"
    assert lines[0].startswith("rumor: error: ") or lines[0].startswith("usage: "), lines[0]


def test_there_are_at_least_100_bad_inputs() -> None:
    assert len(CASES) >= 100
