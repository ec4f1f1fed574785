"""``rumor peers [URL | --out DIR]``: the peers of a mesh and where to reach them.

From a launch's --out directory: every peer (index, PeerID, listen address, API URL).
From a peer's API URL: that peer's neighbours (GET /peers), with their API URLs where
the peer knows them.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rumor.scripts.status_cmd import add_mesh_source
from rumor.scripts.tables import text_table


def add_parser(sub: Any) -> None:
    p = sub.add_parser("peers", help="list the peers of a launch, or a peer's neighbours",
                       description=__doc__)
    add_mesh_source(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rumor.node.mesh.inspect import base_url, get_json, launch_peers

    if args.url is not None:
        url = base_url(args.url)
        doc = get_json(f"{url}/peers", args.timeout)
        apis = {str(k): str(v) for k, v in dict(doc.get("apis", {})).items()}
        rows = [{"peer": str(p), "api": apis.get(str(p))} for p in doc.get("peers", [])]
        if args.json:
            for r in rows:
                print(json.dumps(r))
        else:
            sys.stdout.write(text_table(["peer", "api"], [[r["peer"], r["api"]] for r in rows],
                                        markdown=args.markdown))
            print(f"{len(rows)} neighbours of {url}", file=sys.stderr)
        return 0
    peers = launch_peers(args.out)
    if args.json:
        for p in peers:
            print(json.dumps({"index": p.index, "peer": p.peer, "api": p.api,
                              "addrs": list(p.addrs)}))
        return 0
    sys.stdout.write(text_table(
        ["#", "peer", "listen", "api"],
        [[p.index, p.peer, p.addrs[0] if p.addrs else None, p.api] for p in peers],
        markdown=args.markdown))
    return 0
