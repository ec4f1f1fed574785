"""The robustness experiments behind ``rumor robustness`` and docs/robustness.md.

Three grids, all in the simulator (deterministic from the seed); each takes a frozen
settings object and returns a frozen result; nothing here prints (``on_run`` is called
with every finished run, for progress lines)::

    res = rules_x_attacks(RulesSettings(rules=("mean", "krum"), attacks=("none", "alie")))
    res.f, res.view, res.grid["krum"]["alie"], res.runs[0].byzantine_views

1. ``rules_x_attacks``: final mean honest accuracy of every rule under every attack on
   ``peers`` peers of ``topology``, ``byzantine`` attackers placed by ``placement``
   (``byzantine_peers``); f = the largest number of attackers in any honest view (at
   least 1), which must stay below a third of the smallest view (``select_f``).
2. ``monna``: MoNNA on its paper's shape (n peers on a complete graph, f attackers):
   mean, NNA without momentum and MoNNA at each Polyak beta, under ALIE, IPM, sign flip.
3. ``sybilwall``: honest peers on an RGG, Sybils with a 0<->1 label flip, Dirichlet
   data; attack success and accuracy under mean and sybilwall, with and without Sybils.
   The Sybils share one peer's data slice, so the first seed whose slice holds at least
   ``min_source`` samples of the source class is used (``sybil_seed``).

Every run carries ``complete`` / ``reason`` (``Simulation.completion``) and
``byzantine_views`` (``Simulation.view_stats``: honest views holding >= 1/3 Byzantine
neighbours, and the largest Byzantine fraction of any honest view).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import torch

from rumor.node.attacks import flip_target, parse_attack
from rumor.node.simulation import Simulation, SimulationConfig, byzantine_peers
from rumor.protocols.errors import ConfigError
from rumor.topology import build_topology

__all__ = [
    "ATTACKS",
    "RULES",
    "MonnaResult",
    "MonnaSettings",
    "OnRun",
    "RulesResult",
    "RulesSettings",
    "RunResult",
    "SybilResult",
    "SybilSettings",
    "confusion_rate",
    "max_byzantine_per_view",
    "monna",
    "parse_rule",
    "rules_x_attacks",
    "run_one",
    "select_f",
    "sybil_seed",
    "sybilwall",
    "view_size",
]

RULES = ("mean", "median", "trimmed-mean", "krum", "geometric-median", "centered-clipping",
         "nna", "monna", "variance-corrected", "vc:trimmed-mean",
         "vc:trimmed-mean@tau2_from=median")
ATTACKS = ("none", "sign-flip:scale=4", "gaussian:sigma=1", "alie", "ipm", "label-flip")
MONNA_ATTACKS = ("none", "alie", "ipm", "sign-flip:scale=4")
SYBIL_ATTACK = "label-flip:pairs=0-1"


@dataclass(frozen=True)
class RunResult:
    """One simulated run of a grid."""

    label: str
    acc: float
    acc_min: float
    attack_success: float | None
    wall: float
    curve: tuple[float, ...]
    config: dict[str, Any]
    complete: bool
    rounds_completed: int
    reason: str | None
    byzantine_views: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The results.json entry of this run."""
        out = dataclasses.asdict(self)
        out["curve"] = list(self.curve)
        return out


OnRun = Callable[[RunResult], None]


# ----------------------------------------------------------------------------- helpers
def max_byzantine_per_view(graph: nx.Graph, byzantine: Iterable[int]) -> int:
    """The largest number of Byzantine neighbours of any honest peer of ``graph``."""
    bad = set(byzantine)
    return max((sum(1 for q in graph.neighbors(p) if q in bad)
                for p in graph if p not in bad), default=0)


def view_size(graph: nx.Graph, byzantine: Iterable[int]) -> int:
    """The smallest view (neighbours + own) of an honest peer of ``graph``."""
    bad = set(byzantine)
    return int(min((graph.degree(p) for p in graph if p not in bad), default=0)) + 1


def select_f(cfg: SimulationConfig) -> tuple[int, int]:
    """(f, smallest honest view) for ``cfg``'s topology and Byzantine placement: f is the
    most attackers any honest view holds (at least 1). ConfigError when 3 f >= view."""
    graph = build_topology(cfg.topology, cfg.peers, cfg.seed)
    bad = byzantine_peers(cfg, graph)
    f = max(1, max_byzantine_per_view(graph, bad))
    n_view = view_size(graph, bad)
    if 3 * f >= n_view:
        raise ConfigError(f"{cfg.byzantine} attackers ({cfg.placement} placement) put {f} "
                          f"in a view of {n_view}: f must stay below n/3; use fewer "
                          "attackers, another placement or another seed")
    return f, n_view


def parse_rule(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME[@k=v,...]`` -> (name, rule_params); numbers are converted."""
    name, _, rest = text.partition("@")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        k, sep, v = item.partition("=")
        if not sep:
            raise ConfigError(f"rule parameter {item!r} must be key=value")
        value: Any = v
        for conv in (int, float):
            try:
                value = conv(v)
                break
            except ValueError:
                continue
        params[k] = value
    return name, params


def _attack_kw(attack: str, byzantine: int) -> dict[str, Any]:
    if attack == "none":  # no attackers to place (a list would name peers that are not)
        return {"attack": None, "byzantine": 0, "placement": "random"}
    return {"attack": attack, "byzantine": byzantine}


def confusion_rate(sim: Simulation, src: int, dst: int) -> float:
    """Fraction of class-``src`` test samples the live honest peers classify as ``dst``
    (``Simulation.attack_success`` without needing an attack)."""
    mask = sim.dataset.y_test == src
    rows = [p for p in sim.honest if p in sim.alive]
    pred = sim.trainer.predict(sim.params[rows], sim.dataset.x_test[mask])
    return float((pred == dst).float().mean())


def run_one(cfg: SimulationConfig, label: str, flip: tuple[int, int] | None = None,
            on_run: OnRun | None = None) -> RunResult:
    """Run ``cfg`` to the end; with ``flip`` and no label-flip attack, the attack success
    is the (src, dst) confusion rate."""
    t0 = time.perf_counter()
    sim = Simulation(cfg)
    rows = sim.run()
    wall = time.perf_counter() - t0
    asr = sim.attack_success()
    if asr is None and flip is not None:
        asr = confusion_rate(sim, *flip)
    done = sim.completion()
    last = rows[-1] if rows else None
    result = RunResult(
        label=label, acc=last.acc_mean if last else float("nan"),
        acc_min=last.acc_min if last else float("nan"), attack_success=asr, wall=wall,
        curve=tuple(m.acc_mean for m in rows),
        config={k: v for k, v in dataclasses.asdict(cfg).items() if k != "timeline"},
        complete=bool(done["complete"]), rounds_completed=int(done["rounds_completed"]),
        reason=done.get("reason"), byzantine_views=sim.view_stats())
    if on_run is not None:
        on_run(result)
    return result


# --------------------------------------------------------------------- rules x attacks
@dataclass(frozen=True)
class RulesSettings:
    rules: tuple[str, ...] = RULES
    attacks: tuple[str, ...] = ATTACKS
    peers: int = 30
    topology: str = "regular:8"
    byzantine: int = 3
    placement: str = "random"
    rounds: int = 30
    lr: float = 0.2
    seed: int = 1


@dataclass(frozen=True)
class RulesResult:
    settings: RulesSettings
    f: int
    view: int
    grid: dict[str, dict[str, float]]
    runs: tuple[RunResult, ...]
    cells: dict[str, dict[str, RunResult]] = field(repr=False)

    def row_views(self, rule: str) -> dict[str, Any]:
        """The Byzantine view condition of a rule's row: the worst of its runs."""
        views = [r.byzantine_views for r in self.cells[rule].values() if r.byzantine_views]
        return max(views, key=lambda v: (v["views_ge_third_byzantine"],
                                         v["max_byzantine_fraction"]), default={})

    def to_json(self) -> dict[str, Any]:
        return {"f": self.f, "view": self.view, "placement": self.settings.placement,
                "grid": self.grid, "runs": [r.as_dict() for r in self.runs]}


def rules_x_attacks(s: RulesSettings, on_run: OnRun | None = None) -> RulesResult:
    """Every rule under every attack; ConfigError before any run on a bad name or f."""
    base = SimulationConfig(peers=s.peers, rounds=s.rounds, topology=s.topology, lr=s.lr,
                            seed=s.seed, placement=s.placement)
    f, n_view = select_f(dataclasses.replace(base, aggregator="mean", attack="sign-flip",
                                             byzantine=s.byzantine))
    cfgs = []
    for rule in s.rules:
        name, params = parse_rule(rule)
        for attack in s.attacks:
            cfg = dataclasses.replace(base, aggregator=name, f=f, rule_params=params,
                                      **_attack_kw(attack, s.byzantine))
            cfg.validate()  # fail fast on a bad name
            cfgs.append((rule, attack, cfg))
    grid: dict[str, dict[str, float]] = {}
    cells: dict[str, dict[str, RunResult]] = {}
    runs = []
    for rule, attack, cfg in cfgs:
        r = run_one(cfg, f"{rule} / {attack}", on_run=on_run)
        grid.setdefault(rule, {})[attack] = r.acc
        cells.setdefault(rule, {})[attack] = r
        runs.append(r)
    return RulesResult(s, f, n_view, grid, tuple(runs), cells)


# ------------------------------------------------------------------------------- MoNNA
@dataclass(frozen=True)
class MonnaSettings:
    peers: int = 26
    f: int = 5
    rounds: int = 50
    betas: tuple[float, ...] = (0.99, 0.9)
    lr: float = 0.2
    seed: int = 1
    attacks: tuple[str, ...] = MONNA_ATTACKS


@dataclass(frozen=True)
class MonnaResult:
    settings: MonnaSettings
    variants: tuple[str, ...]
    grid: dict[str, dict[str, float]]
    runs: tuple[RunResult, ...]
    cells: dict[str, dict[str, RunResult]] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"grid": self.grid, "runs": [r.as_dict() for r in self.runs]}


def monna(s: MonnaSettings, on_run: OnRun | None = None) -> MonnaResult:
    """mean, NNA (no momentum) and MoNNA per beta, under each attack, complete graph."""
    if 2 * s.f >= s.peers:
        raise ConfigError("MoNNA needs n > 2f")
    base = SimulationConfig(peers=s.peers, rounds=s.rounds, topology="complete", lr=s.lr,
                            seed=s.seed, f=s.f)
    variants: list[tuple[str, str, float | None]] = [("mean", "mean", None),
                                                     ("nna (no momentum)", "nna", None)]
    variants += [(f"monna beta={b:g}", "monna", b) for b in s.betas]
    grid: dict[str, dict[str, float]] = {}
    cells: dict[str, dict[str, RunResult]] = {}
    runs = []
    for label, agg, beta in variants:
        for attack in s.attacks:
            cfg = dataclasses.replace(base, aggregator=agg, polyak_beta=beta,
                                      **_attack_kw(attack, s.f))
            r = run_one(cfg, f"{label} / {attack}", on_run=on_run)
            grid.setdefault(label, {})[attack] = r.acc
            cells.setdefault(label, {})[attack] = r
            runs.append(r)
    return MonnaResult(s, tuple(v[0] for v in variants), grid, tuple(runs), cells)


# --------------------------------------------------------------------------- SybilWall
@dataclass(frozen=True)
class SybilSettings:
    peers: int = 99
    sybils: int = 15
    topology: str = "rgg:0.2:maxdeg=7"
    rounds: int = 30
    alpha: float = 0.1
    min_source: int = 10
    lr: float = 0.2
    seed: int = 1
    attack: str = SYBIL_ATTACK


@dataclass(frozen=True)
class SybilRow:
    rule: str
    sybils: int
    run: RunResult


@dataclass(frozen=True)
class SybilResult:
    settings: SybilSettings
    seed: int
    source_samples: int
    honest_max_degree: int
    sybil_degree: int
    flip: tuple[int, int]
    rows: tuple[SybilRow, ...]

    @property
    def runs(self) -> tuple[RunResult, ...]:
        return tuple(r.run for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "source_samples": self.source_samples,
                "honest_max_degree": self.honest_max_degree,
                "runs": [r.as_dict() for r in self.runs]}


def sybil_seed(cfg: SimulationConfig, min_source: int, tries: int = 50) -> tuple[int, int]:
    """First seed >= cfg.seed whose Sybils' shared data slice holds >= min_source
    samples of the flipped source class; (seed, count). ConfigError after ``tries``."""
    spec = parse_attack(cfg.attack or "label-flip")
    for seed in range(cfg.seed, cfg.seed + tries):
        sim = Simulation(dataclasses.replace(cfg, seed=seed, rounds=1))
        src, _ = flip_target(spec, sim.dataset.num_classes)
        share = sim.indices[sim.sybil_ids[0]]
        count = int((sim.dataset.y_train[torch.as_tensor(share, dtype=torch.int64)]
                     == src).sum())
        if count >= min_source:
            return seed, count
    raise ConfigError(f"no seed in [{cfg.seed}, {cfg.seed + tries}) gives the Sybils "
                      f"{min_source} samples of the source class; lower --min-source")


def sybilwall(s: SybilSettings, on_run: OnRun | None = None) -> SybilResult:
    """mean and sybilwall, with and without the Sybils, at the first usable seed."""
    base = SimulationConfig(peers=s.peers, rounds=s.rounds, topology=s.topology,
                            split=f"dirichlet:{s.alpha:g}", lr=s.lr, seed=s.seed,
                            attack=s.attack, sybils=s.sybils)
    seed, count = sybil_seed(base, s.min_source)
    base = dataclasses.replace(base, seed=seed)
    probe = Simulation(dataclasses.replace(base, rounds=1))
    honest_deg = max((d for _, d in probe.graph.subgraph(range(s.peers)).degree()),
                     default=0)
    src, dst = flip_target(parse_attack(s.attack), probe.dataset.num_classes)
    rows = []
    for agg in ("mean", "sybilwall"):
        for sybils in (s.sybils, 0):
            cfg = dataclasses.replace(base, aggregator=agg, sybils=sybils,
                                      attack=s.attack if sybils else None)
            r = run_one(cfg, f"{agg} / {'sybils' if sybils else 'no attack'}",
                        flip=(src, dst), on_run=on_run)
            rows.append(SybilRow(agg, sybils, r))
    return SybilResult(s, seed, count, int(honest_deg), base.sybil_degree, (src, dst),
                       tuple(rows))
