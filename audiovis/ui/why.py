"""The "why" panels: which seconds and bands of a clip make a unit fire, a listener score it or a song sound
alike (heat over the log-mel, the kept and removed sounds, deletion areas), and one clip through every layer.
All computation is in :mod:`audiovis.interpret`; this module only draws. Each panel waits behind a toggle and is
cached per clip and target, so a visitor pays for the attributions they ask for and no one else waits on them
(Streamlit serves each session in its own thread; torch releases the GIL while it computes)."""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import streamlit as st

from ..errors import AudiovisError
from ..interpret.attribution import METHODS as METHOD_NAMES
from .common import clip_player, get_explorer, index_stamp, unit_link


def _network(ws_path: str):
    """The page's model (the explorer's, loaded once) as a :class:`~audiovis.interpret.network.Network`."""
    from ..interpret.network import Network
    ex = get_explorer(ws_path)
    return Network(model=ex.model) if ex.model is not None else Network(adapter=ex.adapter)


@st.cache_data(show_spinner=False, max_entries=64)
def why_data(ws_path: str, stamp: str, song: str, unit: str | None, listener: str | None, similar: str | None,
             at: float | None, method: str, steps: int = 32) -> dict:
    """Pictures, encoded sounds and numbers of one attribution (cached per clip, target and method), with a
    progress bar while it runs (made here, so that a cached answer replays it and its removal)."""
    from ..clips import encode
    from ..interpret.render import deletion_png, overlay_png
    from ..interpret.why import why
    from ..workspace import Workspace
    bar = st.progress(0.0, text="attributing...")
    try:
        w = why(Workspace(ws_path), song, unit=unit, listener=listener, similar=similar, at=at, method=method,
                steps=steps, net=_network(ws_path),
                progress=lambda f, text: bar.progress(min(max(float(f), 0.0), 1.0), text=text))
    finally:
        bar.empty()
    s = w.sounds
    return {**w.to_dict(), "picture": overlay_png(w.attribution), "deletion_picture": deletion_png(w.deletion, method),
            "sounds": {k: encode(getattr(s, k).clip(-1, 1), s.sr, "ogg") for k in ("original", "kept", "removed")}}


@st.cache_data(show_spinner=False, max_entries=32)
def layer_walk_data(ws_path: str, stamp: str, song: str, at: float) -> list[dict]:
    """Each layer's picture and top units for one window of a song."""
    from ..interpret.layerwalk import layer_walk
    from ..interpret.render import layer_png
    from ..interpret.why import song_windows
    from ..workspace import Workspace
    window = song_windows(Workspace(ws_path), song, at)[0]
    return [{"layer": s.layer, "png": layer_png(s), "top": s.top} for s in layer_walk(_network(ws_path), window)]


def upload_path(name: str, data: bytes) -> str:
    """An upload written once to a temporary file under its own name (attribution reads audio from a file and
    names the clip after it, :func:`audiovis.uploads.safe_name`), in a folder per content."""
    from ..uploads import safe_name
    d = Path(tempfile.gettempdir()) / "audiovis-why" / hashlib.sha1(data).hexdigest()[:20]
    d.mkdir(parents=True, exist_ok=True)
    p = d / safe_name(name)
    if not p.exists():
        p.write_bytes(data)
    return str(p)


def why_ui(ws_path: str, song: str, *, unit: str | None = None, listener: str | None = None,
           similar: str | None = None, at: float | None = None, key: str = "why", label: str = "why?") -> None:
    """A "why" toggle; on: the attribution of the target on ``song`` (a song id or an uploaded file's path)."""
    if not st.toggle(label, key=f"{key}_on", help="which seconds and frequency bands of this clip make the number: "
                     "a heat map over its log-mel, and the clip with only those parts kept, and with them removed"):
        return
    method = st.radio("method", list(METHOD_NAMES), format_func=METHOD_NAMES.get, horizontal=True,
                      key=f"{key}_method", label_visibility="collapsed")
    try:
        with st.spinner("Attributing (one window: seconds on a CPU, longer for the musicnn model)..."):
            d = why_data(ws_path, index_stamp(ws_path), song, unit, listener, similar, at, method)
    except AudiovisError as e:
        st.warning(str(e))
        return
    why_panel(d)


def why_panel(d: dict) -> None:
    """Draw one attribution computed by :func:`why_data`."""
    st.image(d["picture"], width="stretch",
             caption=f"{d['target']} = {d['value']:.3g} on {d['clip']} at {d['start_s']:.1f}-"
                     f"{d['start_s'] + d['window_s']:.1f} s ({d['floor_value']:.3g} on silence). Bright: the time-"
                     f"frequency cells that raise it most ({METHOD_NAMES[d['method']]}).")
    c = st.columns(3)
    for col, k, text in zip(c, ("original", "kept", "removed"),
                            ("the clip", f"only the most attributed cells (+{d['kept_gain_db']:.0f} dB)",
                             f"the clip without them (+{d['removed_gain_db']:.0f} dB)")):
        with col:
            st.caption(text)
            clip_player(d["sounds"][k], "audio/ogg")
    dele = d["deletion"]
    left, right = st.columns([2, 3])
    with left:
        st.image(d["deletion_picture"], width="stretch")
    with right:
        st.markdown(f"**Deletion areas** (lower is better): {METHOD_NAMES[d['method']]} "
                    f"**{dele['area']:.2f}**, random cells **{dele['random_area']:.2f}**.")
        if dele["better_than_random"]:
            st.caption("Removing the cells this picture ranks first lowers the number faster than removing random "
                       "cells: the picture points at what the model uses.")
        else:
            st.warning(f"{METHOD_NAMES[d['method']]} is no better than random on this clip: removing its top "
                       f"cells first lowers the number no faster than removing random cells. Do not read the "
                       f"picture as the reason; try another method.")


def why_listeners_ui(ws_path: str, song: str, users: list[str], key: str = "why_listener") -> None:
    """"Why" for one of the likely listeners (chosen from ``users``)."""
    if not users:
        return
    u = st.selectbox("Why would this listener like it?", users, key=f"{key}_user")
    why_ui(ws_path, song, listener=u, key=f"{key}_{u}", label=f"why does {u} score it?")


def layer_walk_ui(ws_path: str, song: str, duration_s: float, key: str = "walk") -> None:
    """One window of ``song`` through every layer (after CNN Explainer), top units linked to their views."""
    if not st.toggle("Layer walk: one window through every layer", key=f"{key}_on"):
        return
    ex = get_explorer(ws_path)
    win = ex.cfg.window_s
    at = st.slider("window start (s)", 0.0, max(0.0, float(duration_s) - win), 0.0, step=0.5, key=f"{key}_at") \
        if duration_s > win else 0.0
    try:
        with st.spinner("Running the window through the model..."):
            steps = layer_walk_data(ws_path, index_stamp(ws_path), song, float(at))
    except AudiovisError as e:
        st.warning(str(e))
        return
    for s in steps:
        st.image(s["png"], width="stretch")
        st.markdown(f"Top {s['layer']} units here: " + " · ".join(
            f"[{u}]({unit_link(u, ws_path)}) {v:.2f}" for u, v in s["top"]))
