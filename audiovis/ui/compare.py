"""The A/B view: two units side by side, each with its labels, its clips in sequence and its top clips, to hear
what one responds to and the other does not. All computation is in :mod:`audiovis.explore` and
:mod:`audiovis.playlist`; this module only draws."""
from __future__ import annotations

import streamlit as st

from ..errors import AudiovisError
from .common import (
    clip_player,
    format_labels,
    get_explorer,
    index_stamp,
    notice,
    playlist_audio,
    unit_link,
    unit_table,
    unit_view_data,
)

N_CLIPS = 5


def _side_ui(ws_path: str, key: str, options: list[str], default: str, n: int) -> str | None:
    """One side: a unit picker, its labels, a play-all track and its top ``n`` clips."""
    ex = get_explorer(ws_path)
    stamp = index_stamp(ws_path)
    ss = st.session_state
    asked = ss.get(key)
    if asked not in options:
        ss[key] = default if default in options else options[0]
        if asked:                                  # from the link (?a= / ?b=): say so, do not swap silently
            notice(f"unit {asked} is not a live unit of this model (dead and edge units are left out of the A/B "
                   f"view); showing {ss[key]} as unit {key[-1].upper()}.")
    unit = st.selectbox(f"Unit {key[-1].upper()}", options, key=key, format_func=ex.unit_label)
    labs = ex.unit_labels(unit)
    s = ex.unit_stats(unit)
    st.markdown(f"[{ex.unit_label(unit)}]({unit_link(unit, ws_path)}) · selectivity {s['selectivity']:.2f} σ"
                + (" · " + ", ".join(f"`{x['concept']}` AUROC {x['score']:.2f}" for x in labs[:2]) if labs else ""))
    data, mime, _starts = playlist_audio(ws_path, unit, n, False, stamp)
    st.caption(f"Its top {n} clips in sequence:")
    clip_player(data, mime)
    for r in unit_view_data(ws_path, unit, n, False, stamp):
        st.markdown(f"**{r.rank}. {r.song_id}** · {r.start_s:.1f}–{r.end_s:.1f} s · activation {r.activation:.2f}"
                    + (f"  \n{format_labels(r.labels)}" if r.labels else ""))
        clip_player(r.audio, r.mime)
        st.image(r.image, width="stretch")
    return unit


def compare_ui(ws_path: str) -> dict:
    """Draw the A/B view: unit A (the unit view's current unit) and unit B side by side."""
    ex = get_explorer(ws_path)
    st.title("A/B: two units side by side")
    st.caption("Pick two units (dead and edge units are left out); each side plays its top clips in sequence, "
               "then one by one, with the same pictures as the unit view.")
    options = [r["unit"] for r in unit_table(ws_path, None, "unit", "", False, index_stamp(ws_path))]
    if not options:
        st.info("Every unit of this model is dead or an edge artifact.")
        return {"view": "compare"}
    a0 = st.session_state.get("unit") or ex.default_unit()
    n = min(N_CLIPS, ex.index.k)
    cols = st.columns(2)
    units = []
    for col, key, default in ((cols[0], "unit_a", a0), (cols[1], "unit_b", options[0] if options[0] != a0
                                                         else options[-1])):
        with col:
            try:
                units.append(_side_ui(ws_path, key, options, default, n))
            except AudiovisError as e:
                st.error(str(e))
    return {"view": "compare", **{k: u for k, u in zip(("a", "b"), units) if u}}
