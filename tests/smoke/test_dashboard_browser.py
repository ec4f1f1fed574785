"""The dashboard in a real headless browser: Debian's chromium through its chromedriver.

selenium (pinned in the dev extra) gets both binaries' paths, so nothing is downloaded
at run time; ``make test-tools`` installs them, and without them these tests skip and
say so. What they check: the page loads and draws the right number of peers, and it
follows the run: when a round completes the round counter and the curves move.

1. A real Simulation (6 peers) in a thread, held after each round until the test lets
   it go, so "a round completed" is an event the test controls, not a race.
2. A fixed Board with faults: a killed, a Byzantine and partitioned peers, rejects by
   reason, a timeline event, no consensus distance; and no script error in the console.
3. A real ``rumor launch`` (3 peers, separate processes): the URL it prints, peers and
   links aggregated from the peers' own /status and /topology, rounds moving.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rumor.node.dashboard import Board, DashboardThread
from rumor.node.dashboard.serve import sim_board
from rumor.node.dashboard.state import PeerInfo, mark_partitioned
from rumor.node.results import RoundMetrics
from rumor.node.simulation import Simulation, SimulationConfig

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ROOT = Path(__file__).resolve().parents[2]


def skip_without_chromium() -> None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs chromium and chromedriver (Debian: chromium, chromium-driver; "
                    "`make test-tools` installs them as root)")


@pytest.fixture
def browser() -> Iterator[Any]:
    skip_without_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1440,960", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: Any, what: str, cond: Callable[[Any], Any], timeout: float = 60) -> Any:
    """Await ``cond(driver)`` (truthy) with a deadline; the page polls once a second."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(cond)
    except TimeoutException:
        body = driver.find_element("tag name", "body")
        pytest.fail(f"timed out after {timeout} s waiting for {what}; page data: "
                    f"{dict(body.get_property('dataset') or {})}")


def page_round(driver: Any) -> int:
    return int(driver.find_element("tag name", "body").get_attribute("data-round") or 0)


def nodes(driver: Any) -> list[Any]:
    return list(driver.find_elements("css selector", "#mesh circle.node"))


def states(driver: Any) -> list[str]:
    """The peers' drawn states, read in one script (the page redraws under us)."""
    got = driver.execute_script(
        "return Array.from(document.querySelectorAll('#mesh circle.node'))"
        ".map(n => n.getAttribute('data-state'))")
    return [str(x) for x in got]


def edges(driver: Any) -> int:
    return int(driver.execute_script(
        "return document.querySelectorAll('#mesh line.edge').length"))


@pytest.mark.timeout(300)
def test_page_draws_the_simulated_peers_and_follows_each_completed_round(
        browser: Any) -> None:
    cfg = SimulationConfig(peers=6, rounds=3, topology="ring", aggregator="mean",
                           test_subset=150, seed=4)
    board = Board()
    server = DashboardThread(board)
    url = server.start()
    sim = Simulation(cfg)
    feed = sim_board(board, sim, "browser test")
    gate = threading.Semaphore(0)
    held = threading.Event()

    def on_round(m: RoundMetrics) -> None:
        feed.on_round(m)
        held.set()
        gate.acquire(timeout=120)  # hold the simulation until the test saw this round

    worker = threading.Thread(target=sim.run, args=(on_round,), daemon=True)
    worker.start()
    try:
        assert held.wait(120), "the simulation never completed its first round"
        browser.get(url)
        until(browser, "round 1", lambda d: page_round(d) == 1)
        until(browser, "6 peers", lambda d: len(nodes(d)) == 6)
        assert browser.find_element("id", "peer-count").text == "6"
        assert browser.find_element("id", "title").text == "browser test"
        assert len(browser.find_elements("css selector", "#mesh line.edge")) == 6  # a ring
        assert len(browser.find_elements("css selector", "#acc-chart path.series")) == 1
        fills = {n.get_attribute("fill") for n in nodes(browser)}
        assert fills and "#9ca3af" not in fills  # every peer coloured by its accuracy
        held.clear()
        gate.release()  # round 2 completes now
        until(browser, "round 2", lambda d: page_round(d) == 2)
        acc_points = browser.find_elements("css selector", "#acc-chart circle")
        assert len(acc_points) == 2  # one point per round
        assert browser.find_element("id", "round").text == "2"
        gate.release()
        gate.release()
        worker.join(120)
        assert not worker.is_alive()
        feed.finish(True)
        until(browser, "finished", lambda d: d.find_element("id", "status").text.lower()
              == "finished")
        assert page_round(browser) == 3
    finally:
        for _ in range(3):
            gate.release()
        worker.join(30)
        server.close()


@pytest.mark.timeout(120)
def test_page_draws_faults_rejects_and_the_timeline_without_script_errors(
        browser: Any) -> None:
    board = Board("faults", "launch")
    peers = [PeerInfo(i, str(i), acc=0.9, neighbours=1) for i in range(5)]
    peers[1].state = "killed"
    peers[2].byzantine = True
    rows = [RoundMetrics(r, float(r), 0.8, 0.7, 0.9, 0.05, float("nan"), 10, 5000, 0, 0, 4)
            for r in (1, 2)]
    mark_partitioned(peers, [(0, 2), (3, 4)])
    board.update(peers=peers, edges=[(0, 2), (3, 4)], rows=rows, status="running",
                 rejects={"bad_signature": 5, "replay": 2})
    board.add_event("kill", "peer 1 killed (SIGKILL)")
    server = DashboardThread(board)
    try:
        browser.get(server.start())
        until(browser, "5 peers", lambda d: len(states(d)) == 5)
        drawn = states(browser)
        assert drawn.count("killed") == 1
        assert drawn.count("partitioned") == 2  # one of the two linked pairs
        assert len(browser.find_elements("css selector", "#mesh circle.node.byzantine")) == 1
        reasons = [e.text for e in browser.find_elements("css selector", ".bar-row .reason")]
        assert reasons == ["bad_signature", "replay"]
        assert browser.find_element("id", "rejects-now").text == "7"
        assert browser.find_element("id", "peer-alive").text == "(4 alive)"
        events = browser.find_elements("css selector", "#events li")
        assert len(events) == 1 and "peer 1 killed" in events[0].text
        assert len(browser.find_elements("css selector", "#acc-chart line.marker")) == 1
        assert "not measured" in browser.find_element("id", "cd-chart").text
        assert len(browser.find_elements("css selector", "#bytes-chart rect.bar")) == 2
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        server.close()


class DashboardLaunch:
    """A ``rumor launch`` process and the stderr lines it printed so far."""

    def __init__(self, out: Path) -> None:
        # No --rounds: the mesh runs until the test stops it (Ctrl-C, the normal end of
        # such a launch). With a fixed count (40 rounds of ~0.2 s) a browser that took
        # long to start saw round 32 first and the run ended before the page's next poll
        # (seen on a quiet machine, chromium 134 s in all).
        cmd = [sys.executable, "-m", "rumor.scripts.cli", "launch", "--peers", "3",
               "--out", str(out), "--quiet"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, cwd=ROOT, env=env, start_new_session=True)
        self.lines: list[str] = []
        self.found = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("dashboard: "):
                self.found.set()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(30)
        self.reader.join(10)


@pytest.fixture
def dashboard_launch(tmp_path: Path) -> Iterator[DashboardLaunch]:
    """Started before ``browser`` (fixtures are set up in the order the test names
    them): the launch's torch imports and chromium's start-up overlap."""
    skip_without_chromium()
    launch = DashboardLaunch(tmp_path / "out")
    try:
        yield launch
    finally:
        launch.close()


@pytest.mark.net
@pytest.mark.timeout(400)
def test_launch_prints_the_dashboard_url_and_the_page_follows_the_real_mesh(
        dashboard_launch: DashboardLaunch, browser: Any) -> None:
    proc, lines = dashboard_launch.proc, dashboard_launch.lines
    assert dashboard_launch.found.wait(120), "".join(lines)
    url = next(ln for ln in lines if ln.startswith("dashboard: ")).split(" ", 1)[1]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\n", url), url
    browser.get(url.strip())
    until(browser, "3 peers", lambda d: len(states(d)) == 3, 120)
    until(browser, "3 live peers, linked", lambda d: states(d).count("alive") == 3
          and edges(d) == 3, 180)
    until(browser, "a completed round", lambda d: page_round(d) >= 1, 180)
    first = page_round(browser)
    until(browser, "the next round", lambda d: page_round(d) > first, 120)
    assert browser.execute_script(
        "return document.getElementById('peer-count').textContent") == "3"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) == 0, "".join(lines)
