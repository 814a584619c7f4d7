"""Do the listeners a concept detector recruits listen to that concept? (a check of `audiovis listeners`)

For every ground-truth value of ``groove`` and ``lead`` (not ``none``), pick the dense unit that detects it best
(AUROC of its per-window activation, ``index/acts.npy``, for windows of songs with the value against the rest),
take its top-20 listeners and the 20 it turns away most (``index/listeners.npz``), and compare the share of
their played songs (distinct songs, ``plays`` table) that have the value with the share over all users.

    python experiments/listeners_concepts.py -w /tmp/ws_listen [--layer dense1] [-n 20]

Needs a workspace with labels and the listeners step (``audiovis listeners -w WS``).
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from scipy.stats import rankdata


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", required=True)
    ap.add_argument("--layer", default="dense1")
    ap.add_argument("-n", type=int, default=20)
    a = ap.parse_args(argv)
    from audiovis.index import UnitIndex
    from audiovis.listeners import ListenerIndex
    from audiovis.workspace import Workspace
    ws = Workspace(a.workspace)
    li, ui = ListenerIndex(ws), UnitIndex(ws)
    R = ws.play_matrix().tocsr()
    R.data[:] = 1
    n_played = np.maximum(np.asarray(R.sum(1)).ravel(), 1)
    labels, sids = ws.labels(), ws.song_ids()
    wsong = ui.store.windows[:, 0]
    names = [u for u in li.units if u.startswith(a.layer + ":")]
    ranks = np.apply_along_axis(rankdata, 0, np.asarray(ui.acts, np.float32)[:, [ui.column(u) for u in names]])
    rows = []
    print(f"| concept | unit (best AUROC) | AUROC | songs it fires in | mean effect | top effect | plays on the "
          f"concept: top-{a.n} listeners | turned-away {a.n} | all users |\n|---|---|---|---|---|---|---|---|---|")
    for concept in ("groove", "lead"):
        for value in sorted({lab[concept] for lab in labels.values() if concept in lab} - {"none"}):
            is_s = np.array([labels.get(s, {}).get(concept) == value for s in sids])
            pos = is_s[wsong]
            n1, n0 = pos.sum(), (~pos).sum()
            auc = (ranks[pos].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)
            unit = names[int(np.argmax(auc))]
            share = (R @ is_s.astype(float)) / n_played
            o = li.of(unit, a.n)
            top = [r["user_idx"] for r in o["listeners"]]
            away = [r["user_idx"] for r in o["turned_away"]]
            rows.append({"concept": f"{concept}={value}", "unit": unit, "auroc": float(auc.max()),
                         "songs_fired": o["songs_fired"], "mean_effect": o["mean_effect"],
                         "top_effect": o["listeners"][0]["effect"], "share_top": float(share[top].mean()),
                         "share_away": float(share[away].mean()), "share_all": float(share.mean())})
            r = rows[-1]
            print(f"| {r['concept']} | {unit} | {r['auroc']:.3f} | {r['songs_fired']} | {r['mean_effect']:+.4f} | "
                  f"{r['top_effect']:+.4f} | {r['share_top']:.3f} | {r['share_away']:.3f} | {r['share_all']:.3f} |")
    return rows


if __name__ == "__main__":
    main()
