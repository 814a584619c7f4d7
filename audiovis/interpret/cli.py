"""The ``attribute`` subcommand of ``audiovis``: why a clip makes a unit fire, a listener score it, or a song
sound like another (:mod:`audiovis.interpret.why`)."""
from __future__ import annotations

import json

COMMANDS = ("attribute",)


def add_parsers(sub, ws_arg) -> None:
    """Add ``attribute`` to ``audiovis``'s subparsers (``ws_arg(p)`` adds -w/--workspace)."""
    p = sub.add_parser("attribute", help="which seconds and bands of a clip make a unit fire, a listener score "
                                         "it or a song sound alike; a picture, two sounds and deletion areas")
    ws_arg(p)
    p.add_argument("song", metavar="SONG_OR_FILE", help="a song id of the workspace or an audio file")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--unit", help="a unit, e.g. conv3:17, cnn3:5 or tags:rock")
    g.add_argument("--listener", help="a listener id: their cold-start score (predicted factors . theirs)")
    g.add_argument("--similar", help="a song id: the cosine similarity to its predicted factors")
    p.add_argument("--at", type=float, help="the window's start in seconds (default: where the target is highest)")
    p.add_argument("--method", default="ig", choices=["ig", "gradshap", "occlusion"],
                   help="integrated gradients, GradientSHAP or occlusion (default: %(default)s)")
    p.add_argument("--steps", type=int, default=32, help="path points / samples (default: %(default)s)")
    p.add_argument("--deletion-steps", type=int, default=10, help="points of the deletion curve (default: "
                                                                  "%(default)s)")
    p.add_argument("--random", type=int, default=2, help="random deletion orders averaged (default: %(default)s)")
    p.add_argument("--out", required=True, help="folder for attribution.png, original/kept/removed.wav, "
                                                "deletion.png and attribution.json")


def run(ws, a) -> int:
    """Run ``attribute``; prints the JSON it wrote."""
    from ..adapters import is_adapter_index
    from .why import why, write_why
    ws.require("index" if (a.similar or is_adapter_index(ws)) else "train")
    w = why(ws, a.song, unit=a.unit, listener=a.listener, similar=a.similar, at=a.at, method=a.method,
            steps=a.steps, deletion_steps=a.deletion_steps, n_random=a.random)
    paths = write_why(w, a.out)
    d = w.to_dict()
    d.pop("deletion", None)
    print(json.dumps({**d, "deletion_area": w.deletion.area, "random_area": w.deletion.random_area,
                      "files": paths}, indent=2, default=str))
    return 0
