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

from rumor.node.simulation import SimulationConfig, byzantine_peers, relay_peers
from rumor.protocols.errors import ConfigError
from rumor.topology import (
    CENTRALITIES,
    ROLES,
    AddPeers,
    Heal,
    Partition,
    PeerRoles,
    RemovePeers,
    TimelineEvent,
    apply_events,
    build_topology,
    crash_every,
    poisson_churn,
    remove_links,
    select_peers,
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


TIMELINE_KEYS: dict[str, frozenset[str]] = {
    action: frozenset({"action", "at", "at_round", "seed", *keys})
    for action, keys in {
        "remove_peers": {"select", "by", "centrality", "samples", "role", "count", "fraction",
                         "peers"},
        "rejoin": {"peers", "role"},
        "remove_links": {"fraction"},
        "partition": {"groups"},
        "heal": set(),
        "churn": {"rate_leave", "rate_join", "until_round", "role"},
        "crash_every": {"count", "every", "until_fraction", "select", "by", "centrality",
                        "samples", "role"},
    }.items()
}
"""The keys each timeline action reads (others are a ConfigError naming the key)."""

SELECTS = ("random", "most-central", "least-central", "relays", "holders", "list")
"""Values of ``select`` (``_`` and ``-`` are the same; relays/holders: random among them)."""


@dataclass(frozen=True)
class _Pick:
    """How an event picks its peers: ``order`` is "random" or a centrality."""

    order: str
    direction: str
    role: tuple[str, ...]
    samples: int | None


def _roles_key(item: dict[str, Any], w: str) -> tuple[str, ...]:
    raw = item.get("role", "any")
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(r, str) for r in names):
        raise ConfigError(f"{w}: role must be a role name or a list of them "
                          f"({', '.join(ROLES)}), got {raw!r}")
    for r in names:
        if r not in ROLES:
            raise ConfigError(f"{w}: role must be one of {', '.join(ROLES)}, got {r!r}")
    return tuple(names)


def _pick(item: dict[str, Any], w: str, *, allow_list: bool) -> _Pick | None:
    """Parse select / centrality (alias by) / samples / role; None for select = "list"."""
    select = str(item.get("select", "random")).replace("_", "-")
    allowed = SELECTS if allow_list else SELECTS[:-1]
    if select not in allowed:
        raise ConfigError(f"{w}: select must be one of {', '.join(allowed)}, got {select!r}")
    role = _roles_key(item, w)
    if select in ("relays", "holders"):
        role = (*(r for r in role if r != "any"), select[:-1])
    if "by" in item and "centrality" in item and item["by"] != item["centrality"]:
        raise ConfigError(f"{w}: 'by' and 'centrality' are the same key; give one")
    by = item.get("centrality", item.get("by"))
    central = select in ("most-central", "least-central")
    if by is not None and not central:
        raise ConfigError(f"{w}: centrality (by) needs select = most-central or least-central")
    order = "degree" if by is None else by
    if central and order not in CENTRALITIES:
        raise ConfigError(f"{w}: centrality must be one of {', '.join(CENTRALITIES)}, "
                          f"got {order!r}")
    samples = item.get("samples")
    if samples is not None and (order != "betweenness" or not central):
        raise ConfigError(f"{w}: samples applies to centrality = betweenness only")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int)
                                or samples < 1):
        raise ConfigError(f"{w}: samples must be an integer >= 1, got {samples!r}")
    if select == "list":
        if "role" in item:
            raise ConfigError(f"{w}: role does not apply to select = list")
        return None
    return _Pick(order=order if central else "random",
                 direction="least" if select == "least-central" else "most",
                 role=role, samples=samples)


def _select(graph: nx.Graph, count: int, pick: _Pick, roles: PeerRoles, seed: int,
            w: str) -> tuple[int, ...]:
    try:
        return select_peers(graph, count, order=pick.order, direction=pick.direction,
                            role=pick.role, roles=roles, seed=seed, samples=pick.samples)
    except ConfigError as exc:
        raise ConfigError(f"{w}: {exc}") from None


def _listed(item: dict[str, Any], key: str, graph: nx.Graph, w: str) -> tuple[int, ...]:
    raw = item.get(key)
    if not isinstance(raw, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) for p in raw
    ):
        raise ConfigError(f"{w}: {key} must be a list of peer indices, got {raw!r}")
    unknown = sorted(set(raw) - set(graph))
    if unknown:
        raise ConfigError(f"{w}: {key} names peers {unknown} outside 0..{len(graph) - 1}")
    return tuple(raw)


def _graph_at(graph: nx.Graph, events: list[TimelineEvent], at: float) -> nx.Graph:
    """The network as it is at ``at``: the base graph after the events up to then."""
    return apply_events(graph, events, until=at) if events else graph


def _start(item: dict[str, Any], period: float, w: str) -> float:
    if item.get("action") == "crash_every" and "at" not in item and "at_round" not in item:
        return float(item.get("every", 60.0))  # crash_every's default first wave
    return _time(item, period, w)


def build_timeline(
    items: list[dict[str, Any]], cfg: SimulationConfig, graph: nx.Graph, relays: set[int],
    where: str, *, byzantine: set[int] | None = None,
) -> list[TimelineEvent]:
    """Turn [[timeline]] tables into topology events (seeded by the scenario seed).

    Items are built in order of their start time (file order among equal times), so an
    event that ranks peers by centrality sees the network as it is then: the base graph
    after every event built so far up to that time (``apply_events``). Peers are picked
    with ``select_peers``; roles come from ``relays`` and ``byzantine`` (default: the
    simulator's placement, ``byzantine_peers``). Partitions ("halves") and link
    failures are drawn on the base graph.
    """
    period = cfg.train_time + cfg.latency
    roles = PeerRoles(relays=frozenset(relays), byzantine=frozenset(
        byzantine_peers(cfg, graph) if byzantine is None else byzantine))
    todo: list[tuple[float, int, dict[str, Any], str]] = []
    for k, item in enumerate(items):
        w = f"{where}: timeline[{k}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{w}: must be a table")
        action = item.get("action")
        if action not in ACTIONS:
            raise ConfigError(f"{w}: action must be one of {', '.join(ACTIONS)}")
        unknown = sorted(set(item) - TIMELINE_KEYS[action])
        if unknown:
            raise ConfigError(f"{w}: unknown key {unknown[0]!r} for action {action!r}; "
                              f"known: {', '.join(sorted(TIMELINE_KEYS[action]))}")
        todo.append((_start(item, period, w), k, item, w))
    out: list[TimelineEvent] = []
    removed: list[int] = []
    for _, k, item, w in sorted(todo, key=lambda t: (t[0], t[1])):
        action = item["action"]
        seed = int(item.get("seed", cfg.seed + 1000 + k))
        if action == "remove_peers":
            at = _time(item, period, w)
            pick = _pick(item, w, allow_list=True)
            if pick is None:
                ev = RemovePeers(at, _listed(item, "peers", graph, w))
            else:
                now = _graph_at(graph, out, at)
                count = _count(item, len(roles.eligible(now, pick.role)), w)
                ev = RemovePeers(at, _select(now, count, pick, roles, seed, w))
            removed += list(ev.peers)
            out.append(ev)
        elif action == "rejoin":
            peers = item.get("peers", "removed")
            if peers == "removed":
                ids = roles.eligible(removed, _roles_key(item, w))
            elif "role" in item:
                raise ConfigError(f"{w}: role filters peers = \"removed\" only")
            else:
                ids = list(_listed(item, "peers", graph, w))
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
            pool = roles.eligible(graph, _roles_key(item, w))
            if not pool:
                raise ConfigError(f"{w}: no peer has role {item.get('role')!r}")
            evs = poisson_churn(len(pool), float(item["rate_leave"]),
                                float(item["rate_join"]), until - start, seed)
            out += [replace(e, at=e.at + start, peers=tuple(pool[p] for p in e.peers))
                    for e in evs]
        elif action == "crash_every":
            pick = _pick(item, w, allow_list=False)
            assert pick is not None
            pool = roles.eligible(graph, pick.role)
            waves = crash_every(pool, int(item.get("count", 5)),
                                float(item.get("every", 60.0)),
                                float(item.get("until_fraction", 0.8)), seed,
                                start=_time(item, period, w) if ("at" in item or
                                                                 "at_round" in item) else None)
            if pick.order != "random":  # same times and sizes; the most central go first
                central: list[TimelineEvent] = []
                for wave in waves:
                    now = _graph_at(graph, out + central, wave.at)
                    size = min(len(wave.peers), len(roles.eligible(now, pick.role)))
                    if size:
                        central.append(RemovePeers(
                            wave.at, _select(now, size, pick, roles, seed, w)))
                out += central
            else:
                out += waves
    return sorted(out, key=lambda e: e.at)


def _read_toml(path: Path, where: str) -> tuple[dict[str, Any], str]:
    """The parsed document and its text; ConfigError for unreadable, non-UTF-8 or bad TOML."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {where}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None


_SCENARIO_MODES = ("sim", "real")
_SEED_LIMIT = 2**32


def _check_header(doc: dict[str, Any], where: str) -> None:
    name = doc.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()
                             or name in (".", "..") or "/" in name or "\\" in name):
        raise ConfigError(f"{where}: name must be a non-empty string without '/' (it names "
                          f"the output directory), got {name!r}")
    if not isinstance(doc.get("description", ""), str):
        raise ConfigError(f"{where}: description must be a string")
    mode = doc.get("mode")
    if mode is not None and mode not in _SCENARIO_MODES:
        raise ConfigError(f"{where}: mode must be one of {', '.join(_SCENARIO_MODES)}, "
                          f"got {mode!r}")


def _check_values(cfg: SimulationConfig, where: str) -> None:
    """Ranges SimulationConfig.validate leaves open, and names checked before a run."""
    from rumor.node.data.datasets import DATASET_NAMES
    from rumor.node.data.splits import parse_split
    from rumor.node.models import MODEL_NAMES

    bad = [
        (not 0 <= cfg.seed < _SEED_LIMIT, f"seed must be in [0, 2**32), got {cfg.seed}"),
        (cfg.latency < 0, f"latency must be >= 0, got {cfg.latency}"),
        (cfg.train_time <= 0, f"train_time must be > 0, got {cfg.train_time}"),
        (cfg.round_timeout <= 0, f"round_timeout must be > 0, got {cfg.round_timeout}"),
        (not 0.0 <= cfg.momentum < 1.0, f"momentum must be in [0, 1), got {cfg.momentum}"),
        (cfg.f < 0, f"f must be >= 0, got {cfg.f}"),
        (cfg.byzantine < 0 or cfg.sybils < 0, "byzantine and sybils must be >= 0"),
        (cfg.sybil_degree < 1 or cfg.sybil_noise < 0,
         "sybil_degree must be >= 1 and sybil_noise >= 0"),
        (cfg.min_updates is not None and cfg.min_updates < 0, "min_updates must be >= 0"),
        (any(v is not None and v < 1 for v in (cfg.fanout, cfg.eval_peers, cfg.test_subset)),
         "fanout, eval_peers and test_subset must be >= 1"),
        (cfg.model not in MODEL_NAMES,
         f"unknown model {cfg.model!r}; choose one of: {', '.join(MODEL_NAMES)}"),
        (cfg.dataset not in DATASET_NAMES,
         f"unknown dataset {cfg.dataset!r}; choose one of: {', '.join(DATASET_NAMES)}"),
    ]
    for failed, why in bad:
        if failed:
            raise ConfigError(f"{where}: {why}")
    try:
        parse_split(cfg.split)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_scenario(path: Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Parse a scenario file; ConfigError with the file name and key on any problem."""
    from rumor.node.config_fields import checked_fields

    where = str(path)
    doc, text = _read_toml(path, where)
    if not doc:
        raise ConfigError(f"{where} is empty: a scenario sets at least one of [network], "
                          "[data], [learning] or [[timeline]] (see docs/scenarios.md)")
    if "modest" in doc:
        raise ConfigError(f"{where} is a MoDeST file: run `rumor modest --config {where}`")
    unknown = set(doc) - {"name", "description", "mode", "timeline", *_SECTIONS}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level keys {sorted(unknown)}")
    _check_header(doc, where)
    flat = _flat_config(doc, where)
    flat.update(overrides or {})
    flat = checked_fields(SimulationConfig, flat, where)
    try:
        cfg = SimulationConfig(**flat)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    cfg.validate()
    _check_values(cfg, where)
    graph = build_topology(cfg.topology, cfg.peers, cfg.seed)
    relays = relay_peers(cfg.peers, cfg.relay_fraction, cfg.seed)
    items = doc.get("timeline", [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"{where}: timeline must be an array of tables ([[timeline]])")
    timeline = build_timeline(items, cfg, graph, relays, where)
    return Scenario(
        name=str(doc.get("name", path.stem)),
        description=str(doc.get("description", "")),
        config=replace(cfg, timeline=tuple(timeline)),
        source=text,
    )
