"""``rumor export [URL | --launch DIR --peer I] --out FILE``: a peer's current model.

Asks a running peer (GET /model on its API; a launch's peers are found in its --out
directory) for its model and writes the weights only: FILE.safetensors (safetensors)
or FILE.pt (``torch.save`` of the state dict). Load it with
``model.load_state_dict(safetensors.torch.load_file(FILE))`` (or ``torch.load(FILE,
weights_only=True)``) into ``rumor.node.models.build_model(model, shape, classes)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rumor.protocols.errors import ConfigError
from rumor.scripts.options import nonneg_int, positive_float


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="write a running peer's model to a .safetensors "
                       "or .pt file", description=__doc__)
    p.add_argument("url", nargs="?", default=None, metavar="URL",
                   help="the peer's API URL (default: --launch DIR --peer I)")
    p.add_argument("--launch", type=Path, default=Path("runs/launch"), metavar="DIR",
                   help="the --out directory of a running `rumor launch`")
    p.add_argument("--peer", type=nonneg_int, default=0, metavar="I",
                   help="which peer of that launch")
    p.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="the model file to write: *.safetensors or *.pt (required)")
    p.add_argument("--timeout", type=positive_float, default=30.0,
                   help="seconds to wait for the peer's answer")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rumor.node.mesh.inspect import fetch_model, launch_peers
    from rumor.node.model_io import FORMATS, save_model

    out: Path = args.out
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out {out}: the file name must end in .safetensors or .pt")
    url = args.url
    if url is None:
        peers = {p.index: p for p in launch_peers(args.launch)}
        if args.peer not in peers or not peers[args.peer].api:
            raise ConfigError(f"{args.launch}: no peer {args.peer} (peers: "
                              f"{', '.join(map(str, sorted(peers)))})")
        url = peers[args.peer].api
    vector, layout, meta = fetch_model(url, timeout=args.timeout)
    save_model(out, vector, layout, {k: v for k, v in meta.items() if v is not None})
    print(f"wrote {out}: {meta.get('model')} of peer {str(meta.get('peer_id'))[-12:]} at "
          f"round {meta.get('round')} ({len(layout)} tensors, {vector.size} parameters)",
          file=sys.stderr)
    return 0
