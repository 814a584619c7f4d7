"""Why does this clip make that number? Attribution, the two sounds and the deletion areas for a workspace song
or an audio file: what ``audiovis attribute`` writes and the page's "why" panels show."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from .attribution import STEPS, Attribution, attribute
from .faithfulness import N_RANDOM, Deletion, deletion
from .faithfulness import STEPS as DELETION_STEPS
from .masking import KEEP_MASS, Sounds, split_sounds
from .network import Network, Window, load_network, load_song_audio, window_from_audio, windows_of
from .targets import make_target


@dataclass
class Why:
    attribution: Attribution
    sounds: Sounds
    deletion: Deletion | None

    def to_dict(self) -> dict:
        a, w = self.attribution, self.attribution.window
        P = a.positive()
        return {"target": a.target.title, "kind": a.target.kind, "name": a.target.name, "clip": w.label,
                "start_s": w.start_s, "window_s": w.fcfg.window_s, "method": a.method, "steps": a.steps,
                "value": a.value, "floor_value": a.floor_value, "ig_delta": a.delta,
                "top_cell_share": float(P.max()) if P.size else 0.0,
                "kept_mass": KEEP_MASS, "kept_cells": float((self.sounds.mask >= 1.0).mean()),
                "kept_gain_db": self.sounds.kept_gain_db, "removed_gain_db": self.sounds.removed_gain_db,
                "deletion": self.deletion.to_dict() if self.deletion is not None else None}


def window_values(net: Network, target, windows: list[Window], batch: int = 16) -> np.ndarray:
    """The target on each window [shape=(len(windows),)], as :func:`~.attribution.target_function` gives it (a
    unit's target over its resting level on that window's floor); models that eat the log-mel run ``batch``
    windows and their floors per pass, a waveform model (heard through its window's STFT) one window at a time."""
    import torch

    from .attribution import target_function
    with torch.no_grad():
        if net.adapter is not None and net.adapter.input == "waveform":
            return np.array([float(target_function(net, target, w)(torch.from_numpy(w.S_db[None]))[0])
                             for w in windows])
        layers, out = list(target.layers), []
        for i in range(0, len(windows), batch):
            ws = windows[i:i + batch]
            x = torch.from_numpy(np.stack([w.S_db for w in ws]))
            acts, y = net.forward(x, layers, ws[0])
            rest = None
            if layers:
                floors = torch.stack([torch.full(w.S_db.shape, w.floor_db) for w in ws])
                rest = {k: v.detach() for k, v in net.forward(floors, layers, ws[0])[0].items()}
            out.append(target(acts, y, rest).float().numpy())
    return np.concatenate(out)


def pick_window(net: Network, target, windows: list[Window]) -> Window:
    """The window where the target is highest (how a song's window is chosen when none is named)."""
    if len(windows) == 1:
        return windows[0]
    return windows[int(np.argmax(window_values(net, target, windows)))]


def song_windows(ws, song_or_file: str | os.PathLike, at: float | None = None) -> list[Window]:
    """The window of a song id or file starting at ``at`` seconds, or (``at`` None) its windows as ``featurize``
    cuts them (at most :data:`~.network.MAX_WINDOWS`)."""
    from ..features import FeatureStore
    fcfg = FeatureStore(ws).cfg
    y, label, _ = load_song_audio(ws, song_or_file, fcfg)
    dur = len(y) / fcfg.sr
    if at is None:
        return windows_of(y, fcfg, label)
    if not 0.0 <= float(at) < max(dur, 1e-9):
        raise ParameterError(f"--at {at!r} s is outside {label} (0..{dur:.1f} s)")
    return [window_from_audio(y, fcfg, float(at), label)]


def why(ws, song_or_file: str | os.PathLike, unit: str | None = None, listener: str | None = None,
        similar: str | None = None, at: float | None = None, method: str = "ig", steps: int = STEPS,
        deletion_steps: int = DELETION_STEPS, n_random: int = N_RANDOM, faithfulness: bool = True,
        net: Network | None = None, progress=None) -> Why:
    """Attribute a unit (``unit``), a listener's cold-start score (``listener``) or the similarity to a song
    (``similar``) on one window of a workspace song or an audio file.

    Parameters
    ----------
    ws : Workspace
    song_or_file : str   a song id of the workspace or an audio file
    at : float, optional  the window's start (s); default: the window where the target is highest
    method : {'ig', 'gradshap', 'occlusion'};  steps : int
    faithfulness : bool   also measure the deletion curve (``deletion_steps`` steps, ``n_random`` random orders)
    progress : callable(fraction, text), optional
    """
    def say(f, text):
        if progress is not None:
            progress(f, text)

    net = net if net is not None else load_network(ws)
    say(0.0, "choosing the window")
    windows = song_windows(ws, song_or_file, at)
    target = make_target(net, ws, unit=unit, listener=listener, similar=similar, window=windows[0])
    window = pick_window(net, target, windows)
    say(0.1, f"attributing {target.title} ({method})")
    att = attribute(net, target, window, method, steps)
    say(0.6, "making the kept and removed sounds")
    sounds = split_sounds(window, att.A)
    dele = None
    if faithfulness:
        say(0.7, "measuring the deletion curves")
        dele = deletion(att, deletion_steps, n_random, net=net)
    say(1.0, "done")
    return Why(att, sounds, dele)


def write_why(w: Why, out: str | os.PathLike) -> dict[str, str]:
    """Write the picture, the three sounds and ``attribution.json`` into folder ``out``; returns their paths."""
    from ..pictures import save_figure
    from ..visualise.render import save_audio
    from ..workspace import save_json
    from .render import deletion_figure, overlay_figure
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"picture": d / "attribution.png", "original": d / "original.wav", "kept": d / "kept.wav",
             "removed": d / "removed.wav", "json": d / "attribution.json"}
    save_figure(overlay_figure(w.attribution), paths["picture"])
    s = w.sounds
    for k in ("original", "kept", "removed"):
        save_audio(paths[k], np.clip(getattr(s, k), -1, 1), s.sr)
    if w.deletion is not None:
        paths["deletion"] = d / "deletion.png"
        save_figure(deletion_figure(w.deletion, w.attribution.method), paths["deletion"])
    save_json(paths["json"], {**w.to_dict(), "files": {k: p.name for k, p in paths.items()}})
    return {k: str(p) for k, p in paths.items()}
