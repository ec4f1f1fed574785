"""The package layout: rumor.* resolves statically to the top-level folders.

rumor/<name> are committed relative symlinks to ../<name>, so the repository root is a
plain import root: editors (Pyright, Jedi) and mypy follow ``rumor.node`` to node/ with
no import hook, the editable install is a static .pth, and a built wheel holds the
files themselves under rumor/<name>/, never links.
"""

from __future__ import annotations

import importlib
import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["node", "protocols", "aggregation", "topology", "scripts"]


def _declared_packages() -> list[str]:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert conf["package-dir"] == {"": "."}, "an explicit mapping brings the import hook back"
    packages: list[str] = conf["packages"]
    return packages


def test_every_subpackage_folder_is_declared_in_pyproject() -> None:
    found = {"rumor"} | {
        "rumor." + str(init.parent.relative_to(ROOT)).replace(os.sep, ".")
        for pkg in PACKAGES
        for init in (ROOT / pkg).rglob("__init__.py")
    }
    assert set(_declared_packages()) == found


@pytest.mark.parametrize("name", PACKAGES)
def test_rumor_links_are_relative_symlinks_to_the_top_level_folders(name: str) -> None:
    link = ROOT / "rumor" / name
    assert link.is_symlink(), f"rumor/{name} must be a symlink (git checkouts keep them)"
    assert os.readlink(link) == f"../{name}"
    assert link.resolve() == ROOT / name


@pytest.mark.parametrize("name", PACKAGES)
def test_import_rumor_package_resolves_to_files_under_the_repo(name: str) -> None:
    mod = importlib.import_module(f"rumor.{name}")
    assert mod.__file__ is not None
    assert Path(mod.__file__).resolve() == ROOT / name / "__init__.py"


def test_editable_install_is_a_static_path_not_an_import_hook() -> None:
    site_dirs = [Path(d) for d in site.getsitepackages()]
    finders = [f for d in site_dirs for f in d.glob("__editable___rumor_*_finder.py")]
    pths = [f for d in site_dirs for f in d.glob("__editable__.rumor-*.pth")]
    if not pths and not finders:
        pytest.skip("rumor is not installed editable in this environment")
    assert not finders, "an import hook: Pyright, Jedi and mypy cannot follow it"
    assert len(pths) == 1
    assert [Path(p).resolve() for p in pths[0].read_text().split()] == [ROOT]
    assert not any(type(f).__module__.startswith("__editable__") for f in sys.meta_path)


def test_built_wheel_contains_the_files_under_rumor_not_symlinks(tmp_path: Path) -> None:
    src = tmp_path / "src"  # build a copy: pip builds in-tree (build/, *.egg-info)
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, src / f)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "rumor", src / "rumor", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", str(src), "-w", str(out)],
        check=True, capture_output=True, timeout=120,
    )
    (whl,) = out.glob("rumor-*.whl")
    with zipfile.ZipFile(whl) as z:
        infos = z.infolist()
    names = {i.filename for i in infos}
    links = [i.filename for i in infos if (i.external_attr >> 16) & 0o170000 == 0o120000]
    assert not links
    assert all(n.startswith(("rumor/", "rumor-0.1.0.dist-info/")) for n in names), names
    expected = {"rumor/__init__.py"} | {
        "rumor/" + p.relative_to(ROOT).as_posix()
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
    }
    assert expected <= names, sorted(expected - names)
    assert "rumor/node/py.typed" in names
    # the dashboard's page and assets are package data (no CDN at run time)
    static = {f"rumor/node/dashboard/static/{f}"
              for f in ("index.html", "dashboard.js", "dashboard.css")}
    assert static <= names, sorted(static - names)
