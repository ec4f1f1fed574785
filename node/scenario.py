"""Scenario files (TOML): topology, data, learning, attackers and a failure timeline.

A scenario is parsed once, at the edge, into a frozen Scenario; the simulator runs it
(``--mode sim``). See docs/scenarios.md for the format. Times on the timeline are in
virtual seconds (``at = 12.0``) or rounds (``at_round = 10``: converted with the
nominal round period train_time + latency, so the event lands while round 10 runs).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import networkx as nx

from rumor.node.simulation import SimulationConfig, relay_peers
from rumor.protocols.errors import ConfigError
from rumor.topology import (
    AddPeers,
    Heal,
    Partition,
    RemovePeers,
    TimelineEvent,
    build_topology,
    crash_every,
    poisson_churn,
    remove_links,
    remove_most_central,
    remove_random,
)

_SIM_KEYS = {f.name for f in fields(SimulationConfig)} - {"timeline"}
_SECTIONS = ("network", "data", "learning")
ACTIONS = ("remove_peers", "rejoin", "remove_links", "partition", "heal", "churn",
           "crash_every")


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    config: SimulationConfig
    source: str


def _flat_config(doc: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section in _SECTIONS:
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        for key, value in table.items():
            k = key.replace("-", "_")
            if k not in _SIM_KEYS:
                known = ", ".join(sorted(_SIM_KEYS))
                raise ConfigError(f"{where}: unknown key {key!r} in [{section}]; known: {known}")
            out[k] = value
    return out


def _time(item: dict[str, Any], period: float, where: str) -> float:
    if "at" in item and "at_round" in item:
        raise ConfigError(f"{where}: give either 'at' or 'at_round', not both")
    if "at_round" in item:
        return float(item["at_round"]) * period
    if "at" in item:
        return float(item["at"])
    raise ConfigError(f"{where}: needs 'at' (virtual seconds) or 'at_round'")


def _count(item: dict[str, Any], n: int, where: str) -> int:
    if "count" in item:
        return int(item["count"])
    if "fraction" in item:
        return round(float(item["fraction"]) * n)
    raise ConfigError(f"{where}: needs 'count' or 'fraction'")


def build_timeline(
    items: list[dict[str, Any]], cfg: SimulationConfig, graph: nx.Graph, relays: set[int],
    where: str,
) -> list[TimelineEvent]:
    """Turn [[timeline]] tables into topology events (seeded by the scenario seed)."""
    period = cfg.train_time + cfg.latency
    out: list[TimelineEvent] = []
    removed: list[int] = []
    for k, item in enumerate(items):
        w = f"{where}: timeline[{k}]"
        action = item.get("action")
        if action not in ACTIONS:
            raise ConfigError(f"{w}: action must be one of {', '.join(ACTIONS)}")
        seed = int(item.get("seed", cfg.seed + 1000 + k))
        if action == "remove_peers":
            at = _time(item, period, w)
            select = item.get("select", "random")
            if select == "list":
                ev: TimelineEvent = RemovePeers(at, tuple(int(p) for p in item["peers"]))
            elif select == "random":
                ev = remove_random(graph, _count(item, len(graph), w), seed, at=at)
            elif select == "most_central":
                by = item.get("by", "degree")
                ev = remove_most_central(graph, _count(item, len(graph), w), by=by, at=at,
                                         seed=seed)
            elif select in ("relays", "holders"):
                pool = sorted(relays) if select == "relays" else sorted(set(graph) - relays)
                sub = graph.subgraph(pool)
                ev = RemovePeers(at, remove_random(sub, _count(item, len(pool), w), seed).peers)
            else:
                raise ConfigError(f"{w}: select must be random, most_central, relays, "
                                  "holders or list")
            removed += list(ev.peers)  # type: ignore[union-attr]
            out.append(ev)
        elif action == "rejoin":
            peers = item.get("peers", "removed")
            ids = removed if peers == "removed" else [int(p) for p in peers]
            out.append(AddPeers(_time(item, period, w), tuple(sorted(set(ids)))))
        elif action == "remove_links":
            out.append(remove_links(graph, float(item["fraction"]), seed,
                                    at=_time(item, period, w)))
        elif action == "partition":
            groups = item.get("groups", "halves")
            if groups == "halves":
                a, b = nx.algorithms.community.kernighan_lin_bisection(graph, seed=seed)
                groups = [sorted(a), sorted(b)]
            out.append(Partition(_time(item, period, w),
                                 tuple(tuple(int(p) for p in g) for g in groups)))
        elif action == "heal":
            out.append(Heal(_time(item, period, w)))
        elif action == "churn":
            start = _time(item, period, w)
            until = float(item.get("until_round", cfg.rounds)) * period
            evs = poisson_churn(len(graph), float(item["rate_leave"]),
                                float(item["rate_join"]), until - start, seed)
            out += [replace(e, at=e.at + start) for e in evs]
        elif action == "crash_every":
            out += crash_every(range(len(graph)), int(item.get("count", 5)),
                               float(item.get("every", 60.0)),
                               float(item.get("until_fraction", 0.8)), seed,
                               start=_time(item, period, w) if ("at" in item or
                                                                "at_round" in item) else None)
    return sorted(out, key=lambda e: e.at)


def load_scenario(path: Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Parse a scenario file; ConfigError with the file name and key on any problem."""
    where = str(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {where}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    if "modest" in doc:
        raise ConfigError(f"{where} is a MoDeST file: run `rumor modest --config {where}`")
    unknown = set(doc) - {"name", "description", "mode", "timeline", *_SECTIONS}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level keys {sorted(unknown)}")
    flat = _flat_config(doc, where)
    flat.update(overrides or {})
    try:
        cfg = SimulationConfig(**flat)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    cfg.validate()
    graph = build_topology(cfg.topology, cfg.peers, cfg.seed)
    relays = relay_peers(cfg.peers, cfg.relay_fraction, cfg.seed)
    items = doc.get("timeline", [])
    if not isinstance(items, list):
        raise ConfigError(f"{where}: timeline must be an array of tables ([[timeline]])")
    timeline = build_timeline(items, cfg, graph, relays, where)
    return Scenario(
        name=str(doc.get("name", path.stem)),
        description=str(doc.get("description", "")),
        config=replace(cfg, timeline=tuple(timeline)),
        source=path.read_text(),
    )
