"""The live dashboard: one web page over any run (launch, join, experiment, a replay).

``state``   the JSON snapshot the page shows and the thread-safe Board holding it.
``server``  the aiohttp app: ``/`` (the page), ``/static/*`` (its JS and CSS, shipped as
            package data: no CDN, no vendored library), ``/api/state`` (the snapshot).
``feeds``   what fills a Board: a launched mesh (the peers' /status and /topology, the
            launcher's metrics rows and events), a simulation (per round), one joined
            peer (its own runtime).
``replay``  a finished run's metrics.csv + events.jsonl (+ summary.json, scenario.toml)
            played back round by round.

The page polls ``/api/state`` about once a second and draws, with small vanilla JS and
SVG: the mesh (nodes coloured by accuracy, edges = current links, killed peers grey,
partitioned peers outlined), accuracy and consensus-distance curves per round, rejects
by reason, bytes sent per round, and the timeline events.
"""

from rumor.node.dashboard.server import Dashboard, DashboardThread, start_dashboard
from rumor.node.dashboard.state import Board

__all__ = ["Board", "Dashboard", "DashboardThread", "start_dashboard"]
