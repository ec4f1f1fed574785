"""Imports go one way: scripts -> node -> {protocols, aggregation, topology}."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# package -> rumor packages it may import (besides itself)
ALLOWED = {
    "protocols": set(),
    "aggregation": {"protocols.errors"},
    "topology": {"protocols.errors"},
    "node": {"protocols", "aggregation", "topology"},
    "scripts": {"node", "protocols", "aggregation", "topology"},
}


def _rumor_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "rumor":
            names = [f"rumor.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out += [n.removeprefix("rumor.") for n in names if n == "rumor" or n.startswith("rumor.")]
    return out


def _allowed(pkg: str, target: str) -> bool:
    if target.split(".")[0] == pkg:
        return True
    return any(target == rule or target.startswith(rule + ".") for rule in ALLOWED[pkg])


def test_imports_go_one_way() -> None:
    bad = []
    for pkg in ALLOWED:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for target in _rumor_imports(path):
                if target == "rumor" or not _allowed(pkg, target):
                    bad.append(f"{path.relative_to(ROOT)} imports rumor.{target}")
    assert not bad, "\n".join(bad)


def test_pure_packages_do_no_io() -> None:
    """protocols/ and aggregation/ never import sockets, asyncio, time or pickle."""
    banned = {"socket", "asyncio", "time", "pickle", "subprocess", "trio", "aiohttp"}
    bad = []
    for pkg in ("protocols", "aggregation", "topology"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                mods = []
                if isinstance(node, ast.Import):
                    mods = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    mods = [node.module.split(".")[0]]
                bad += [f"{path.relative_to(ROOT)}: {m}" for m in mods if m in banned]
    assert not bad, "\n".join(bad)
