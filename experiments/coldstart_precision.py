"""Cold-start retrieval quality: held-out songs embedded from their audio files as new uploads.

For every song with split == 'test' (its plays were kept out of the WMF fit the CNN learned from), embed its audio
file as a new song and retrieve the k most similar catalogue songs (cosine on CNN-predicted factors, the song
itself excluded). precision@k for a concept = share of the k that have the query's value; chance = share of the
catalogue that has it (per query, averaged).

    python experiments/coldstart_precision.py -w /tmp/demo_ws [-k 10] [--catalogue all|known] [--json]

--catalogue known restricts the catalogue to songs that are not held out (train/valid), i.e. only songs whose
factors could have been learned from plays.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np


def concept_precision(ws_path, k: int = 10, concepts=("groove", "lead"), catalogue: str = "all") -> dict:
    from audiovis.coldstart import get_engine
    from audiovis.workspace import Workspace
    ws = Workspace(ws_path)
    eng = get_engine(ws)
    labels = ws.labels()
    songs = ws.songs()
    split = np.array([s["split"] or "none" for s in songs])
    test = np.flatnonzero(split == "test")
    valid = np.all(np.isfinite(eng.song_factors), axis=1)
    base_excl = set(np.flatnonzero(split == "test").tolist()) if catalogue == "known" else set()
    prec = {c: [] for c in concepts}
    chance = {c: [] for c in concepts}
    t0 = time.time()
    for q in test:
        emb = eng.embed_file(ws.resolve_audio(songs[q]["path"]))
        excl = sorted(base_excl | {int(q)})
        hits = eng.similar(emb.factors, k, exclude=excl)
        cat = [i for i in np.flatnonzero(valid) if i not in excl]
        for c in concepts:
            v = labels[songs[q]["song_id"]].get(c)
            prec[c].append(np.mean([labels[h["song_id"]].get(c) == v for h in hits]))
            chance[c].append(np.mean([labels[songs[i]["song_id"]].get(c) == v for i in cat]))
    out = {"workspace": str(ws.path), "k": k, "catalogue": catalogue, "queries": len(test),
           "catalogue_size": int(valid.sum() - len(base_excl) - 1), "seconds": round(time.time() - t0, 1)}
    for c in concepts:
        p, ch = float(np.mean(prec[c])), float(np.mean(chance[c]))
        out[c] = {"precision": round(p, 4), "chance": round(ch, 4), "lift": round(p / ch, 2)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-w", "--workspace", default="/tmp/demo_ws")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--catalogue", choices=["all", "known"], default="all")
    ap.add_argument("--concepts", default="groove,lead")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    r = concept_precision(a.workspace, a.k, tuple(a.concepts.split(",")), a.catalogue)
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"{r['queries']} held-out songs as new uploads, catalogue {r['catalogue']} "
              f"({r['catalogue_size']} songs), k={r['k']}")
        for c in a.concepts.split(","):
            print(f"  {c:<12} precision@{r['k']} {r[c]['precision']:.3f}   chance {r[c]['chance']:.3f}   "
                  f"lift x{r[c]['lift']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
