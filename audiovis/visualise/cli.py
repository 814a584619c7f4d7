"""The visualisation subcommands of ``audiovis``: filters, dream, auralise, backward, dissect."""
from __future__ import annotations

import json

COMMANDS = ("filters", "dream", "auralise", "backward", "dissect")


def add_parsers(sub, ws_arg) -> None:
    """Add the subcommands to ``audiovis``'s subparsers (``ws_arg(p)`` adds -w/--workspace)."""
    p = sub.add_parser("filters", help="conv1 filters as images and their frequency responses (PNG + JSON)")
    ws_arg(p)
    p.add_argument("--out", help="PNG of all filters (default: WS/visualise/filters.png)")
    p.add_argument("--effective", action="store_true",
                   help="weights as applied to dB input (standardisation and batch norm folded in); default: raw")
    p = sub.add_parser("dream", help="dreamed audio: the input a unit, layer or factor wants most")
    ws_arg(p)
    p.add_argument("unit", help="'conv2:17' (a unit), 'conv2' (a whole layer) or 'output:3' (a factor)")
    p.add_argument("--from-clip", help="SONG_ID:START_S: start from this real clip (deep dream)")
    p.add_argument("--out", help="audio file to write (.wav, .flac or .ogg); also cached in WS/visualise/dreams")
    _render_opts(p)
    p.add_argument("--force", action="store_true", help="recompute even if cached")
    p = sub.add_parser("auralise", help="hear only what a unit hears inside a real clip")
    ws_arg(p)
    p.add_argument("unit")
    p.add_argument("song_id")
    p.add_argument("start_s", type=float)
    p.add_argument("--out", required=True, help="auralised audio (.wav/.flac/.ogg); the original is written "
                                                "next to it as *_original")
    p.add_argument("--method", default="gxi", choices=["gxi", "grad"])
    p.add_argument("--gamma", type=float, default=1.0, help="mask ** gamma (> 1 sharpens)")
    p = sub.add_parser("backward", help="the input the network maps to a listener's taste, a factor or a song")
    ws_arg(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--user", help="listener id, e.g. U00042")
    g.add_argument("--factor", type=int, help="latent factor index")
    g.add_argument("--song", help="song id: its WMF factors")
    p.add_argument("--loss", choices=["cosine", "mse"], help="default: cosine (listener, factor), mse (song)")
    p.add_argument("--out", required=True, help="audio file (.wav/.flac/.ogg); a PNG spectrogram next to it")
    _render_opts(p)
    p = sub.add_parser("dissect", help="score every unit against concepts (writes WS/index/dissection.json/.md)")
    ws_arg(p)
    p.add_argument("--no-descriptors", action="store_true", help="ground-truth labels only (no librosa pass)")
    p.add_argument("--threshold", type=float, default=0.9, help="AUROC for a detector")
    p.add_argument("--force", action="store_true", help="recompute the cached librosa descriptors")


def _render_opts(p):
    g = p.add_argument_group("optimisation (defaults: RenderConfig in audiovis/visualise/render.py)")
    g.add_argument("--steps", type=int, help="Adam steps (default 256)")
    g.add_argument("--lr", type=float, help="learning rate (default 0.05)")
    g.add_argument("--tv", type=float, help="total-variation weight (default 10; higher is smoother)")
    g.add_argument("--jitter", type=int, help="random time shift in frames each step (default 8)")
    g.add_argument("--seed", type=int)


def _render_cfg(a):
    from .render import RenderConfig
    given = {"steps": a.steps, "lr": a.lr, "tv": a.tv, "jitter_time": a.jitter, "seed": a.seed}
    return RenderConfig(**{k: v for k, v in given.items() if v is not None})


def _png_next_to(out: str, suffix: str = "") -> str:
    from pathlib import Path
    p = Path(out)
    return str(p.with_name(p.stem + suffix + ".png"))


def run(ws, a) -> int:
    """Run one visualisation subcommand; prints what it wrote."""
    import os
    import shutil
    from pathlib import Path

    import torch
    # small tensors: one thread is faster, and on a busy 2-core machine 2 threads were ~20x slower
    torch.set_num_threads(int(os.environ.get("AUDIOVIS_TORCH_THREADS", "1")))

    from ..pictures import new_figure, plot_logmel, save_figure
    from .render import save_audio
    if a.cmd == "filters":
        from ..train import load_model
        from ..workspace import save_json
        from .filters import conv1_filters, frequency_response, plot_filters
        ws.require("train")
        model, _ = load_model(ws)
        W = conv1_filters(model, effective=a.effective)
        resp = frequency_response(W)
        out = Path(a.out) if a.out else ws.path / "visualise" / "filters.png"
        save_figure(plot_filters(W, [f"conv1:{i}" for i in range(len(W))]), out)
        js = out.with_suffix(".json")
        save_json(js, {"shape": list(W.shape), "effective": a.effective,
                       "filters": [{"unit": f"conv1:{i}", "peak_hz": round(float(resp["peak_hz"][i]), 1)}
                                   for i in range(len(W))]})
        print(f"{len(W)} conv1 filters of shape {tuple(W.shape[1:])} (mel bins x taps): {out}; peaks: {js}")
        for i in range(len(W)):
            print(f"  conv1:{i:<3d} peak gain at {resp['peak_hz'][i]:7.0f} Hz")
    elif a.cmd == "dream":
        from .dream import dream
        d = dream(ws, a.unit, from_clip=a.from_clip, cfg=_render_cfg(a), force=a.force)
        png = Path(str(d.npz_path.with_suffix(".png")))
        if not png.exists():
            save_figure(plot_logmel(d.logmel, d.sr, title=f"dream of {d.objective}"), png)
        if a.out:
            if Path(a.out).suffix.lower() == ".ogg":
                shutil.copyfile(d.audio_path, a.out)
            else:
                save_audio(a.out, d.audio, d.sr)
            save_figure(plot_logmel(d.logmel, d.sr, title=f"dream of {d.objective}"), _png_next_to(a.out))
        print(json.dumps({"objective": d.objective, "activation": round(d.activation, 4),
                          "start_activation": round(d.start_activation, 4), "best_real_clip": d.best_real,
                          "ratio_to_best_real": None if d.ratio is None else round(d.ratio, 3),
                          "cached": d.cached, "seconds": round(d.seconds, 2), "audio": str(a.out or d.audio_path),
                          "cache": str(d.npz_path), "spectrogram": str(png)}, indent=2))
    elif a.cmd == "auralise":
        from .auralise import auralise
        r = auralise(ws, a.unit, a.song_id, a.start_s, method=a.method, gamma=a.gamma)
        save_audio(a.out, r.auralised, r.sr)
        p = Path(a.out)
        orig = p.with_name(p.stem + "_original" + p.suffix)
        save_audio(orig, r.original, r.sr)
        fig = new_figure(11, 3, dpi=100)
        axes = fig.subplots(1, 2)
        plot_logmel(r.logmel, r.sr, title=f"{a.song_id} at {a.start_s:g} s", ax=axes[0])
        plot_logmel(r.relevance, r.sr, title=f"what {r.objective} hears (relevance)", ax=axes[1], vmin=0, vmax=1,
                    cbar_label="relevance (0-1)")
        save_figure(fig, _png_next_to(a.out))
        kept = float((r.auralised ** 2).sum() / max((r.original ** 2).sum(), 1e-12))
        if r.activation <= 0:
            print(f"note: {r.objective} is silent on this clip, so the auralised audio is silent; try one of its "
                  f"top clips (the page's unit view)")
        print(json.dumps({"objective": r.objective, "activation": round(r.activation, 4),
                          "energy_kept": round(kept, 4), "auralised": str(p), "original": str(orig),
                          "figure": _png_next_to(a.out)}, indent=2))
    elif a.cmd == "backward":
        from .backward import backward_query
        r = backward_query(ws, user=a.user, factor=a.factor, song=a.song, loss=a.loss, cfg=_render_cfg(a),
                           out=a.out)
        save_figure(plot_logmel(r.logmel, r.sr, title=f"backward query: {r.target_name}"), _png_next_to(a.out))
        print(json.dumps({"target": r.target_name, "loss": r.loss,
                          "distance": [round(r.start_distance, 4), round(r.distance, 4)],
                          "cosine": [round(r.start_cosine, 4), round(r.cosine, 4)],
                          "score_x_u_dot_f(x)": r.score, "best_real_song": r.best_real,
                          "seconds": round(r.seconds, 2), "audio": a.out, "spectrogram": _png_next_to(a.out)},
                         indent=2))
    elif a.cmd == "dissect":
        from .dissect import dissect
        res = dissect(ws, descriptors=not a.no_descriptors, threshold=a.threshold, force_descriptors=a.force)
        print((ws.index_dir / "dissection.md").read_text())
        print(f"wrote {ws.index_dir / 'dissection.json'} and {ws.index_dir / 'dissection.md'} "
              f"({len(res['units'])} units, {len(res['concepts'])} concepts)")
    return 0
